// Group commit for small writes: what callers add while one write is under way goes out together in the
// next one. Alone, a caller waits for nothing extra; under load, N concurrent callers share one round trip
// and one commit instead of paying N.
//
// At low rates writes that belong together may still miss each other by a millisecond (a message's copies to two
// networks, answered one after the other): a caller can announce an item before it has it (expect()), and a
// coalescer made with `lingerMs` then holds a write that would start alone until the announced items have come,
// or that long at most.

interface Waiting<T, R> {
  item: T
  resolve: (result: R) => void
  reject: (err: unknown) => void
}

/** An item announced before it exists: settled by adding it, or by cancel() when it will not come. */
export interface Coming<T, R> {
  add(item: T): Promise<R>
  cancel(): void
}

export class Coalescer<T, R = void> {
  readonly #write: (items: T[]) => Promise<R[] | void>
  readonly #max: number
  readonly #lingerMs: number
  #waiting: Array<Waiting<T, R>> = []
  #running = false
  /** Items announced and not yet added or cancelled. */
  #coming = 0
  /** Ends the linger under way, if any. */
  #endLinger: (() => void) | undefined
  #flushed = false

  /**
   * `write` stores a batch in one statement or transaction and may answer each item (in order); `max` bounds
   * a batch (parameters per statement are limited); `lingerMs` bounds how long a write waits for announced items.
   */
  constructor(write: (items: T[]) => Promise<R[] | void>, max = 200, lingerMs = 0) {
    this.#write = write
    this.#max = max
    this.#lingerMs = lingerMs
  }

  /** Items waiting for the next write, and whether a write is under way: a caller with several coalescers (lanes)
   * picks the least busy. */
  get load(): { running: boolean; waiting: number } {
    return { running: this.#running, waiting: this.#waiting.length }
  }

  /** Resolves with the item's answer once it is written; rejects with the error that kept it from being written. */
  add(item: T): Promise<R> {
    return new Promise((resolve, reject) => {
      this.#waiting.push({ item, resolve, reject })
      if (!this.#running) {
        this.#running = true
        // Whatever else is added in this same tick joins the first batch.
        queueMicrotask(() => void this.#run())
      }
    })
  }

  /**
   * Announces an item to come: until it is added or cancelled, a write that would start with nothing under way
   * waits for it (up to `lingerMs`). Writes already following each other under load never wait.
   */
  expect(): Coming<T, R> {
    this.#coming++
    let settled = false
    const settle = (): void => {
      if (settled) return
      settled = true
      if (--this.#coming === 0) this.#endLinger?.()
    }
    return {
      add: item => {
        const written = this.add(item) // first, so that it is waiting when the linger ends
        settle()
        return written
      },
      cancel: settle,
    }
  }

  /** Ends a linger under way, and lingers no more from now on (shutting down: nothing is held back). */
  flush(): void {
    this.#flushed = true
    this.#endLinger?.()
  }

  async #run(): Promise<void> {
    if (this.#coming > 0 && this.#lingerMs > 0 && !this.#flushed) await this.#linger()
    while (this.#waiting.length > 0) {
      const batch = this.#waiting.splice(0, this.#max)
      try {
        const results = await this.#write(batch.map(w => w.item))
        for (const [i, w] of batch.entries()) w.resolve(results?.[i] as R)
      } catch (err) {
        if (batch.length === 1) batch[0]!.reject(err)
        // One bad item must not fail the others: each is tried alone, so only its own caller sees the error.
        else for (const w of batch) await this.#write([w.item]).then(r => w.resolve(r?.[0] as R), w.reject)
      }
    }
    this.#running = false
  }

  /** Until the announced items have all come (or been cancelled), or `lingerMs` has passed. */
  #linger(): Promise<void> {
    return new Promise(resolve => {
      const timer = setTimeout(() => this.#endLinger?.(), this.#lingerMs)
      this.#endLinger = () => {
        this.#endLinger = undefined
        clearTimeout(timer)
        resolve()
      }
    })
  }
}
