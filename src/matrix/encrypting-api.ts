// The homeserver API as the rest of the bridge sees it once encryption is on: room events sent into an
// encrypted room are encrypted first (ghosts' messages, edits and reactions by the ghost's own device; notices,
// command answers and message statuses by the bot's), attachments are encrypted before they are uploaded, and
// everything else passes through unchanged. Redactions and state events stay plain, as the spec wants.
import type { Logger } from 'pino'
import type { GhostDevices } from './crypto/ghost-devices.ts'
import type { CryptoMachine } from './crypto/machine.ts'
import { encryptAttachment } from './attachments.ts'
import type { CreateRoomOptions, HomeserverApi, JsonObject, MediaRef } from './client.ts'
import type { EncryptedRooms } from './encrypted-rooms.ts'

/** Who sends from a device of their own: the ghosts, when encryption.ghost_devices is on. */
export interface OwnDevices {
  isGhost(mxid: string): boolean
  devices: Pick<GhostDevices, 'encrypt'>
  log: Logger
}

export class EncryptingApi implements HomeserverApi {
  private readonly inner: HomeserverApi
  private readonly crypto: Pick<CryptoMachine, 'encrypt'>
  private readonly rooms: EncryptedRooms
  private readonly own: OwnDevices | undefined

  constructor(inner: HomeserverApi, crypto: Pick<CryptoMachine, 'encrypt'>, rooms: EncryptedRooms, own?: OwnDevices) {
    this.inner = inner
    this.crypto = crypto
    this.rooms = rooms
    this.own = own
  }

  get domain(): string {
    return this.inner.domain
  }

  get botUserId(): string {
    return this.inner.botUserId
  }

  /** A retry after a crash encrypts again under the same txnId: the homeserver answers with the first event. */
  async sendEvent(asUser: string, roomId: string, type: string, content: JsonObject, txnId: string, ts?: number): Promise<string> {
    const sharing = await this.rooms.sharing(roomId)
    if (!sharing) return this.inner.sendEvent(asUser, roomId, type, content, txnId, ts)
    const encrypted = await this.encrypt(asUser, roomId, type, content, sharing)
    return this.inner.sendEvent(asUser, roomId, 'm.room.encrypted', encrypted, txnId, ts)
  }

  /** A ghost's event from its own device. Should that device not be ready (the homeserver refused to create it),
   * the bot's device encrypts it: the message arrives, with the warning clients give such messages, rather than
   * not at all. */
  private async encrypt(asUser: string, roomId: string, type: string, content: JsonObject, sharing: NonNullable<Awaited<ReturnType<EncryptedRooms['sharing']>>>): Promise<JsonObject> {
    if (this.own?.isGhost(asUser)) {
      try {
        return await this.own.devices.encrypt(asUser, roomId, type, content, sharing)
      } catch (err) {
        this.own.log.warn({ ghost: asUser, err: (err as Error).message }, 'A ghost\'s own device could not encrypt; the bot\'s device does')
      }
    }
    return this.crypto.encrypt(roomId, type, content, sharing)
  }

  async uploadAttachment(roomId: string, data: Uint8Array, mimetype: string, filename?: string, asUser?: string): Promise<MediaRef> {
    if (!(await this.rooms.encryptionOf(roomId))) return this.inner.uploadAttachment(roomId, data, mimetype, filename, asUser)
    const { ciphertext, file } = encryptAttachment(data)
    // Opaque bytes under no name: the type and the name travel only inside the encrypted event.
    return { file: file(await this.inner.uploadMedia(ciphertext, 'application/octet-stream', undefined, asUser)) }
  }

  async createRoom(asUser: string, options: CreateRoomOptions): Promise<string> {
    const roomId = await this.inner.createRoom(asUser, options)
    this.rooms.created(roomId, options.initial_state ?? [])
    return roomId
  }

  // ---- unchanged ----

  whoami(asUser?: string) { return this.inner.whoami(asUser) }
  registerUser(localpart: string) { return this.inner.registerUser(localpart) }
  setDisplayName(userId: string, displayName: string) { return this.inner.setDisplayName(userId, displayName) }
  setAvatarUrl(userId: string, avatarUrl: string) { return this.inner.setAvatarUrl(userId, avatarUrl) }
  getProfile(userId: string) { return this.inner.getProfile(userId) }
  uploadMedia(data: Uint8Array, mimetype: string, filename?: string, asUser?: string) { return this.inner.uploadMedia(data, mimetype, filename, asUser) }
  downloadMedia(mxc: string) { return this.inner.downloadMedia(mxc) }
  invite(asUser: string, roomId: string, userId: string, reason?: string) { return this.inner.invite(asUser, roomId, userId, reason) }
  join(asUser: string, roomIdOrAlias: string, viaServers?: string[]) { return this.inner.join(asUser, roomIdOrAlias, viaServers) }
  leave(asUser: string, roomId: string, reason?: string) { return this.inner.leave(asUser, roomId, reason) }
  kick(asUser: string, roomId: string, userId: string, reason?: string) { return this.inner.kick(asUser, roomId, userId, reason) }
  ban(asUser: string, roomId: string, userId: string, reason?: string) { return this.inner.ban(asUser, roomId, userId, reason) }
  unban(asUser: string, roomId: string, userId: string) { return this.inner.unban(asUser, roomId, userId) }
  sendState(asUser: string, roomId: string, type: string, stateKey: string, content: JsonObject, ts?: number) { return this.inner.sendState(asUser, roomId, type, stateKey, content, ts) }
  getState(roomId: string, type: string, stateKey?: string, asUser?: string) { return this.inner.getState(roomId, type, stateKey, asUser) }
  getPowerLevels(roomId: string, asUser?: string) { return this.inner.getPowerLevels(roomId, asUser) }
  redact(asUser: string, roomId: string, eventId: string, txnId: string, reason?: string) { return this.inner.redact(asUser, roomId, eventId, txnId, reason) }
  getJoinedMembers(roomId: string, asUser?: string) { return this.inner.getJoinedMembers(roomId, asUser) }
  setTyping(asUser: string, roomId: string, typing: boolean, timeoutMs: number) { return this.inner.setTyping(asUser, roomId, typing, timeoutMs) }
  sendReadReceipt(asUser: string, roomId: string, eventId: string) { return this.inner.sendReadReceipt(asUser, roomId, eventId) }
  pingAppservice(appserviceId: string, transactionId: string) { return this.inner.pingAppservice(appserviceId, transactionId) }
}
