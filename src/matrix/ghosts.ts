// Ghosts: the Matrix users that stand for Signal and WhatsApp people. Their ids federate and can never
// be renamed, so they are built from ids that hold no phone number (ACI, WhatsApp person id).
import type { Logger } from 'pino'
import type { Db } from '../db/types.ts'
import type { MediaStore } from '../core/media.ts'
import { NETWORK_LABEL, type Departure, type Person, type RemoteNetworkId } from '../core/model.ts'
import { GHOST_PREFIXES } from '../registration.ts'
import type { HomeserverApi } from './client.ts'
import { isMatrixErrcode } from './client-errors.ts'
import { displayNameWithin } from './limits.ts'

// Matrix localparts allow a-z 0-9 . _ = - /; anything else is escaped as =xx (the mautrix convention),
// which keeps the mapping reversible.
const NEEDS_NO_ESCAPE = /^[a-z0-9._\-/]*$/
export function escapeLocalpart(id: string): string {
  // Signal ACIs and WhatsApp person ids are such text already, and every message to Matrix names its ghost: one
  // test instead of a buffer, a test and a concatenation per byte.
  if (NEEDS_NO_ESCAPE.test(id)) return id
  let out = ''
  for (const b of Buffer.from(id, 'utf8')) {
    const c = String.fromCharCode(b)
    out += /[a-z0-9._\-/]/.test(c) ? c : `=${b.toString(16).padStart(2, '0')}`
  }
  return out
}

export function unescapeLocalpart(part: string): string {
  const bytes: number[] = []
  for (let i = 0; i < part.length; i++) {
    if (part[i] === '=' && /^[0-9a-f]{2}$/.test(part.slice(i + 1, i + 3))) {
      bytes.push(parseInt(part.slice(i + 1, i + 3), 16))
      i += 2
    } else bytes.push(part.charCodeAt(i))
  }
  return Buffer.from(bytes).toString('utf8')
}

export function ghostMxid(person: Pick<Person, 'network' | 'id'>, domain: string): string {
  if (person.network === 'matrix') return person.id
  return `@${GHOST_PREFIXES[person.network]}${escapeLocalpart(person.id)}:${domain}`
}

/** The remote person a ghost stands for, or undefined when the MXID is not one of our ghosts. */
export function parseGhost(mxid: string, domain: string): { network: RemoteNetworkId; id: string } | undefined {
  const suffix = `:${domain}`
  if (!mxid.startsWith('@') || !mxid.endsWith(suffix)) return undefined
  const local = mxid.slice(1, -suffix.length)
  for (const network of ['signal', 'whatsapp'] as const) {
    const prefix = GHOST_PREFIXES[network]
    if (local.startsWith(prefix) && local.length > prefix.length) return { network, id: unescapeLocalpart(local.slice(prefix.length)) }
  }
  return undefined
}

/** "Alice (Signal)", the name cut to fit Synapse's 256 characters (a longer one is refused for good). */
export const ghostDisplayName = (person: Pick<Person, 'network' | 'displayName'>): string =>
  displayNameWithin(person.displayName, ` (${NETWORK_LABEL[person.network]})`)

interface GhostState {
  registered: boolean
  displayName: string | null
  avatarKey: string | null
  rooms: Set<string>
}

export class Ghosts {
  private readonly cache = new Map<string, GhostState>()
  private readonly pending = new Map<string, Promise<string>>()
  private readonly opts: { db: Db; api: HomeserverApi; media: MediaStore; domain: string; botMxid: string; log: Logger }

  constructor(opts: { db: Db; api: HomeserverApi; media: MediaStore; domain: string; botMxid: string; log: Logger }) {
    this.opts = opts
  }

  private async state(mxid: string, person: Person): Promise<GhostState> {
    let s = this.cache.get(mxid)
    if (s) return s
    const { db } = this.opts
    const { rows } = await db.query<{ registered: boolean; display_name: string | null; avatar_key: string | null }>(
      'SELECT registered, display_name, avatar_key FROM ghosts WHERE mxid = $1', [mxid])
    const rooms = await db.query<{ room_id: string }>('SELECT room_id FROM ghost_memberships WHERE mxid = $1', [mxid])
    if (!rows[0]) {
      await db.query('INSERT INTO ghosts (mxid, network, person_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
        [mxid, person.network, person.id])
    }
    s = {
      registered: rows[0]?.registered ?? false,
      displayName: rows[0]?.display_name ?? null,
      avatarKey: rows[0]?.avatar_key ?? null,
      rooms: new Set(rooms.rows.map(r => r.room_id)),
    }
    this.cache.set(mxid, s)
    return s
  }

  /** Makes the person's ghost exist, carry their current name and avatar, and be joined to the room.
   * Concurrent calls for one ghost share the work. */
  ensure(person: Person, roomId: string): Promise<string> {
    return this.once(person, roomId, false, false)
  }

  /** As ensure, for a group's member who has not spoken: the bot invites the ghost first (a portal room is
   * invite-only), so that bringing a thousand of them in costs one join each, not a refused one and another. */
  enter(person: Person, roomId: string, unnamed = false): Promise<string> {
    return this.once(person, roomId, true, unnamed)
  }

  /**
   * `unnamed`: the person's name is only a neutral label, which does not replace a name the ghost has already.
   * Calls for one ghost in one room go one after the other: the first does the work, the next find it done (and
   * still bring what they know better, such as the name a message carries while the group's roster had none).
   */
  private once(person: Person, roomId: string, inviteFirst: boolean, unnamed: boolean): Promise<string> {
    const mxid = ghostMxid(person, this.opts.domain)
    const key = `${mxid}\u0000${roomId}`
    const before = this.pending.get(key)
    const p = (before ? before.catch(() => undefined) : Promise.resolve()).then(() => this.doEnsure(mxid, person, roomId, inviteFirst, unnamed))
    this.pending.set(key, p)
    const done = () => {
      if (this.pending.get(key) === p) this.pending.delete(key)
    }
    p.then(done, done)
    return p
  }

