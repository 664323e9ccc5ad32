// One SSE stream per account from GET /api/v1/events (signal-cli.md §3.2–3.4), kept alive by hand:
// no request timeout (≤0.14.3 sends headers only with the first keepalive, 15 s in), a watchdog that counts
// `:` keepalives as life, and reconnection with exponential backoff. A 400 on connect means the account is gone.
import axios from 'axios'
import { createParser } from 'eventsource-parser'
import type { Logger } from 'pino'
import type { Readable } from 'node:stream'

export interface StreamTimings {
  /** Silence (no byte, not even a keepalive) after which the stream is dropped and reopened. */
  watchdogMs: number
  backoffInitialMs: number
  backoffMaxMs: number
}
export const DEFAULT_STREAM_TIMINGS: StreamTimings = { watchdogMs: 60_000, backoffInitialMs: 1_000, backoffMaxMs: 60_000 }

export type StreamState = 'connecting' | 'connected' | 'disconnected'

/** Events taken from the stream and not yet taken in (recorded) by the bridge, at most: beyond this the stream is
 * not read until the backlog is down to half, so that a burst waits in the daemon (which then stops receiving from
 * Signal's server, where the messages wait safely) instead of in the bridge's memory. A chunk already read is
 * handed over whole, so the backlog can pass this by one chunk's events. */
export const MAX_BACKLOG = 500

export interface StreamHandlers {
  /** A parsed SSE `data` object ({envelope, account, exception?}). Not validated here. A returned promise is the
   * event being taken in: it counts toward the backlog until it settles. */
  onEvent(inner: unknown): void | Promise<unknown>
  onState(state: StreamState): void
  /** The daemon answered 400: the account does not exist (unlinked, §11.3). The stream stops. */
  onGone(): void
}

export class SignalEventStream {
  private readonly url: string
  private readonly timings: StreamTimings
  private readonly handlers: StreamHandlers
  private readonly log: Logger | undefined
  private running = false
  private abort: AbortController | undefined
  private wake: (() => void) | undefined
  private loop: Promise<void> | undefined
  /** Events handed over and not yet taken in (see MAX_BACKLOG). */
  private backlog = 0
  /** Reads the stream again after a pause for the backlog (undefined: not paused). */
  private resumeReading: (() => void) | undefined
  /** Connections opened so far (tests and metrics). */
  connects = 0
  /** Times the stream was paused for the backlog (tests and metrics). */
  pauses = 0

  constructor(opts: { daemonUrl: string; account: string; timings?: Partial<StreamTimings>; log?: Logger }, handlers: StreamHandlers) {
    // Percent-encode: the daemon form-decodes the query, so a raw `+` would become a space (§3.1).
    this.url = `${opts.daemonUrl.replace(/\/+$/, '')}/api/v1/events?account=${encodeURIComponent(opts.account)}`
    this.timings = { ...DEFAULT_STREAM_TIMINGS, ...opts.timings }
    this.handlers = handlers
    this.log = opts.log
  }

  start(): void {
    if (this.running) return
    this.running = true
    this.loop = this.run()
  }

  /** Connects now instead of after the backoff: the daemon is known to answer again. */
  retryNow(): void {
    this.wake?.()
  }

  async stop(): Promise<void> {
    this.running = false
    this.abort?.abort()
    this.wake?.()
    await this.loop
  }

  private async run(): Promise<void> {
    let delay = this.timings.backoffInitialMs
    while (this.running) {
      const outcome = await this.connectOnce(() => {
        delay = this.timings.backoffInitialMs
      })
      if (!this.running) break
      if (outcome === 'gone') {
        this.running = false
        this.handlers.onState('disconnected')
        this.handlers.onGone()
        break
      }
      this.handlers.onState('disconnected')
      await this.sleep(delay)
      delay = Math.min(delay * 2, this.timings.backoffMaxMs)
    }
  }

