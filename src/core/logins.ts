// The relay accounts linked to the bridge.
import { randomBytes } from 'node:crypto'
import type { Db } from '../db/types.ts'
import type { RemoteNetworkId } from './model.ts'
import type { ConnectionState, Login, LoginStore } from './network.ts'

interface LoginRow {
  id: string
  network: RemoteNetworkId
  address: string
  person_id: string
  display_name: string
  owner_mxid: string
  state: ConnectionState
  state_message: string | null
  metadata: Record<string, unknown>
}

const fromRow = (r: LoginRow): Login => ({
  id: r.id,
  network: r.network,
  address: r.address,
  personId: r.person_id,
  displayName: r.display_name,
  ownerMxid: r.owner_mxid,
  state: r.state,
  stateMessage: r.state_message,
  metadata: r.metadata ?? {},
})

const PREFIX: Record<RemoteNetworkId, string> = { signal: 'sig', whatsapp: 'wa' }

/**
 * Every write to `logins` goes through this store, so it keeps what it read or wrote: a send looks up its
 * relay login each time, and that must not cost a database round trip per message. (A `npx relay-bridge login`
 * run beside a running bridge takes effect at the bridge's next start, as before.)
 */
export class SqlLoginStore implements LoginStore {
  private readonly db: Db
  private readonly known = new Map<string, Login>()
  /** Counts writes, so that a read that raced one is not remembered over it. */
  private writes = 0
  constructor(db: Db) {
    this.db = db
  }

  private remember(row: LoginRow): Login {
    const login = fromRow(row)
    this.known.set(login.id, login)
    return { ...login }
  }

  async get(id: string): Promise<Login | undefined> {
    const known = this.known.get(id)
    if (known) return { ...known }
    const before = this.writes
    const { rows } = await this.db.query<LoginRow>('SELECT * FROM logins WHERE id = $1', [id])
    if (!rows[0]) return undefined
    return before === this.writes ? this.remember(rows[0]) : fromRow(rows[0])
  }

  async list(network?: RemoteNetworkId): Promise<Login[]> {
    const before = this.writes
    const { rows } = network
      ? await this.db.query<LoginRow>('SELECT * FROM logins WHERE network = $1 ORDER BY created_at', [network])
      : await this.db.query<LoginRow>('SELECT * FROM logins ORDER BY network, created_at')
    return rows.map(r => (before === this.writes ? this.remember(r) : fromRow(r)))
  }

  /** Re-linking the same account keeps its id, so portals that name it as their relay keep working. */
  async save(login: Omit<Login, 'id' | 'state' | 'stateMessage'> & { state?: ConnectionState }): Promise<Login> {
    const id = `${PREFIX[login.network]}-${randomBytes(3).toString('hex')}`
    const mine = ++this.writes
    const { rows } = await this.db.query<LoginRow>(
      `INSERT INTO logins (id, network, address, person_id, display_name, owner_mxid, state, metadata)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)
       ON CONFLICT (network, address) DO UPDATE SET person_id = EXCLUDED.person_id,
         display_name = EXCLUDED.display_name, owner_mxid = EXCLUDED.owner_mxid, state = EXCLUDED.state,
         state_message = NULL, state_changed_at = now(), metadata = logins.metadata || EXCLUDED.metadata
       RETURNING *`,
      [id, login.network, login.address, login.personId, login.displayName, login.ownerMxid,
        login.state ?? 'connecting', JSON.stringify(login.metadata ?? {})],
    )
    return mine === this.writes ? this.remember(rows[0]!) : fromRow(rows[0]!)
  }

  async remove(id: string): Promise<void> {
    this.writes++
    this.known.delete(id)
    await this.db.query('DELETE FROM logins WHERE id = $1', [id])
  }

  /** Stores a state change; returns the previous state (undefined when the login is unknown). */
  async setState(id: string, state: ConnectionState, message: string | null): Promise<ConnectionState | undefined> {
    const mine = ++this.writes
    this.known.delete(id)
    const { rows } = await this.db.query<LoginRow & { previous: ConnectionState }>(
      `UPDATE logins l SET state = $2, state_message = $3, state_changed_at = now()
       FROM (SELECT id, state AS previous FROM logins WHERE id = $1 FOR UPDATE) old
       WHERE l.id = old.id RETURNING l.*, old.previous`,
      [id, state, message],
    )
    if (rows[0] && mine === this.writes) this.remember(rows[0])
    return rows[0]?.previous
  }
}
