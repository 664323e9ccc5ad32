// The `rooms` part of a client's /sync (synapse/handlers/sync.py), enough for a real client such as matrix-js-sdk
// to keep a timeline: joined rooms with their timeline since the token (the newest `limit` events, `limited`
// when more came) and, for a room new to the client or a gap, the state at the start of that timeline; rooms
// the user is invited to, with Synapse's stripped invite state. Rooms left are not served (no test client
// leaves yet): such a client keeps showing the room as joined.
import type { HomeserverState, Room } from './state.ts'
import type { FakeEvent } from './types.ts'

type Json = Record<string, unknown>

/** Synapse's timeline limit when the filter sets none. */
export const DEFAULT_TIMELINE_LIMIT = 10

/** synapse/config/room.py `room_prejoin_state` defaults, plus the invite itself. */
const PREJOIN_STATE = ['m.room.join_rules', 'm.room.canonical_alias', 'm.room.avatar', 'm.room.encryption', 'm.room.name', 'm.room.create', 'm.room.topic']

export interface RoomsSection {
  join: Record<string, Json>
  invite: Record<string, Json>
  leave: Record<string, Json>
}

/**
 * What `userId` gets for events after stream position `since` (null: an initial sync) up to `upTo`.
 * `token(pos)` spells a sync token at an event position (for `prev_batch`).
 */
export function roomsSince(s: HomeserverState, userId: string, since: number | null, upTo: number, limit: number, token: (pos: number) => string): RoomsSection {
  const out: RoomsSection = { join: {}, invite: {}, leave: {} }
  const touched = since === null ? [...s.rooms.values()] : roomsIn(s, s.stream.slice(since, upTo))
  for (const room of touched) {
    const membership = s.membership(room.id, userId)
    const upToHere = room.timeline.filter(e => s.position(e) <= upTo)
    if (membership === 'join') {
      const mine = s.stateEvent(room.id, 'm.room.member', userId)!
      const newlyJoined = since === null || (s.position(mine) > since && (mine.unsigned?.['prev_content'] as Json | undefined)?.['membership'] !== 'join')
      const fresh = since === null || newlyJoined ? upToHere : upToHere.filter(e => s.position(e) > since)
      if (!fresh.length) continue
      const timeline = fresh.slice(-limit)
      const limited = timeline.length < fresh.length || (newlyJoined && timeline.length < upToHere.length)
      const first = s.position(timeline[0]!)
      out.join[room.id] = {
        // A client new to the room, or one that missed events, is given the state the timeline starts from.
        state: { events: newlyJoined || limited ? stateBefore(s, room, first).map(e => forClient(s, e, userId)) : [] },
        timeline: { events: timeline.map(e => forClient(s, e, userId)), limited, prev_batch: token(first - 1) },
        ephemeral: { events: [] },
        account_data: { events: [] },
        unread_notifications: { notification_count: 0, highlight_count: 0 },
        summary: {},
      }
    } else if (membership === 'invite') {
      const invite = s.stateEvent(room.id, 'm.room.member', userId)!
      if (since !== null && s.position(invite) <= since) continue
      const stripped = [...PREJOIN_STATE.map(t => s.stateEvent(room.id, t)).filter((e): e is FakeEvent => e !== undefined), invite]
      out.invite[room.id] = { invite_state: { events: stripped.map(e => ({ type: e.type, state_key: e.state_key, sender: e.sender, content: structuredClone(e.content) })) } }
    }
  }
  return out
}

export function isEmpty(rooms: RoomsSection): boolean {
  return !Object.keys(rooms.join).length && !Object.keys(rooms.invite).length && !Object.keys(rooms.leave).length
}

function roomsIn(s: HomeserverState, events: FakeEvent[]): Room[] {
  return [...new Set(events.map(e => e.room_id))].map(id => s.rooms.get(id)).filter((r): r is Room => r !== undefined)
}

/** The room's state just before stream position `pos`: its state events replayed in order. */
function stateBefore(s: HomeserverState, room: Room, pos: number): FakeEvent[] {
  const state = new Map<string, FakeEvent>()
  for (const e of room.timeline) {
    if (s.position(e) >= pos) break
    if (e.state_key !== undefined) state.set(`${e.type}\u0000${e.state_key}`, e)
  }
  return [...state.values()]
}

/** Synapse's client format in /sync: no room_id; the sender's own client gets its transaction id back (Synapse
 * gives it to the sending device only; the fake does not record the device, so every device of the sender). */
function forClient(s: HomeserverState, e: FakeEvent, userId: string): Json {
  const { room_id: _room, ...rest } = structuredClone(e)
  const txnId = s.meta.get(e)?.txnId
  if (txnId !== undefined && e.sender === userId && !s.isAsUser(userId)) rest.unsigned = { ...rest.unsigned, transaction_id: txnId }
  return rest
}