  private async doEnsure(mxid: string, person: Person, roomId: string, inviteFirst: boolean, unnamed: boolean): Promise<string> {
    const { api, db } = this.opts
    const s = await this.state(mxid, person)
    if (!s.registered) {
      await api.registerUser(mxid.slice(1, mxid.indexOf(':')))
      await db.query('UPDATE ghosts SET registered = true WHERE mxid = $1', [mxid])
      s.registered = true
    }
    const name = ghostDisplayName(person)
    if (s.displayName !== name && !(unnamed && s.displayName)) {
      await api.setDisplayName(mxid, name)
      await db.query('UPDATE ghosts SET display_name = $2 WHERE mxid = $1', [mxid, name])
      s.displayName = name
    }
    if (person.avatar) await this.syncAvatar(mxid, s, person.avatar)
    if (!s.rooms.has(roomId)) {
      if (inviteFirst) {
        await this.invite(mxid, roomId)
        await this.opts.api.join(mxid, roomId)
      } else await this.join(mxid, roomId)
      await db.query('INSERT INTO ghost_memberships (mxid, room_id) VALUES ($1, $2) ON CONFLICT DO NOTHING', [mxid, roomId])
      s.rooms.add(roomId)
    }
    return mxid
  }

  private async join(mxid: string, roomId: string): Promise<void> {
    const { api, botMxid } = this.opts
    try {
      await api.join(mxid, roomId)
    } catch (err) {
      // Portal rooms are invite-only: the bot invites the ghost, then it joins.
      if (!isMatrixErrcode(err, 'M_FORBIDDEN')) throw err
      await api.invite(botMxid, roomId, mxid)
      await api.join(mxid, roomId)
    }
  }

  /** The bot invites the ghost; one banned from the room (its group had banned them, and they are back) is unbanned
   * first, and one already in (it spoke meanwhile) needs no invitation. */
  private async invite(mxid: string, roomId: string): Promise<void> {
    const { api, botMxid } = this.opts
    try {
      await api.invite(botMxid, roomId, mxid)
    } catch (err) {
      if (!isMatrixErrcode(err, 'M_FORBIDDEN')) throw err
      const membership = (await api.getState(roomId, 'm.room.member', mxid, botMxid).catch(() => undefined))?.['membership']
      if (membership === 'join') return
      if (membership !== 'ban') throw err
      await api.unban(botMxid, roomId, mxid)
      await api.invite(botMxid, roomId, mxid)
    }
  }

  /**
   * The person left their group (or was removed, or banned): the ghost leaves the room the same way, the bot removing
   * or banning it. Where the bot may not (its power level), the ghost leaves by itself, which it always may.
   */
  async depart(person: Person, roomId: string, how: Departure, reason: string): Promise<void> {
    const { api, botMxid } = this.opts
    const mxid = ghostMxid(person, this.opts.domain)
    // Nobody to take out, unless a ban keeps them from coming back by a message.
    if (how !== 'ban' && !(await this.isJoined(mxid, roomId))) return
    const gone = (e: unknown) => {
      if (!isMatrixErrcode(e, 'M_FORBIDDEN')) throw e
    }
    try {
      if (how === 'leave') await api.leave(mxid, roomId, reason)
      else if (how === 'kick') await api.kick(botMxid, roomId, mxid, reason)
      else await api.ban(botMxid, roomId, mxid, reason)
    } catch (err) {
      gone(err)
      if (how !== 'leave') await api.leave(mxid, roomId, reason).catch(gone)
    }
    await this.forgetMembership(mxid, roomId)
  }

  private async syncAvatar(mxid: string, s: GhostState, avatar: NonNullable<Person['avatar']>): Promise<void> {
    // The media store is content-addressed: the same picture has the same key however it came.
    const key = 'url' in avatar ? avatar.url : 'mediaId' in avatar ? avatar.mediaId : await this.opts.media.put(avatar.data)
    if (s.avatarKey === key) return
    const mxc = 'url' in avatar ? avatar.url
      : await this.opts.api.uploadMedia('mediaId' in avatar ? await this.opts.media.get(avatar.mediaId) : avatar.data, avatar.mimetype, 'avatar')
    await this.opts.api.setAvatarUrl(mxid, mxc)
    await this.opts.db.query('UPDATE ghosts SET avatar_key = $2, avatar_mxc = $3 WHERE mxid = $1', [mxid, key, mxc])
    s.avatarKey = key
  }

  /** Whether the ghost is joined to the room as far as the bridge knows. Reads only: never registers or joins. */
  async isJoined(mxid: string, roomId: string): Promise<boolean> {
    const cached = this.cache.get(mxid)
    if (cached) return cached.rooms.has(roomId)
    const { rowCount } = await this.opts.db.query('SELECT 1 FROM ghost_memberships WHERE mxid = $1 AND room_id = $2', [mxid, roomId])
    return rowCount > 0
  }

  /** Forget a membership (the ghost was kicked or left), so the next message joins again. */
  async forgetMembership(mxid: string, roomId: string): Promise<void> {
    this.cache.get(mxid)?.rooms.delete(roomId)
    await this.opts.db.query('DELETE FROM ghost_memberships WHERE mxid = $1 AND room_id = $2', [mxid, roomId])
  }

  async exists(mxid: string): Promise<boolean> {
    const { rowCount } = await this.opts.db.query('SELECT 1 FROM ghosts WHERE mxid = $1', [mxid])
    return rowCount > 0
  }
}
