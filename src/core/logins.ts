// The Signal and WhatsApp accounts linked to the bridge: relay accounts and people's personal ones.
import { randomBytes } from 'node:crypto'
import type { Db } from '../db/types.ts'
import type { RemoteNetworkId } from './model.ts'
import type { ConnectionState, Login, LoginKind, LoginStore, NewLogin } from './network.ts'

interface LoginRow {
  id: string
  network: RemoteNetworkId
  kind: LoginKind
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
  kind: r.kind,
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
 * login each time, and every inbound event asks whether its sender is someone's personal account; neither may
 * cost a database round trip per message. (A `npx relay-bridge login` run beside a running bridge takes effect at the
 * bridge's next start, as before.)
 */
export class SqlLoginStore implements LoginStore {
  private readonly db: Db
  private readonly known = new Map<string, Login>()
  /** Every login, once read: the personal-account lookups answer from it. */
  private everything: Promise<Map<string, Login>> | undefined
  /** Counts writes, so that a read that raced one is not remembered over it. */
  private writes = 0
  /** Each login's last state write, which the next one waits for. */
  private readonly stateWrites = new Map<string, Promise<unknown>>()
  constructor(db: Db) {
    this.db = db
  }

  private remember(row: LoginRow): Login {
    const login = fromRow(row)
    this.known.set(login.id, login)
    return { ...login }
  }

  /** A write changed the logins: the full list is read again when next needed. */
  private changed(): void {
    this.writes++
    this.everything = undefined
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

  private all(): Promise<Map<string, Login>> {
    if (!this.everything) {
      const before = this.writes
      const read = this.db.query<LoginRow>('SELECT * FROM logins').then(({ rows }) => new Map(rows.map(r => [r.id, fromRow(r)])))
      this.everything = read
      read.then(() => { if (before !== this.writes && this.everything === read) this.everything = undefined }, () => { if (this.everything === read) this.everything = undefined })
    }
    return this.everything
  }

  /** The personal login of a network account (its stable person id), if that account is someone's own. */
  async personalByPerson(network: RemoteNetworkId, personId: string): Promise<Login | undefined> {
    for (const l of (await this.all()).values()) {
      if (l.kind === 'personal' && l.network === network && l.personId === personId) return { ...l }
    }
    return undefined
  }

  /** A person's own (personal) login on a network, if they linked one. */
  async personalOf(network: RemoteNetworkId, ownerMxid: string): Promise<Login | undefined> {
    for (const l of (await this.all()).values()) {
      if (l.kind === 'personal' && l.network === network && l.ownerMxid === ownerMxid) return { ...l }
    }
    return undefined
  }

  /** Any of the bridge's logins on a network that is this account (relay or personal): who sent a copy. */
  async byPerson(network: RemoteNetworkId, personId: string): Promise<Login | undefined> {
    for (const l of (await this.all()).values()) if (l.network === network && l.personId === personId) return { ...l }
    return undefined
  }

  /** Re-linking the same account keeps its id, so portals that name it as their relay keep working. */
  async save(login: NewLogin): Promise<Login> {
    const id = `${PREFIX[login.network]}-${randomBytes(3).toString('hex')}`
    this.changed()
    const mine = this.writes
    const { rows } = await this.db.query<LoginRow>(
      `INSERT INTO logins (id, network, kind, address, person_id, display_name, owner_mxid, state, metadata)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)
       ON CONFLICT (network, address) DO UPDATE SET kind = EXCLUDED.kind, person_id = EXCLUDED.person_id,
         display_name = EXCLUDED.display_name, owner_mxid = EXCLUDED.owner_mxid, state = EXCLUDED.state,
         state_message = NULL, state_changed_at = now(), metadata = logins.metadata || EXCLUDED.metadata
       RETURNING *`,
      [id, login.network, login.kind, login.address, login.personId, login.displayName, login.ownerMxid,
        login.state ?? 'connecting', JSON.stringify(login.metadata ?? {})],
    )
    return mine === this.writes ? this.remember(rows[0]!) : fromRow(rows[0]!)
  }

  /** Deletes the login for good; portals it relayed lose their relay on that network (ON DELETE SET NULL). */
  async remove(id: string): Promise<void> {
    this.changed()
    this.known.delete(id)
    await this.db.query('DELETE FROM logins WHERE id = $1', [id])
  }

  /** Stores a state change; returns the previous state (undefined when the login is unknown). A login's changes are
   * written one after the other, in the order they were made: two in flight at once on different connections could
   * commit the other way round (a login left "connecting" on record after it had connected). */
  setState(id: string, state: ConnectionState, message: string | null): Promise<ConnectionState | undefined> {
    const write = () => this.writeState(id, state, message)
    const next = (this.stateWrites.get(id) ?? Promise.resolve()).then(write, write)
    this.stateWrites.set(id, next)
    const forget = () => {
      if (this.stateWrites.get(id) === next) this.stateWrites.delete(id)
    }
    next.then(forget, forget)
    return next
  }

  private async writeState(id: string, state: ConnectionState, message: string | null): Promise<ConnectionState | undefined> {
    this.changed()
    const mine = this.writes
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
