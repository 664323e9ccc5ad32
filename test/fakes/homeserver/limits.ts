// Synapse's size limits, checked on every event the fake creates and on profile changes.
//
// - An event is refused when the canonical JSON of the whole PDU exceeds 65,536 bytes
//   (synapse/event_auth.py `_check_size_limits`: `len(encode_canonical_json(event.get_pdu_json())) >
//   MAX_PDU_SIZE` → EventSizeError, 413 M_TOO_LARGE). The PDU is more than the client sent: the server adds
//   auth_events, prev_events, depth, hashes, signatures, origin and unsigned. The fake builds that envelope
//   with real-sized fields, so that content close to the limit is refused as on Synapse.
// - A display name is refused above 256 characters (Python `len`: code points). PUT /profile answers 400 with
//   Synapse's default errcode M_UNKNOWN (synapse/handlers/profile.py `set_displayname`); an m.room.member
//   event carrying one answers 400 M_BAD_JSON (synapse/handlers/room_member.py `update_membership_locked`).
// - Ids (sender, room, type, state key) above 255 bytes are refused too; the bridge never makes such ids.
import { randomBytes } from 'node:crypto'
import { MatrixFault, type FakeEvent } from './types.ts'

export const MAX_PDU_BYTES = 65_536
export const MAX_DISPLAYNAME_CHARS = 256

const b64 = (n: number): string => randomBytes(n).toString('base64').replace(/=+$/, '')
/** A room-v4+ event id: `$` and 43 characters of unpadded url-safe base64. */
const fakeEventId = (): string => `$${randomBytes(32).toString('base64url')}`

/** The PDU Synapse would build around an event, with fields of the sizes Synapse gives them. */
export function pduOf(ev: FakeEvent, domain: string, depth: number, authEventIds: string[], prevEventIds: string[]): Record<string, unknown> {
  const pdu: Record<string, unknown> = {
    auth_events: authEventIds.length > 0 ? authEventIds : [fakeEventId(), fakeEventId(), fakeEventId()],
    content: ev.content,
    depth,
    hashes: { sha256: b64(32) },
    origin: domain,
    origin_server_ts: ev.origin_server_ts,
    prev_events: prevEventIds.length > 0 ? prevEventIds : [fakeEventId()],
    room_id: ev.room_id,
    sender: ev.sender,
    signatures: { [domain]: { 'ed25519:a_AbCd': b64(64) } },
    type: ev.type,
    unsigned: { age_ts: ev.origin_server_ts },
  }
  if (ev.state_key !== undefined) pdu['state_key'] = ev.state_key
  if (ev.redacts !== undefined) pdu['redacts'] = ev.redacts
  return pdu
}

/** Canonical JSON's size: JSON.stringify writes non-ASCII as UTF-8 and escapes what Python's json does, so only
 * the key order differs, which does not change the length. */
export const canonicalSize = (value: unknown): number => Buffer.byteLength(JSON.stringify(value), 'utf8')

const utf8 = (s: string): number => Buffer.byteLength(s, 'utf8')

export function checkEventSize(pdu: Record<string, unknown>): void {
  for (const field of ['sender', 'room_id', 'type', 'state_key'] as const) {
    const v = pdu[field]
    if (typeof v === 'string' && utf8(v) > 255) throw new MatrixFault(413, 'M_TOO_LARGE', `'${field}' too large`)
  }
  if (canonicalSize(pdu) > MAX_PDU_BYTES) throw new MatrixFault(413, 'M_TOO_LARGE', 'event too large')
}

const chars = (s: string): number => [...s].length

/** PUT /profile/{user}/displayname. */
export function checkProfileDisplayName(name: string): void {
  if (chars(name) > MAX_DISPLAYNAME_CHARS) throw new MatrixFault(400, 'M_UNKNOWN', `Displayname is too long (max ${MAX_DISPLAYNAME_CHARS})`)
}

/** An m.room.member event's displayname. */
export function checkMemberDisplayName(content: Record<string, unknown>): void {
  const name = content['displayname']
  if (typeof name === 'string' && chars(name) > MAX_DISPLAYNAME_CHARS) {
    throw new MatrixFault(400, 'M_BAD_JSON', `Displayname is too long (max ${MAX_DISPLAYNAME_CHARS})`)
  }
}
