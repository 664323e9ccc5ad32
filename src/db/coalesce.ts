// Group commit for small writes: what callers add while one write is under way goes out together in the
// next one. Alone, a caller waits for nothing extra; under load, N concurrent callers share one round trip
// and one commit instead of paying N.
//
// At low rates writes that belong together may still miss each other by a millisecond (a message's copies to two
// networks, answered one after the other): a caller can announce an item before it has it (expect()), and a
// coalescer made with `lingerMs` then holds a write that would start alone until the announced items have come,
// or that long at most.
//
// A coalescer made with `carryMs` goes further for announced items: a write of nothing else waits up to that long
// for another statement to carry them (take()), so that at low rates they cost no statement of their own.

interface Waiting<T, R> {
  item: T
  resolve: (result: R) => void
  reject: (err: unknown) => void
  /** Added through expect(): may wait for a carrier. */
  announced: boolean
}

/** Items handed to another statement (take()): settle them with its outcome. */
export interface Carried<T> {
  items: T[]
  /** The carrying statement committed: their callers are answered. */
  done(): void
  /** It failed: they are written as usual, on their own. */
  failed(): void
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
  readonly #carryMs: number
  #waiting: Array<Waiting<T, R>> = []
  #running = false
  /** Items announced and not yet added or cancelled. */
  #coming = 0
  /** Ends the linger under way, if any. */
  #endLinger: (() => void) | undefined
  #flushed = false
  /** Which of the linger's bounds have passed (or, for the carrier, no longer hold: hurry()), for the write about
   * to start. */
  #over = { linger: false, carry: false }

  /**
   * `write` stores a batch in one statement or transaction and may answer each item (in order); `max` bounds
   * a batch (parameters per statement are limited); `lingerMs` bounds how long a write waits for announced items,
   * `carryMs` how long a write of announced items only waits for a carrier.
   */
  constructor(write: (items: T[]) => Promise<R[] | void>, max = 200, lingerMs = 0, carryMs = 0) {
    this.#write = write
    this.#max = max
    this.#lingerMs = lingerMs
    this.#carryMs = carryMs
  }

  /** Items waiting for the next write, and whether a write is under way: a caller with several coalescers (lanes)
   * picks the least busy. */
  get load(): { running: boolean; waiting: number } {
    return { running: this.#running, waiting: this.#waiting.length }
  }

  /** Resolves with the item's answer once it is written; rejects with the error that kept it from being written. */
  add(item: T): Promise<R> {
    return this.#add(item, false)
  }

  #add(item: T, announced: boolean): Promise<R> {
    return new Promise((resolve, reject) => {
      this.#waiting.push({ item, resolve, reject, announced })
      if (!announced) this.#lingerMayEnd() // an item of its own goes now: it waits for no carrier
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
      this.#coming--
      this.#lingerMayEnd()
    }
    return {
      add: item => {
        const written = this.#add(item, true) // first, so that it is waiting when the linger ends
        settle()
        return written
      },
      cancel: settle,
    }
  }

  /**
   * The items of a write waiting for a carrier, handed over to be written in the caller's statement; undefined when
   * none is waiting. Until the caller settles them, nothing else writes them.
   */
  take(): Carried<T> | undefined {
    if (!this.#endLinger || this.#waiting.length === 0 || !this.#waiting.every(w => w.announced)) return undefined
    const taken = this.#waiting.splice(0)
    this.#lingerMayEnd()
    return {
      items: taken.map(w => w.item),
      done: () => {
        for (const w of taken) w.resolve(undefined as R) // a carrier answers nothing: for coalescers of R = void
      },
      failed: () => {
        for (const w of taken) void this.add(w.item).then(w.resolve, w.reject)
      },
    }
  }

  /** Someone waits for what is being written: the write under way or about to start waits for no carrier (the
   * next one may again). Announced items still have their bound to come. */
  hurry(): void {
    if (!this.#running) return
    this.#over.carry = true
    this.#lingerMayEnd()
  }

  /** Ends a linger under way, and lingers no more from now on (shutting down: nothing is held back). */
  flush(): void {
    this.#flushed = true
    this.#endLinger?.()
  }

  /** Whether the write about to start waits: for announced items to come, or with only those, for a carrier. */
  #lingers(): boolean {
    if (this.#flushed) return false
    return (this.#coming > 0 && this.#lingerMs > 0 && !this.#over.linger)
      || (this.#carryMs > 0 && !this.#over.carry && this.#waiting.length > 0 && this.#waiting.every(w => w.announced))
  }

  #lingerMayEnd(): void {
    if (this.#endLinger && !this.#lingers()) this.#endLinger()
  }

  async #run(): Promise<void> {
    if (this.#lingers()) await this.#linger()
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
    this.#over = { linger: false, carry: false }
  }

  /** Until the announced items have all come (or been cancelled) or `lingerMs` has passed, and then, while nothing
   * but announced items waits, until a carrier takes them or `carryMs` has passed. */
  #linger(): Promise<void> {
    return new Promise(resolve => {
      const bound = (which: 'linger' | 'carry', ms: number) => ms > 0 ? [setTimeout(() => {
        this.#over[which] = true
        this.#lingerMayEnd()
      }, ms)] : []
      const timers = [...bound('linger', this.#lingerMs), ...bound('carry', this.#carryMs)]
      this.#endLinger = () => {
        this.#endLinger = undefined
        for (const t of timers) clearTimeout(t)
        resolve()
      }
    })
  }
}
