// A remote group's name, carried to its portal room's m.room.name. The bot may lack the power to set it (a room
// someone else created, where the bot was invited at level 0): then the room is told which power is missing,
// and the name waits until the room's power levels change, arriving like every event in a transaction.
import type { Logger } from 'pino'
import type { Db } from '../db/types.ts'
import type { HomeserverApi, PowerLevels } from './client.ts'

/** The bot's level and the level a state event of `type` needs, as the homeserver decides (spec: power levels). */
export function statePower(pl: PowerLevels | undefined, userId: string, type: string): { have: number; need: number } {
  return {
    have: pl?.users?.[userId] ?? pl?.users_default ?? 0,
    need: pl?.events?.[type] ?? pl?.state_default ?? 50,
  }
}

export interface RoomNamesOptions {
  api: HomeserverApi
  db: Db
  botMxid: string
  notice: (roomId: string, text: string) => Promise<unknown>
  log?: Logger
}

export class RoomNames {
  private readonly opts: RoomNamesOptions

  constructor(opts: RoomNamesOptions) {
    this.opts = opts
  }

  /** Names the room; without the power to, says so in the room and keeps the name for later. Other failures throw. */
  async set(roomId: string, name: string): Promise<void> {
    const { api, db, botMxid } = this.opts
    try {
      await api.sendState(botMxid, roomId, 'm.room.name', '', { name })
    } catch (err) {
      const { have, need } = statePower(await api.getPowerLevels(roomId, botMxid).catch(() => undefined), botMxid, 'm.room.name')
      if (have >= need) throw err
      await db.query(
        'INSERT INTO pending_room_names (room_id, name) VALUES ($1, $2) ON CONFLICT (room_id) DO UPDATE SET name = EXCLUDED.name, created_at = now()',
        [roomId, name])
      this.opts.log?.info({ room: roomId, have, need }, 'Could not rename a portal room: the bot lacks the power; waiting for it')
      await this.opts.notice(roomId,
        `The group was renamed to “${name}”, but I cannot rename this room: setting the room name (m.room.name) needs power level ${need}, and I have ${have}. ` +
        `Give me power level ${need} here and I will rename the room then (or rename it yourself).`)
      return
    }
    await db.query('DELETE FROM pending_room_names WHERE room_id = $1', [roomId])
  }

  /** The room's power levels changed (`content` is the new m.room.power_levels): a waiting name is set if it now may be. */
  async powerChanged(roomId: string, content: PowerLevels): Promise<void> {
    const { api, db, botMxid, log } = this.opts
    const pending = (await db.query<{ name: string }>('SELECT name FROM pending_room_names WHERE room_id = $1', [roomId])).rows[0]
    if (!pending) return
    const { have, need } = statePower(content, botMxid, 'm.room.name')
    if (have < need) return
    try {
      await api.sendState(botMxid, roomId, 'm.room.name', '', { name: pending.name })
    } catch (err) {
      log?.warn({ room: roomId, err: (err as Error).message }, 'Could not rename a portal room after the bot was given power; it waits for the next change')
      return
    }
    // Only this name: a rename that arrived meanwhile keeps waiting for its own turn.
    await db.query('DELETE FROM pending_room_names WHERE room_id = $1 AND name = $2', [roomId, pending.name])
    log?.info({ room: roomId }, 'Renamed a portal room now that the bot has the power to')
  }

  /** Someone named the room in Matrix: their choice stands over a name still waiting. */
  async renamedInMatrix(roomId: string): Promise<void> {
    await this.opts.db.query('DELETE FROM pending_room_names WHERE room_id = $1', [roomId])
  }
}
