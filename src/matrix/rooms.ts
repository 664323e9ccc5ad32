// The bot's side of the conversation: notices, QR images, direct chats, bridge info, message status.
import { randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
import type { Db } from '../db/types.ts'
import type { NetworkId, RemoteNetworkId } from '../core/model.ts'
import type { BridgeChannel, MatrixRooms, RoomEncryptionStatus } from '../core/rooms.ts'
import type { HomeserverApi, StateEventInput } from './client.ts'
import type { EncryptedRooms } from './encrypted-rooms.ts'
import { roomNameWithin } from './limits.ts'

const PROTOCOL: Record<RemoteNetworkId, { id: string; displayname: string; external_url: string }> = {
  signal: { id: 'signal', displayname: 'Signal', external_url: 'https://signal.org' },
  whatsapp: { id: 'whatsapp', displayname: 'WhatsApp', external_url: 'https://www.whatsapp.com' },
}

/** One state key per network: the room is bridged to two networks at once (matrix-appservice.md §5). */
export const bridgeStateKey = (network: RemoteNetworkId, channelId: string): string =>
  `relay-bridge://${network}/${encodeURIComponent(channelId)}`

/** What the bot knows of encryption when it is allowed. */
export interface BotEncryption {
  rooms: EncryptedRooms
  /** encryption.default: rooms the bridge creates are encrypted. */
  byDefault: boolean
  /** The bot's device, in a sentence. */
  health: () => Promise<{ ok: boolean; text: string }>
}

interface BotRoomsOptions {
  api: HomeserverApi
  db: Db
  botMxid: string
  log?: Logger
  encryption?: BotEncryption
}

export class BotRooms implements MatrixRooms {
  private readonly opts: BotRoomsOptions

  constructor(opts: BotRoomsOptions) {
    this.opts = opts
  }

  private txn(): string {
    return `bot.${Date.now()}.${randomBytes(4).toString('hex')}`
  }

  /** m.room.encryption for a room the bridge creates, when encryption.default says so. */
  private initialState(): StateEventInput[] {
    return this.opts.encryption?.byDefault ? [{ type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } }] : []
  }

  async createPortalRoom(o: { name: string; topic?: string; invite: string[] }): Promise<string> {
    return this.opts.api.createRoom(this.opts.botMxid, {
      name: roomNameWithin(o.name),
      ...(o.topic ? { topic: o.topic } : {}),
      invite: o.invite,
      preset: 'private_chat',
      power_level_content_override: { users: { [this.opts.botMxid]: 100 } },
      initial_state: this.initialState(),
    })
  }

  invite(roomId: string, mxid: string): Promise<void> {
    return this.opts.api.invite(this.opts.botMxid, roomId, mxid)
  }

  notice(roomId: string, text: string, html?: string): Promise<string> {
    return this.opts.api.sendEvent(this.opts.botMxid, roomId, 'm.room.message', {
      msgtype: 'm.notice', body: text, ...(html ? { format: 'org.matrix.custom.html', formatted_body: html } : {}),
    }, this.txn())
  }

  async editNotice(roomId: string, eventId: string, text: string): Promise<void> {
    await this.opts.api.sendEvent(this.opts.botMxid, roomId, 'm.room.message', {
      msgtype: 'm.notice', body: `* ${text}`,
      'm.new_content': { msgtype: 'm.notice', body: text },
      'm.relates_to': { rel_type: 'm.replace', event_id: eventId },
    }, this.txn())
  }

  async image(roomId: string, png: Buffer, body: string, replaces?: string): Promise<string> {
    const { api, botMxid } = this.opts
    const ref = await api.uploadAttachment(roomId, png, 'image/png', 'qr.png')
    const content = { msgtype: 'm.image', body, ...ref, info: { mimetype: 'image/png', size: png.length } }
    if (!replaces) return api.sendEvent(botMxid, roomId, 'm.room.message', content, this.txn())
    return api.sendEvent(botMxid, roomId, 'm.room.message', {
      ...content, body: `* ${body}`, 'm.new_content': content,
      'm.relates_to': { rel_type: 'm.replace', event_id: replaces },
    }, this.txn())
  }

  async directRoom(mxid: string): Promise<string> {
    const { db, api, botMxid } = this.opts
    const { rows } = await db.query<{ room_id: string }>('SELECT room_id FROM direct_chats WHERE mxid = $1', [mxid])
    if (rows[0]) return rows[0].room_id
    const roomId = await api.createRoom(botMxid, { invite: [mxid], is_direct: true, preset: 'trusted_private_chat', name: 'Relay bridge', initial_state: this.initialState() })
    await this.rememberDirect(mxid, roomId)
    return roomId
  }

  async rememberDirect(mxid: string, roomId: string): Promise<void> {
    await this.opts.db.query(
      'INSERT INTO direct_chats (mxid, room_id) VALUES ($1, $2) ON CONFLICT (mxid) DO UPDATE SET room_id = EXCLUDED.room_id',
      [mxid, roomId])
  }

  async isDirect(roomId: string): Promise<string | undefined> {
    const { rows } = await this.opts.db.query<{ mxid: string }>('SELECT mxid FROM direct_chats WHERE room_id = $1', [roomId])
    return rows[0]?.mxid
  }

  async powerLevels(roomId: string, mxid: string): Promise<{ user: number; stateDefault: number }> {
    const pl = await this.opts.api.getPowerLevels(roomId, this.opts.botMxid)
    const user = pl?.users?.[mxid] ?? pl?.users_default ?? 0
    return { user, stateDefault: pl?.state_default ?? 50 }
  }

  async setBridgeInfo(roomId: string, network: RemoteNetworkId, channel: BridgeChannel, creator?: string): Promise<void> {
    const { botMxid } = this.opts
    await this.bridgeState(roomId, network, channel.id, {
      bridgebot: botMxid, ...(creator ? { creator } : {}), protocol: PROTOCOL[network],
      channel: { id: channel.id, displayname: channel.name },
    })
  }

  /** Empty content removes the link from clients' view (MSC2346). */
  clearBridgeInfo(roomId: string, network: RemoteNetworkId, channelId: string): Promise<void> {
    return this.bridgeState(roomId, network, channelId, {})
  }

  private async bridgeState(roomId: string, network: RemoteNetworkId, channelId: string, content: Record<string, unknown>): Promise<void> {
    // Both the MSC2346 type and its older twin, with the same content and key.
    for (const type of ['m.bridge', 'uk.half-shot.bridge']) {
      await this.opts.api.sendState(this.opts.botMxid, roomId, type, bridgeStateKey(network, channelId), content)
    }
  }

  async messageStatus(roomId: string, eventId: string, network: NetworkId, status: 'SUCCESS' | 'FAIL_RETRIABLE' | 'FAIL_PERMANENT',
    detail?: { reason: string; message: string; internal?: string }): Promise<void> {
    await this.opts.api.sendEvent(this.opts.botMxid, roomId, 'com.beeper.message_send_status', {
      network,
      'm.relates_to': { rel_type: 'm.reference', event_id: eventId },
      status,
      ...(detail ? { reason: detail.reason, message: detail.message, ...(detail.internal ? { internal_error: detail.internal } : {}) } : {}),
    }, this.txn())
  }

  async memberName(roomId: string, mxid: string): Promise<string> {
    const { rows } = await this.opts.db.query<{ displayname: string | null }>(
      'SELECT displayname FROM room_members WHERE room_id = $1 AND mxid = $2', [roomId, mxid])
    let name = rows[0]?.displayname
    if (name === undefined) {
      const state = await this.opts.api.getState(roomId, 'm.room.member', mxid, this.opts.botMxid).catch(() => undefined)
      name = typeof state?.displayname === 'string' ? state.displayname : null
    }
    return name || mxid.slice(1, mxid.indexOf(':'))
  }

  async encryptionStatus(roomId: string): Promise<RoomEncryptionStatus> {
    const { encryption, api, botMxid, db } = this.opts
    if (!encryption) {
      const encrypted = (await api.getState(roomId, 'm.room.encryption', '', botMxid).catch(() => undefined)) !== undefined
      return { encrypted, readable: !encrypted, text: encrypted ? 'on in this room, but off in the bridge (encryption.allow), so nothing here is relayed' : 'off (the bridge\'s encryption is off too)' }
    }
    if (!(await encryption.rooms.encryptionOf(roomId))) return { encrypted: false, readable: true, text: 'off in this room' }
    const device = await encryption.health()
    const { rows: [counts] } = await db.query<{ waiting: number; failed: number }>(
      `SELECT count(*) FILTER (WHERE state = 'waiting')::int AS waiting,
              count(*) FILTER (WHERE state = 'failed' AND done_at > now() - interval '1 day')::int AS failed
       FROM undecrypted_events WHERE room_id = $1`, [roomId])
    const waiting = counts?.waiting ?? 0
    const failed = counts?.failed ?? 0
    const healthy = device.ok && failed === 0
    return {
      encrypted: true, readable: true,
      text: `on, ${healthy ? 'healthy' : 'NOT healthy'}: ${device.text}` +
        (waiting > 0 ? `; ${waiting} message${waiting === 1 ? '' : 's'} waiting for decryption keys` : '') +
        (failed > 0 ? `; ${failed} message${failed === 1 ? '' : 's'} could not be decrypted in the last day (their senders' clients did not share the keys with the bridge)` : ''),
    }
  }
}

