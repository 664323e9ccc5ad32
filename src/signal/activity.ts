// When the signal-cli daemon last delivered anything for each Signal login: the console's "last received". Every
// event updates it in memory; the database is written at most once a minute per login (a busy group would
// otherwise cost a write per message) and once more at shutdown, so a restart shows what the last run saw. A
// process killed outright loses at most the last minute of it.
import type { Logger } from 'pino'
import type { Db } from '../db/types.ts'

export interface ActivityOptions {
  db: Db
  log: Logger
  /** The least time between two writes for one login. */
  everyMs?: number
  now?: () => number
}

interface Entry {
  /** The latest event (ms). */
  at: number
  /** What the database holds (or is being given), as far as this process wrote it. */
  written: number
  writtenAt: number
  timer: NodeJS.Timeout | undefined
}

export class SignalActivity {
  readonly #db: Db
  readonly #log: Logger
  readonly #everyMs: number
  readonly #now: () => number
  readonly #entries = new Map<string, Entry>()
  readonly #writes = new Set<Promise<void>>()

  constructor(o: ActivityOptions) {
    this.#db = o.db
    this.#log = o.log
    this.#everyMs = o.everyMs ?? 60_000
    this.#now = o.now ?? Date.now
  }

  /** The daemon delivered something for the login just now. */
  saw(loginId: string): void {
    const now = this.#now()
    const e = this.#entries.get(loginId) ?? { at: 0, written: 0, writtenAt: -Infinity, timer: undefined }
    this.#entries.set(loginId, e)
    e.at = Math.max(e.at, now)
    if (e.timer) return
    const wait = e.writtenAt + this.#everyMs - now
    if (wait <= 0) this.#write(loginId, e)
    // The latest of what arrives meanwhile is written once the minute is up.
    else e.timer = setTimeout(() => this.#write(loginId, e), wait).unref()
  }

  /** When the daemon last delivered something for the login, in this run or an earlier one. */
  async last(loginId: string): Promise<number | undefined> {
    const here = this.#entries.get(loginId)?.at
    if (here) return here
    const { rows } = await this.#db.query<{ last_received_at: string | number }>('SELECT last_received_at FROM signal_activity WHERE login_id = $1', [loginId])
    return rows[0] ? Number(rows[0].last_received_at) : undefined
  }

  /** The login is gone (logged out): nothing more is written for it; its row goes with it. */
  forget(loginId: string): void {
    clearTimeout(this.#entries.get(loginId)?.timer)
    this.#entries.delete(loginId)
  }

  /** At shutdown: writes what is not written yet, and waits for the writes under way. */
  async flush(): Promise<void> {
    for (const [id, e] of this.#entries) if (e.at > e.written) this.#write(id, e)
    await Promise.all([...this.#writes])
  }

  #write(loginId: string, e: Entry): void {
    clearTimeout(e.timer)
    e.timer = undefined
    const at = e.at
    e.written = at
    e.writtenAt = this.#now()
    // GREATEST: two writes in flight may land in either order. A login deleted meanwhile gets no row.
    const p = Promise.resolve().then(() => this.#db.query(
      `INSERT INTO signal_activity (login_id, last_received_at) SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM logins WHERE id = $1)
       ON CONFLICT (login_id) DO UPDATE SET last_received_at = GREATEST(signal_activity.last_received_at, EXCLUDED.last_received_at)`,
      [loginId, at],
    )).then(() => {}, (err: unknown) => this.#log.warn({ login: loginId, err: (err as Error).message }, 'Could not record when Signal last delivered for a login; the console may show an older time after a restart'))
      .finally(() => this.#writes.delete(p))
    this.#writes.add(p)
  }
}
