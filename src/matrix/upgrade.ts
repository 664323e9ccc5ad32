// A portal room upgraded on Matrix (a tombstone in the old room names the new one; the new room's m.room.create
// names the old one as predecessor) moves the portal to the new room. The bot can join the new room when it is
// public or once someone invites it; either may happen before or after the bridge sees the tombstone, so both
// the tombstone and the bot's join lead here, and the move happens once, when both are true. The old room's
// word counts: a new room that only claims a predecessor is not followed unless the old room's tombstone
// points at it.
import type { Logger } from 'pino'
import { REMOTE_NETWORKS } from '../core/model.ts'
import { chatOf, type Portal, type PortalStore } from '../core/portals.ts'
import type { HomeserverApi } from './client.ts'
import { isMatrixErrcode } from './client-errors.ts'
import { bridgeStateKey, type BotRooms } from './rooms.ts'

export interface RoomUpgradesOptions {
  api: HomeserverApi
  portals: PortalStore
  rooms: BotRooms
  botMxid: string
  log: Logger
  /** The portal now lives in `roomId`: deliveries queued for the old room go there. */
  onMoved: (portal: Portal, oldRoomId: string) => void
}

export class RoomUpgrades {
  private readonly opts: RoomUpgradesOptions
  private readonly moving = new Map<string, Promise<void>>()

  constructor(opts: RoomUpgradesOptions) {
    this.opts = opts
  }

  /** A tombstone in a portal room: join the new room now if we may, else wait to be invited. */
  async tombstone(portal: Portal, newRoomId: string): Promise<void> {
    const { api, botMxid, rooms, log } = this.opts
    try {
      await api.join(botMxid, newRoomId)
    } catch (err) {
      if (!isMatrixErrcode(err, 'M_FORBIDDEN')) throw err
      log.info({ room: portal.roomId, newRoom: newRoomId }, 'A portal room was upgraded; waiting to be invited to the new room')
      await rooms.notice(portal.roomId, 'This room was upgraded. Invite me to the new room and the bridge continues there.').catch(() => {})
      return
    }
    await this.move(portal.roomId, newRoomId)
  }

  /** The bot joined a room: if it replaces a portal room whose tombstone points here, the portal moves. */
  async joined(roomId: string): Promise<void> {
    const { api, portals } = this.opts
    const create = await api.getState(roomId, 'm.room.create').catch(() => undefined)
    const predecessor = create?.['predecessor'] as { room_id?: unknown } | undefined
    const oldRoomId = typeof predecessor?.room_id === 'string' ? predecessor.room_id : undefined
    if (!oldRoomId || !portals.byRoom(oldRoomId)) return
    const tombstone = await api.getState(oldRoomId, 'm.room.tombstone').catch(() => undefined)
    if (tombstone?.['replacement_room'] !== roomId) return
    await this.move(oldRoomId, roomId)
  }

  /** One move per old room at a time; a second call finds the portal already moved. */
  private move(oldRoomId: string, newRoomId: string): Promise<void> {
    const before = this.moving.get(oldRoomId) ?? Promise.resolve()
    const next = before.catch(() => {}).then(() => this.doMove(oldRoomId, newRoomId))
    this.moving.set(oldRoomId, next)
    return next.finally(() => {
      if (this.moving.get(oldRoomId) === next) this.moving.delete(oldRoomId)
    })
  }

  private async doMove(oldRoomId: string, newRoomId: string): Promise<void> {
    const { api, portals, rooms, botMxid, log } = this.opts
    const portal = portals.byRoom(oldRoomId)
    if (!portal) return
    const moved = await portals.moveRoom(portal, newRoomId)
    this.opts.onMoved(moved, oldRoomId)
    // Synapse copies power levels, name and join rules, never the bridge's own state: set it again.
    let missingPower = false
    for (const network of REMOTE_NETWORKS) {
      const channelId = chatOf(moved, network)
      if (!channelId) continue
      const key = bridgeStateKey(network, channelId)
      for (const type of ['m.bridge', 'uk.half-shot.bridge']) {
        const content = await api.getState(oldRoomId, type, key).catch(() => undefined)
        if (!content) continue
        await api.sendState(botMxid, newRoomId, type, key, content).catch(err => {
          if (!isMatrixErrcode(err, 'M_FORBIDDEN')) throw err
          missingPower = true
        })
      }
    }
    log.info({ oldRoom: oldRoomId, room: newRoomId }, 'The portal moved to the upgraded room')
    if (missingPower) {
      await rooms.notice(newRoomId, 'I need a power level that lets me change the room’s state (the m.bridge events) in this room; the messages are relayed anyway.').catch(() => {})
    }
    await rooms.notice(oldRoomId, 'This room was upgraded: the bridge continues in the new room.').catch(() => {})
  }
}
