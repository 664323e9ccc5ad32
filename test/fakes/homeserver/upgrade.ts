// POST /_matrix/client/v3/rooms/{roomId}/upgrade, as Synapse does it (synapse/handlers/room.py
// `upgrade_room`, `clone_existing_room`, `_update_upgraded_room_pls`):
// 1. a new room whose m.room.create names the old one as `predecessor`, created by the upgrader, with the old
//    room's join rules, name, topic, history visibility, guest access, avatar, encryption, server ACL and power
//    levels copied (nothing else: no m.bridge state, no other state events), and its bans;
// 2. nobody else is invited or joined: Synapse leaves that to clients (Element offers to invite the old room's
//    members afterwards);
// 3. an m.room.tombstone in the old room pointing at the new one;
// 4. the old room's `events_default` and `invite` raised to max(50, users_default + 1), so that ordinary
//    members (and ghosts at level 0) can no longer speak there.
import type { HomeserverState } from './state.ts'
import { MatrixFault } from './types.ts'

const COPIED = ['m.room.join_rules', 'm.room.name', 'm.room.topic', 'm.room.history_visibility', 'm.room.guest_access', 'm.room.avatar', 'm.room.encryption', 'm.room.server_acl']

export function upgradeRoom(s: HomeserverState, user: string, oldRoomId: string, newVersion: unknown): string {
  if (typeof newVersion !== 'string') throw new MatrixFault(400, 'M_BAD_JSON', 'Missing or invalid new_version')
  if (newVersion !== '10' && newVersion !== '11') throw new MatrixFault(400, 'M_UNSUPPORTED_ROOM_VERSION', 'Your homeserver does not support this room version')
  s.requireJoined(oldRoomId, user)
  const pl = s.stateEvent(oldRoomId, 'm.room.power_levels')?.content ?? {}
  const events = (pl['events'] ?? {}) as Record<string, number>
  const need = events['m.room.tombstone'] ?? Number(pl['state_default'] ?? 50)
  if (s.powerLevel(oldRoomId, user) < need) throw new MatrixFault(403, 'M_FORBIDDEN', 'You do not have permission to upgrade the room')
  if (s.stateEvent(oldRoomId, 'm.room.tombstone')) throw new MatrixFault(400, 'M_BAD_JSON', 'This room has already been replaced')
  const lastEvent = s.rooms.get(oldRoomId)!.timeline.at(-1)!.event_id
  const initial = COPIED.flatMap(type => {
    const ev = s.stateEvent(oldRoomId, type)
    return ev ? [{ type, state_key: '', content: structuredClone(ev.content) }] : []
  })
  const newRoomId = s.createRoom(user, {
    room_version: newVersion,
    preset: 'private_chat',
    creation_content: { predecessor: { room_id: oldRoomId, event_id: lastEvent } },
    power_level_content_override: structuredClone(pl),
    initial_state: initial,
  })
  for (const member of s.rooms.get(oldRoomId)!.state.values()) {
    if (member.type === 'm.room.member' && member.content['membership'] === 'ban' && member.state_key) {
      s.append(newRoomId, user, 'm.room.member', structuredClone(member.content), { stateKey: member.state_key })
    }
  }
  s.send(user, oldRoomId, 'm.room.tombstone', { body: 'This room has been replaced', replacement_room: newRoomId }, { stateKey: '' })
  const restricted = Math.max(50, Number(pl['users_default'] ?? 0) + 1)
  const restrictedPl = { ...structuredClone(pl), events_default: Math.max(Number(pl['events_default'] ?? 0), restricted), invite: Math.max(Number(pl['invite'] ?? 0), restricted) }
  s.append(oldRoomId, user, 'm.room.power_levels', restrictedPl, { stateKey: '' })
  return newRoomId
}
