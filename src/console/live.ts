// Live updates for open console pages, as server-sent events: each page gets the view it may see whenever it
// changes. Views are recomputed while pages are open, at once when something is known to have changed (a login's
// state, a login linked or logged out) and otherwise every few seconds (queues move without telling anyone).
import type { ServerResponse } from 'node:http'
import type { Logger } from 'pino'
import type { Viewer } from '../core/access.ts'
import { SAFE_HEADERS } from './http.ts'

interface Page {
  viewer: Viewer
  res: ServerResponse
  last: string
}

export class LiveUpdates {
  readonly #pages = new Set<Page>()
  readonly #view: (viewer: Viewer) => Promise<unknown>
  readonly #log: Logger
  readonly #everyMs: number
  #timer: NodeJS.Timeout | undefined
  #keepalive: NodeJS.Timeout | undefined
  #running: Promise<void> | undefined
  #again = false

  constructor(view: (viewer: Viewer) => Promise<unknown>, log: Logger, everyMs: number) {
    this.#view = view
    this.#log = log
    this.#everyMs = everyMs
  }

  open(viewer: Viewer, res: ServerResponse): void {
    res.writeHead(200, { ...SAFE_HEADERS, 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' })
    res.write('retry: 2000\n\n')
    const page: Page = { viewer, res, last: '' }
    this.#pages.add(page)
    res.once('close', () => {
      this.#pages.delete(page)
      if (this.#pages.size === 0) this.#idle()
    })
    if (!this.#timer) {
      this.#timer = setInterval(() => this.poke(), this.#everyMs)
      // Proxies end a stream that says nothing for a minute.
      this.#keepalive = setInterval(() => {
        for (const p of this.#pages) p.res.write(': keepalive\n\n')
      }, 15_000)
    }
    this.poke()
  }

  /** Recompute now (after what is running finishes). */
  poke(): void {
    if (this.#pages.size === 0) return
    if (this.#running) {
      this.#again = true
      return
    }
    this.#running = this.#push().catch(err => this.#log.warn({ err: (err as Error).message }, 'Could not update the console pages'))
      .finally(() => {
        this.#running = undefined
        if (this.#again) {
          this.#again = false
          this.poke()
        }
      })
  }

  close(): void {
    for (const p of this.#pages) p.res.end()
    this.#pages.clear()
    this.#idle()
  }

  #idle(): void {
    clearInterval(this.#timer)
    clearInterval(this.#keepalive)
    this.#timer = undefined
    this.#keepalive = undefined
  }

  async #push(): Promise<void> {
    // One view per person, shared by their open pages.
    const views = new Map<string, string>()
    for (const page of [...this.#pages]) {
      const key = `${page.viewer.mxid}\u0000${page.viewer.level}`
      let json = views.get(key)
      if (json === undefined) {
        json = JSON.stringify(await this.#view(page.viewer))
        views.set(key, json)
      }
      if (json !== page.last && !page.res.writableEnded) {
        page.last = json
        page.res.write(`event: snapshot\ndata: ${json}\n\n`)
      }
    }
  }
}
