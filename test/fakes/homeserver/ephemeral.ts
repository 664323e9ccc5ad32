// Typing notifications and read receipts as Synapse keeps them (synapse/handlers/typing.py, receipts.py and
// rest/client/receipts.py): who is typing in a room until when, and each user's latest receipt per room;
// every change is pushed to the appservice as an `m.typing` / `m.receipt` ephemeral event, as Synapse does
// for rooms the appservice is in (its own users' included).
import type { HomeserverState } from './state.ts'
import type { TransactionPusher } from './pusher.ts'
import { MatrixFault } from './types.ts'

/** Synapse caps a typing timeout at two minutes and defaults to 30 s. */
const MAX_TYPING_MS = 120_000
const DEFAULT_TYPING_MS = 30_000
const RECEIPT_TYPES = new Set(['m.read', 'm.read.private', 'm.fully_read'])

export interface Receipt {
  eventId: string
  ts: number
}

export class EphemeralRooms {
  /** room → user → when their typing times out. */
  private readonly typing = new Map<string, Map<string, { until: number; timer: NodeJS.Timeout }>>()
  /** room → receipt type → user → latest receipt. */
  private readonly receipts = new Map<string, Map<string, Map<string, Receipt>>>()
  private readonly state: HomeserverState
  private readonly pusher: TransactionPusher
  /** Tells waiters of a change no request made (a timeout); a request's own recording tells them of the rest,
   * once the call is in the record. */
  private readonly changed: () => void

  constructor(state: HomeserverState, pusher: TransactionPusher, changed: () => void) {
    this.state = state
    this.pusher = pusher
    this.changed = changed
  }

  /** PUT /rooms/{roomId}/typing/{userId} as `requester`. */
  setTyping(requester: string, roomId: string, target: string, body: Record<string, unknown>): void {
    if (!target.endsWith(`:${this.state.domain}`)) throw new MatrixFault(400, 'M_UNKNOWN', 'User is not hosted on this homeserver')
    // AuthError(400, …): Synapse's status for this one is 400, its errcode M_FORBIDDEN.
    if (target !== requester) throw new MatrixFault(400, 'M_FORBIDDEN', "Cannot set another user's typing state")
    // Synapse reads content["typing"] unchecked (a KeyError is a 500); the stricter reading refuses it.
    if (typeof body['typing'] !== 'boolean') throw new MatrixFault(400, 'M_BAD_JSON', '"typing" must be a boolean')
    const timeout = body['timeout'] ?? DEFAULT_TYPING_MS
    if (typeof timeout !== 'number' || !Number.isInteger(timeout) || timeout < 0) throw new MatrixFault(400, 'M_BAD_JSON', '"timeout" must be a non-negative integer')
    // check_user_in_room: joined, not merely invited or departed.
    if (this.state.membership(roomId, requester) !== 'join') throw new MatrixFault(403, 'M_FORBIDDEN', `User ${requester} not in room ${roomId}`)
    const room = this.typing.get(roomId) ?? new Map<string, { until: number; timer: NodeJS.Timeout }>()
    this.typing.set(roomId, room)
    const was = room.get(requester)
    if (was) clearTimeout(was.timer)
    if (!body['typing']) {
      if (was) this.stopTyping(roomId, requester)
      return
    }
    const ms = Math.min(timeout, MAX_TYPING_MS)
    const timer = setTimeout(() => {
      this.stopTyping(roomId, requester)
      this.changed() // no request records this one
    }, ms)
    timer.unref()
    room.set(requester, { until: Date.now() + ms, timer })
    // Only a change is announced: a renewal of someone already typing is silent.
    if (!was) this.pushTyping(roomId)
  }

  /** POST /rooms/{roomId}/receipt/{receiptType}/{eventId} as `requester`; `raw` is the request body. */
  setReceipt(requester: string, roomId: string, type: string, eventId: string, raw: Buffer, body: unknown): void {
    if (!roomId.startsWith('!') || !roomId.includes(':') || !eventId.startsWith('$')) throw new MatrixFault(400, 'M_UNKNOWN', 'A valid room ID and event ID must be specified')
    if (!RECEIPT_TYPES.has(type)) throw new MatrixFault(400, 'M_UNKNOWN', `Receipt type must be ${[...RECEIPT_TYPES].join(', ')}`)
    // parse_json_object_from_request: an empty body is not JSON.
    if (raw.length === 0) throw new MatrixFault(400, 'M_NOT_JSON', 'Content not JSON.')
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new MatrixFault(400, 'M_BAD_JSON', 'Content must be a JSON object.')
    const timeline = this.state.rooms.get(roomId)?.timeline ?? []
    const index = timeline.findIndex(e => e.event_id === eventId)
    // An event the server does not have: Synapse answers 200 and stores nothing.
    if (index < 0) return
    // Someone not in the room cannot see the event (history visibility "shared" shows it to members only).
    if (this.state.membership(roomId, requester) !== 'join') throw new MatrixFault(403, 'M_FORBIDDEN', "You don't have permission to access that event.")
    if (type === 'm.fully_read') return // a read marker is account data, not a receipt
    const byType = this.receipts.get(roomId) ?? new Map<string, Map<string, Receipt>>()
    this.receipts.set(roomId, byType)
    const users = byType.get(type) ?? new Map<string, Receipt>()
    byType.set(type, users)
    const previous = users.get(requester)
    // Synapse keeps a receipt only when it is newer than the one it has (insert_receipt answers None).
    if (previous && timeline.findIndex(e => e.event_id === previous.eventId) >= index) return
    const receipt = { eventId, ts: Date.now() }
    users.set(requester, receipt)
    this.pusher.enqueueEphemeral({ type: 'm.receipt', room_id: roomId, content: { [eventId]: { [type]: { [requester]: { ts: receipt.ts } } } } })
  }

  /** Users typing in a room now. */
  typingIn(roomId: string): string[] {
    return [...(this.typing.get(roomId)?.keys() ?? [])]
  }

  /** Each user's latest receipt of a type in a room. */
  receiptsIn(roomId: string, type = 'm.read'): Record<string, Receipt> {
    return Object.fromEntries(this.receipts.get(roomId)?.get(type) ?? [])
  }

  stop(): void {
    for (const room of this.typing.values()) for (const t of room.values()) clearTimeout(t.timer)
    this.typing.clear()
  }

  private stopTyping(roomId: string, userId: string): void {
    const room = this.typing.get(roomId)
    const entry = room?.get(userId)
    if (!room || !entry) return
    clearTimeout(entry.timer)
    room.delete(userId)
    this.pushTyping(roomId)
  }

  /** m.typing carries everyone typing in the room now: a client replaces its whole list with it. */
  private pushTyping(roomId: string): void {
    this.pusher.enqueueEphemeral({ type: 'm.typing', room_id: roomId, content: { user_ids: this.typingIn(roomId) } })
  }
}
