// Group commit for small writes: what callers add while one write is under way goes out together in the
// next one. Alone, a caller waits for nothing extra; under load, N concurrent callers share one round trip
// and one commit instead of paying N.

interface Waiting<T, R> {
  item: T
  resolve: (result: R) => void
  reject: (err: unknown) => void
}

export class Coalescer<T, R = void> {
  readonly #write: (items: T[]) => Promise<R[] | void>
  readonly #max: number
  #waiting: Array<Waiting<T, R>> = []
  #running = false

  /**
   * `write` stores a batch in one statement or transaction and may answer each item (in order); `max` bounds
   * a batch (parameters per statement are limited).
   */
  constructor(write: (items: T[]) => Promise<R[] | void>, max = 200) {
    this.#write = write
    this.#max = max
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

  async #run(): Promise<void> {
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
}
