// What the core needs from the Matrix side beyond relaying: talking to people in rooms. Implemented by
// the Matrix adapter; the core never imports it.
import type { NetworkId, RemoteNetworkId } from './model.ts'

export interface BridgeChannel {
  network: RemoteNetworkId
  id: string
  name: string
}

/** A room's encryption as `status` reports it. */
export interface RoomEncryptionStatus {
  encrypted: boolean
  /** Whether the bridge reads and writes this room (false: encrypted while the bridge's encryption is off). */
  readable: boolean
  /** One line for `status`: on or off, and healthy or what is wrong. */
  text: string
}

export interface MatrixRooms {
  /** A room for a new portal, with the bot as admin, inviting `invite`. */
  createPortalRoom(opts: { name: string; topic?: string; invite: string[] }): Promise<string>
  invite(roomId: string, mxid: string): Promise<void>
  /** A notice from the bot; returns its event id. Never relayed. */
  notice(roomId: string, text: string, html?: string): Promise<string>
  /** Replaces the text of an earlier notice (a rotating QR code caption, progress). */
  editNotice(roomId: string, eventId: string, text: string): Promise<void>
  /** An image from the bot (QR codes); `replaces` edits an earlier image in place. Returns the event id. */
  image(roomId: string, png: Buffer, body: string, replaces?: string): Promise<string>
  /** The direct chat between the bot and this person, created on first use. */
  directRoom(mxid: string): Promise<string>
  /** The sender's power level in the room and the level needed to change the room's state. */
  powerLevels(roomId: string, mxid: string): Promise<{ user: number; stateDefault: number }>
  /** The m.bridge / uk.half-shot.bridge state for one linked network. */
  setBridgeInfo(roomId: string, network: RemoteNetworkId, channel: BridgeChannel, creator?: string): Promise<void>
  clearBridgeInfo(roomId: string, network: RemoteNetworkId, channelId: string): Promise<void>
  /** A com.beeper.message_send_status event about a Matrix event. */
  messageStatus(roomId: string, eventId: string, network: NetworkId, status: 'SUCCESS' | 'FAIL_RETRIABLE' | 'FAIL_PERMANENT',
    detail?: { reason: string; message: string; internal?: string }): Promise<void>
  /** A member's display name in the room as the bridge last saw it (their user id's localpart when unnamed). */
  memberName(roomId: string, mxid: string): Promise<string>
  encryptionStatus(roomId: string): Promise<RoomEncryptionStatus>
}
