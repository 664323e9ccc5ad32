// A portal room's name, topic and picture: set by the bot when a group's change reaches Matrix, and read from the
// state events people send, which become the neutral chat_update. Where the bot lacks the power to set a state event
// (a room someone else created, where the bot was invited at level 0), the change is refused as NotPermitted: the core
// keeps it, tells the room once, and tries again when the room's power levels change.
import type { Logger } from 'pino'
import { cleanChatText, withinChars } from '../core/chat-text.ts'
import { NotPermitted } from '../core/errors.ts'
import type { MediaStore } from '../core/media.ts'
import type { ChatField, ChatValue, InboundChatUpdate, Person } from '../core/model.ts'
import type { HomeserverApi, PowerLevels } from './client.ts'
import { roomNameWithin } from './limits.ts'

/** The bot's level and the level a state event of `type` needs, as the homeserver decides (spec: power levels). */
export function statePower(pl: PowerLevels | undefined, userId: string, type: string): { have: number; need: number } {
  return {
    have: pl?.users?.[userId] ?? pl?.users_default ?? 0,
    need: pl?.events?.[type] ?? pl?.state_default ?? 50,
  }
}

/** What a room keeps as state (the disappearing-message timer is no room state: it is a notice, matrix/participant.ts). */
type RoomField = Exclude<ChatField, 'timer'>

const STATE: Record<RoomField, { type: string; what: string }> = {
  name: { type: 'm.room.name', what: 'the room name' },
  topic: { type: 'm.room.topic', what: 'the room topic' },
  avatar: { type: 'm.room.avatar', what: 'the room picture' },
}

/** A topic is plain text in an event of at most 64 KiB; a group description longer than this is no description. */
const MAX_TOPIC_CHARS = 4096

/** A name or topic as a Matrix room keeps it: plain text without control characters, within the limits. */
export function matrixChatValue(field: ChatField, value: ChatValue): ChatValue {
  if (typeof value !== 'string') return value
  if (field === 'name') return roomNameWithin(cleanChatText('name', value))
  return withinChars(cleanChatText('topic', value), MAX_TOPIC_CHARS)
}

export interface RoomStateOptions {
  api: HomeserverApi
  media: MediaStore
  botMxid: string
  log?: Logger
}

export class RoomState {
  private readonly opts: RoomStateOptions

  constructor(opts: RoomStateOptions) {
    this.opts = opts
  }

  /** Sets the room's name, topic or picture as the bot. Throws NotPermitted when the bot lacks the power to. */
  async set(roomId: string, field: RoomField, value: ChatValue): Promise<void> {
    const { api, media, botMxid } = this.opts
    const { type, what } = STATE[field]
    let content: Record<string, unknown>
    if (field === 'name') content = { name: value }
    else if (field === 'topic') content = { topic: value }
    else if (value === null || typeof value !== 'object') content = {} // the picture was removed
    else {
      const data = await media.get(value.mediaId)
      content = { url: await api.uploadMedia(data, value.mimetype, 'avatar', botMxid), info: { mimetype: value.mimetype, size: data.length } }
    }
    try {
      await api.sendState(botMxid, roomId, type, '', content)
    } catch (err) {
      const { have, need } = statePower(await api.getPowerLevels(roomId, botMxid).catch(() => undefined), botMxid, type)
      if (have >= need) throw err
      this.opts.log?.info({ room: roomId, have, need, type }, 'Cannot set a portal room\'s state: the bot lacks the power; waiting for it')
      throw new NotPermitted(`setting ${what} (${type}) needs power level ${need}, and I have ${have}`,
        `Give me power level ${need} here and I will make the change then (or make it yourself).`)
    }
  }
}

/** A person's m.room.name, m.room.topic or m.room.avatar in a portal room, as the neutral update (undefined: not one). */
export async function chatUpdateOf(
  ev: { type: string; state_key?: string; room_id: string; event_id: string; origin_server_ts?: number; content: Record<string, unknown> },
  sender: Person,
  deps: { media: MediaStore; download: (mxc: string) => Promise<{ data: Buffer; mimetype: string }> },
): Promise<InboundChatUpdate | undefined> {
  if (ev.state_key !== '') return undefined
  const base = { kind: 'chat_update' as const, chat: { network: 'matrix' as const, id: ev.room_id }, sender, remoteId: ev.event_id, timestamp: ev.origin_server_ts ?? Date.now() }
  const c = ev.content
  switch (ev.type) {
    case 'm.room.name':
      return { ...base, name: typeof c.name === 'string' ? c.name : '' }
    case 'm.room.topic':
      return { ...base, topic: typeof c.topic === 'string' ? c.topic : '' }
    case 'm.room.avatar': {
      if (typeof c.url !== 'string' || !c.url) return { ...base, avatar: null }
      const { data, mimetype } = await deps.download(c.url)
      return { ...base, avatar: { mediaId: await deps.media.put(data), mimetype } }
    }
  }
  return undefined
}
