// How long the relay phone has been away (reference §11). WhatsApp unlinks a device whose phone stays
// offline for about 14 days and Baileys says nothing before, so the bridge counts from device-0 traffic,
// probes the phone after 10 days and warns after 12, each at most once a day.
import type { Db } from '../db/types.ts'

export const HOUR = 60 * 60_000
export const DAY = 24 * HOUR
export const WARN_AFTER_MS = 12 * DAY
/** mautrix-whatsapp's PhoneDisconnectPingTime: a quiet group with an idle phone gives no sighting, so the phone
 * is asked for an answer before anyone is warned. */
export const PROBE_AFTER_MS = 10 * DAY

/** Sends the probe; false when it could not even be tried (no open socket), so the next check tries again. */
export type PhoneProbe = () => Promise<boolean>

export class PhoneWatch {
  readonly #db: Db
  readonly #now: () => number
  readonly #notify: (loginId: string, text: string) => Promise<void>
  readonly #lastWrite = new Map<string, number>()
  constructor(db: Db, now: () => number, notify: (loginId: string, text: string) => Promise<void>) {
    this.#db = db
    this.#now = now
    this.#notify = notify
  }

  /** A sighting of the phone; written at most hourly. `force` for a fresh link (the phone was just used). */
  async seen(loginId: string, force = false): Promise<void> {
    const now = this.#now()
    if (!force && now - (this.#lastWrite.get(loginId) ?? -Infinity) < HOUR) return
    this.#lastWrite.set(loginId, now)
    await this.#db.query(
      `INSERT INTO wa_phone (login_id, last_seen_at) VALUES ($1, $2)
       ON CONFLICT (login_id) DO UPDATE SET last_seen_at = GREATEST(wa_phone.last_seen_at, EXCLUDED.last_seen_at), warned_at = NULL`,
      [loginId, now],
    )
  }

  async lastSeen(loginId: string): Promise<number | undefined> {
    const row = (await this.#db.query<{ last_seen_at: number }>('SELECT last_seen_at FROM wa_phone WHERE login_id = $1', [loginId])).rows[0]
    return row ? Number(row.last_seen_at) : undefined
  }

  /** Probes the phone after 10 days without a sighting and warns after 12, each at most once a day. A login
   * never seen starts counting now. */
  async check(loginId: string, probe?: PhoneProbe): Promise<boolean> {
    const now = this.#now()
    const row = (
      await this.#db.query<{ last_seen_at: number; warned_at: number | null; probed_at: number | null }>(
        'SELECT last_seen_at, warned_at, probed_at FROM wa_phone WHERE login_id = $1',
        [loginId],
      )
    ).rows[0]
    if (!row) {
      await this.#db.query('INSERT INTO wa_phone (login_id, last_seen_at) VALUES ($1, $2) ON CONFLICT DO NOTHING', [loginId, now])
      return false
    }
    const away = now - Number(row.last_seen_at)
    // Recorded once tried, sent or not (as mautrix does): a probe that fails waits a day like one that was sent.
    if (probe && away >= PROBE_AFTER_MS && (row.probed_at == null || now - Number(row.probed_at) >= DAY) && (await probe())) {
      await this.#db.query('UPDATE wa_phone SET probed_at = $2 WHERE login_id = $1', [loginId, now])
    }
    if (away < WARN_AFTER_MS || (row.warned_at != null && now - Number(row.warned_at) < DAY)) return false
    await this.#db.query('UPDATE wa_phone SET warned_at = $2 WHERE login_id = $1', [loginId, now])
    const days = Math.floor(away / DAY)
    await this.#notify(
      loginId,
      `The WhatsApp relay phone has not been seen for ${days} days. WhatsApp unlinks the bridge when the phone stays offline for about 14 days: open WhatsApp on the relay phone (with internet) soon.`,
    )
    return true
  }
}
