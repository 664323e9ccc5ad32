// Baileys auth state (creds and Signal keys) in the database, one set per login (reference §7), and the
// per-login lock that keeps two processes from opening the same account (which loops on 440).
import {
  BufferJSON,
  initAuthCreds,
  makeCacheableSignalKeyStore,
  proto,
  type AuthenticationCreds,
  type AuthenticationState,
  type SignalDataSet,
  type SignalDataTypeMap,
  type SignalKeyStore,
} from '@whiskeysockets/baileys'
import type { Logger } from 'pino'
import type { Db } from '../db/types.ts'

export const encodeJson = (v: unknown): string => JSON.stringify(v, BufferJSON.replacer)
export const decodeJson = <T>(s: string): T => JSON.parse(s, BufferJSON.reviver) as T

const UPSERT = `INSERT INTO wa_auth (login_id, kind, key_id, value) VALUES ($1, $2, $3, $4)
  ON CONFLICT (login_id, kind, key_id) DO UPDATE SET value = EXCLUDED.value`

export interface StoredAuth {
  state: AuthenticationState
  /** Persists the creds as they are now (the socket mutates them in place); call on every creds.update. */
  saveCreds(): Promise<void>
  /** Removes every row of this login (after a logout). */
  wipe(): Promise<void>
}

/** The plain key store over wa_auth. Every set is one transaction, durable before it resolves. */
export function dbKeyStore(db: Db, loginId: string): SignalKeyStore {
  return {
    async get<T extends keyof SignalDataTypeMap>(kind: T, ids: string[]) {
      const found: { [id: string]: SignalDataTypeMap[T] } = {}
      if (ids.length === 0) return found
      const res = await db.query<{ key_id: string; value: string }>(
        'SELECT key_id, value FROM wa_auth WHERE login_id = $1 AND kind = $2 AND key_id = ANY($3)',
        [loginId, kind, ids],
      )
      for (const r of res.rows) {
        const v = decodeJson<SignalDataTypeMap[T]>(r.value)
        // A plain object breaks app-state sync: it must be the proto class.
        found[r.key_id] = (
          kind === 'app-state-sync-key' ? proto.Message.AppStateSyncKeyData.fromObject(v as object) : v
        ) as SignalDataTypeMap[T]
      }
      return found
    },
    async set(data: SignalDataSet) {
      await db.transaction(async tx => {
        for (const [kind, entries] of Object.entries(data)) {
          for (const [id, value] of Object.entries(entries ?? {})) {
            if (value == null) {
              await tx.query('DELETE FROM wa_auth WHERE login_id = $1 AND kind = $2 AND key_id = $3', [loginId, kind, id])
            } else {
              await tx.query(UPSERT, [loginId, kind, id, encodeJson(value)])
            }
          }
        }
      })
    },
    async clear() {
      await db.query("DELETE FROM wa_auth WHERE login_id = $1 AND kind <> 'creds'", [loginId])
    },
  }
}

/** Loads (or creates fresh) auth state for a login id. */
export async function loadAuth(db: Db, loginId: string, log?: Logger): Promise<StoredAuth> {
  const { rows } = await db.query<{ value: string }>(
    "SELECT value FROM wa_auth WHERE login_id = $1 AND kind = 'creds' AND key_id = ''",
    [loginId],
  )
  const creds: AuthenticationCreds = rows[0] ? decodeJson<AuthenticationCreds>(rows[0].value) : initAuthCreds()
  const state: AuthenticationState = { creds, keys: makeCacheableSignalKeyStore(dbKeyStore(db, loginId), log) }
  return {
    state,
    saveCreds: async () => {
      await db.query(UPSERT, [loginId, 'creds', '', encodeJson(creds)])
    },
    wipe: async () => {
      await db.query('DELETE FROM wa_auth WHERE login_id = $1', [loginId])
    },
  }
}

/** Moves a provisional login's rows (written while the QR was being scanned) to its final id. */
export async function moveAuth(db: Db, fromId: string, toId: string): Promise<void> {
  await db.transaction(async tx => {
    await tx.query('DELETE FROM wa_auth WHERE login_id = $1', [toId])
    await tx.query('UPDATE wa_auth SET login_id = $2 WHERE login_id = $1', [fromId, toId])
  })
}

// "wa" in ASCII: the first half of the two-key advisory lock, so it never meets the migration lock.
const LOCK_CLASS = 0x7761

export interface LoginLock {
  release(): Promise<void>
  /** Settles if the lock's connection drops: the server has released the lock, and another process may take it. */
  readonly lost: Promise<Error>
}

/**
 * Holds a session-level advisory lock for the login for as long as the account is open, on a dedicated
 * connection. Returns undefined when another process holds it.
 */
export async function lockLogin(db: Db, loginId: string): Promise<LoginLock | undefined> {
  let release!: () => void
  const released = new Promise<void>(r => (release = r))
  // false: another process holds it; an error: the database could not be asked (which is not the same answer).
  let settle!: (got: boolean | Error) => void
  const acquired = new Promise<boolean | Error>(r => (settle = r))
  let lost!: Promise<Error>
  const held = db
    .session(async (conn, dropped) => {
      lost = dropped
      const { rows } = await conn.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', [
        LOCK_CLASS,
        loginId,
      ])
      const ok = rows[0]?.ok === true
      settle(ok)
      if (!ok) return
      // Released by us, or gone with the connection: either way this session is over.
      if ((await Promise.race([released.then(() => 'released' as const), dropped])) !== 'released') return
      await conn.query('SELECT pg_advisory_unlock($1, hashtext($2))', [LOCK_CLASS, loginId])
    })
    .catch((err: unknown) => {
      settle(err as Error)
      throw err
    })
  const got = await acquired
  if (got !== true) {
    await held.catch(() => {})
    if (got instanceof Error) throw got
    return undefined
  }
  return {
    lost,
    release: async () => {
      release()
      await held.catch(() => {})
    },
  }
}
