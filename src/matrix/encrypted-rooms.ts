// Which rooms are encrypted, with what settings, and whose devices get their keys: what the encrypting
// side needs to know about a room before it sends into it. Learnt from the room's state once, then kept in
// step by the events the inbox hands over (m.room.encryption, history visibility, memberships).
import type { HomeserverApi, JsonObject } from './client.ts'

export interface RoomKeySharing {
  /** The content of the room's m.room.encryption. */
  encryption: JsonObject
  historyVisibility: string
  /** Joined people (not the appservice's own users, which have no devices): whose devices get the key. */
  members: string[]
}

export class EncryptedRooms {
  private readonly opts: { api: HomeserverApi; botMxid: string; isOwnUser: (mxid: string) => boolean }
  /** null: the room is known to be unencrypted. */
  private readonly encryption = new Map<string, JsonObject | null>()
  private readonly visibility = new Map<string, string>()
  private readonly members = new Map<string, Promise<string[]>>()
  private readonly lookups = new Map<string, Promise<JsonObject | null>>()

  constructor(opts: { api: HomeserverApi; botMxid: string; isOwnUser: (mxid: string) => boolean }) {
    this.opts = opts
  }

  /** The room's m.room.encryption content, or undefined when it is not encrypted. Asks the homeserver once. */
  async encryptionOf(roomId: string): Promise<JsonObject | undefined> {
    const known = this.encryption.get(roomId)
    if (known !== undefined) return known ?? undefined
    let lookup = this.lookups.get(roomId)
    if (!lookup) {
      lookup = this.opts.api.getState(roomId, 'm.room.encryption', '', this.opts.botMxid)
        .then(c => (c && typeof c.algorithm === 'string' ? c : null))
        .finally(() => this.lookups.delete(roomId))
      this.lookups.set(roomId, lookup)
    }
    const content = await lookup
    // An m.room.encryption handed over meanwhile wins over an older answer.
    if (!this.encryption.has(roomId)) this.encryption.set(roomId, content)
    return this.encryption.get(roomId) ?? undefined
  }

  /** Everything encrypt() needs, or undefined when the room is not encrypted. */
  async sharing(roomId: string): Promise<RoomKeySharing | undefined> {
    const encryption = await this.encryptionOf(roomId)
    if (!encryption) return undefined
    let visibility = this.visibility.get(roomId)
    if (visibility === undefined) {
      const c = await this.opts.api.getState(roomId, 'm.room.history_visibility', '', this.opts.botMxid).catch(() => undefined)
      visibility = typeof c?.history_visibility === 'string' ? c.history_visibility : 'shared'
      this.visibility.set(roomId, visibility)
    }
    return { encryption, historyVisibility: visibility, members: await this.membersOf(roomId) }
  }

  private membersOf(roomId: string): Promise<string[]> {
    let list = this.members.get(roomId)
    if (!list) {
      list = this.opts.api.getJoinedMembers(roomId, this.opts.botMxid).then(m => Object.keys(m).filter(id => !this.opts.isOwnUser(id)))
      // A failed lookup is asked again next time.
      list.catch(() => this.members.delete(roomId))
      this.members.set(roomId, list)
    }
    return list
  }

  // ---- what the inbox hands over ----

  /** An m.room.encryption state event: once encrypted, a room never goes back (the spec forbids it). */
  encrypted(roomId: string, content: JsonObject): void {
    if (typeof content.algorithm === 'string') this.encryption.set(roomId, content)
  }

  historyVisibility(roomId: string, value: unknown): void {
    if (typeof value === 'string') this.visibility.set(roomId, value)
  }

  /** Someone joined, left or was invited: the next message asks for the members again. */
  membershipChanged(roomId: string): void {
    this.members.delete(roomId)
  }

  /** A room the bridge created with m.room.encryption in its initial state. One created without it is looked up
   * as any other: a homeserver may encrypt new rooms by its own settings (Synapse's encryption_enabled_by_default_for_room_type). */
  created(roomId: string, initialState: Array<{ type: string; content: JsonObject }>): void {
    const enc = initialState.find(s => s.type === 'm.room.encryption')
    if (enc) this.encryption.set(roomId, enc.content)
  }
}
