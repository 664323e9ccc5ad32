// Group commit for small writes: what callers add while one write is under way goes out together in the
// next one. Alone, a caller waits for nothing extra; under load, N concurrent callers share one round trip
// and one commit instead of paying N.

interface Waiting<T> {
  item: T
  resolve: () => void
  reject: (err: unknown) => void
}

export class Coalescer<T> {
  readonly #write: (items: T[]) => Promise<void>
  readonly #max: number
  #waiting: Array<Waiting<T>> = []
  #running = false

  /** `write` stores a batch in one statement; `max` bounds a batch (parameters per statement are limited). */
  constructor(write: (items: T[]) => Promise<void>, max = 200) {
    this.#write = write
    this.#max = max
  }

  /** Resolves once the item is written; rejects with the error that kept it from being written. */
  add(item: T): Promise<void> {
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
        await this.#write(batch.map(w => w.item))
        for (const w of batch) w.resolve()
      } catch (err) {
        if (batch.length === 1) batch[0]!.reject(err)
        // One bad item must not fail the others: each is tried alone, so only its own caller sees the error.
        else for (const w of batch) await this.#write([w.item]).then(w.resolve, w.reject)
      }
    }
    this.#running = false
  }
}