  /** One connection, from connect to drop. Resolves 'gone' on HTTP 400, else 'dropped'. */
  private async connectOnce(onLife: () => void): Promise<'gone' | 'dropped'> {
    const abort = new AbortController()
    this.abort = abort
    this.connects++
    this.handlers.onState('connecting')
    // One timer per connection, checked when it fires: each chunk only notes the time. Re-arming a timer on every
    // chunk (one per message at low rates) cost a Timeout object and two timer-list updates per message
    // (docs/performance.md); a busy stream now re-arms once per watchdog period, and a silent one is still dropped
    // `watchdogMs` after its last byte.
    let lastLife = 0
    let watchdog: NodeJS.Timeout | undefined
    const armWatchdog = (ms: number): void => {
      watchdog = setTimeout(() => {
        const silentMs = performance.now() - lastLife
        if (silentMs < this.timings.watchdogMs) return armWatchdog(this.timings.watchdogMs - silentMs)
        watchdog = undefined
        this.log?.warn({ silenceMs: this.timings.watchdogMs }, 'Signal event stream went silent; reconnecting')
        abort.abort()
      }, ms)
    }
    const feedWatchdog = (): void => {
      lastLife = performance.now()
      if (watchdog === undefined) armWatchdog(this.timings.watchdogMs)
    }
    const stopWatchdog = (): void => {
      clearTimeout(watchdog)
      watchdog = undefined
    }
    feedWatchdog()
    try {
      // A dedicated request with no total timeout: the watchdog is the only clock (§3.3).
      const res = await axios.get<Readable>(this.url, {
        responseType: 'stream',
        timeout: 0,
        signal: abort.signal,
        validateStatus: () => true,
        headers: { Accept: 'text/event-stream' },
      })
      if (res.status === 400) {
        res.data.destroy()
        return 'gone'
      }
      if (res.status !== 200) {
        res.data.destroy()
        this.log?.warn({ status: res.status }, 'Signal event stream refused; will retry')
        return 'dropped'
      }
      feedWatchdog()
      this.handlers.onState('connected')
      let alive = false
      const parser = createParser({
        onEvent: msg => {
          if (msg.event !== undefined && msg.event !== 'receive') return
          let inner: unknown
          try {
            inner = JSON.parse(msg.data)
          } catch {
            this.log?.warn('Signal event stream carried data that is not JSON; skipped')
            return
          }
          const takingIn = this.handlers.onEvent(inner)
          if (takingIn instanceof Promise) this.track(takingIn, pause)
        },
      })
      const stream = res.data
      // The silence of a paused stream is the bridge's own: no watchdog meanwhile.
      const pause = () => {
        if (this.resumeReading) return
        this.pauses++
        stream.pause()
        stopWatchdog()
        this.resumeReading = () => {
          this.resumeReading = undefined
          feedWatchdog()
          stream.resume()
        }
      }
      await new Promise<void>(resolve => {
        stream.setEncoding('utf8')
        stream.on('data', (chunk: string) => {
          // Any byte is life, `:` keepalives included.
          feedWatchdog()
          if (!alive) {
            alive = true
            onLife()
          }
          parser.feed(chunk)
        })
        stream.on('end', resolve)
        stream.on('close', resolve)
        stream.on('error', () => resolve())
        if (abort.signal.aborted) resolve()
        abort.signal.addEventListener('abort', () => {
          stream.destroy()
          resolve()
        })
      })
      return 'dropped'
    } catch (err) {
      if (this.running && !abort.signal.aborted) {
        this.log?.warn({ code: (err as { code?: string }).code }, 'Signal event stream could not connect; will retry')
      }
      return 'dropped'
    } finally {
      this.resumeReading = undefined
      stopWatchdog()
      abort.abort()
    }
  }

  /** Counts an event toward the backlog until it is taken in, pausing the stream at MAX_BACKLOG and reading it
   * again at half. */
  private track(takingIn: Promise<unknown>, pause: () => void): void {
    this.backlog++
    if (this.backlog >= MAX_BACKLOG) pause()
    const done = () => {
      this.backlog--
      if (this.backlog <= MAX_BACKLOG / 2) this.resumeReading?.()
    }
    takingIn.then(done, done)
  }

  private sleep(ms: number): Promise<void> {
    return new Promise(resolve => {
      const timer = setTimeout(done, ms)
      function done() {
        clearTimeout(timer)
        resolve()
      }
      this.wake = done
    })
  }
}
