// The homeserver API as the rest of the bridge sees it once encryption is on: room events sent into an
// encrypted room are encrypted by the bot's device first (ghosts' messages, notices, command answers, edits,
// reactions, message statuses), attachments are encrypted before they are uploaded, and everything else
// passes through unchanged. Redactions and state events stay plain, as the spec wants.
import type { CryptoMachine } from './crypto/machine.ts'
import { encryptAttachment } from './attachments.ts'
import type { CreateRoomOptions, HomeserverApi, JsonObject, MediaRef } from './client.ts'
import type { EncryptedRooms } from './encrypted-rooms.ts'

export class EncryptingApi implements HomeserverApi {
  private readonly inner: HomeserverApi
  private readonly crypto: Pick<CryptoMachine, 'encrypt'>
  private readonly rooms: EncryptedRooms

  constructor(inner: HomeserverApi, crypto: Pick<CryptoMachine, 'encrypt'>, rooms: EncryptedRooms) {
    this.inner = inner
    this.crypto = crypto
    this.rooms = rooms
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
    const encrypted = await this.crypto.encrypt(roomId, type, content, sharing)
    return this.inner.sendEvent(asUser, roomId, 'm.room.encrypted', encrypted, txnId, ts)
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
