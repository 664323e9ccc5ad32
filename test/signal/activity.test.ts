// The Signal login's last activity as the database keeps it (src/signal/activity.ts): written at most once a
// minute per login however many events arrive, the latest written when the minute is up, what is left written at
// shutdown, and read back by the next run. On both databases, with a clock the test moves.
import { pino } from 'pino'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { Db } from '../../src/db/types.ts'
import { SignalActivity } from '../../src/signal/activity.ts'
import { DB_KINDS, freshDb } from '../support/db.ts'
import { until } from '../support/relay.ts'

const LOGIN = 'sig-0123abcd'
const log = pino({ level: 'silent' })

describe.each(DB_KINDS)('Signal last activity, on %s', kind => {
  let db: Db
  let writes: number
  let clock: number
  /** The database, counting the writes of last activity. */
  let counted: Db

  beforeEach(async () => {
    db = await freshDb(kind)
    await db.query(`INSERT INTO logins (id, network, address, person_id, owner_mxid, state) VALUES ($1, 'signal', '+15550100001', 'aci-1', '@admin:example.org', 'connected')`, [LOGIN])
    writes = 0
    clock = 1_790_000_000_000
    counted = new Proxy(db, {
      get(target, key) {
        if (key !== 'query') return Reflect.get(target, key)
        return (sql: string, params?: unknown[]) => {
          if (/INSERT INTO signal_activity/.test(sql)) writes++
          return target.query(sql, params)
        }
      },
    })
  })
  afterEach(async () => db?.close())

  const stored = async () => (await db.query<{ last_received_at: string }>('SELECT last_received_at FROM signal_activity WHERE login_id = $1', [LOGIN])).rows[0]?.last_received_at

  it('a burst of 100 events is written once at once and once at shutdown, and the next run shows the last of them', async () => {
    const activity = new SignalActivity({ db: counted, log, now: () => clock })
    for (let i = 0; i < 100; i++) {
      activity.saw(LOGIN)
      clock += 100 // ten seconds in all: well inside the minute
    }
    const last = clock - 100
    expect(await activity.last(LOGIN)).toBe(last)
    // The first event was written at once; the other 99 wait for the minute (or the shutdown).
    await until(async () => (await stored()) !== undefined, 'the first write')
    expect(Number(await stored())).toBe(1_790_000_000_000)
    await activity.flush()
    expect(writes).toBe(2)
    expect(Number(await stored())).toBe(last)

    // A restart: a new instance on the same database knows nothing in memory and reads it back.
    const next = new SignalActivity({ db: counted, log, now: () => clock })
    expect(await next.last(LOGIN)).toBe(last)
    expect(await next.last('sig-never')).toBeUndefined()
    // Nothing new arrived: its shutdown writes nothing.
    await next.flush()
    expect(writes).toBe(2)
  })

  it('what arrives within the minute is written when the minute is up, without waiting for another event', async () => {
    const activity = new SignalActivity({ db: counted, log, now: () => clock, everyMs: 50 })
    activity.saw(LOGIN)
    clock += 10
    activity.saw(LOGIN)
    clock += 10
    activity.saw(LOGIN)
    // The second and third events share one write, 50 ms (of the test's clock) after the first.
    await until(async () => Number(await stored()) === clock, 'the write once the interval is up')
    expect(writes).toBe(2)
    await activity.flush()
    expect(writes).toBe(2)
  })

  it('a login logged out and deleted keeps no activity, and a write that comes after the deletion adds none', async () => {
    const activity = new SignalActivity({ db: counted, log, now: () => clock })
    activity.saw(LOGIN)
    await activity.flush()
    expect(await stored()).toBeDefined()
    await db.query('DELETE FROM logins WHERE id = $1', [LOGIN])
    expect(await stored()).toBeUndefined()
    clock += 120_000
    activity.saw(LOGIN)
    await activity.flush()
    expect(await stored()).toBeUndefined()
  })
})
