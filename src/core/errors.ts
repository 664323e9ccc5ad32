// Errors that carry what should happen next. Adapters throw these; the outbox and the command layer
// read `disposition` and never parse messages.

export type Disposition =
  /** Try again later with backoff (network down, rate limited, server error). */
  | 'transient'
  /** Will never succeed as asked (group gone, window passed, content refused): report in Matrix. */
  | 'permanent'
  /** The relay login cannot send now (logged out, unlinked): keep the delivery until it is back. */
  | 'hold'

export class DeliveryError extends Error {
  readonly disposition: Disposition
  /** A sentence for people in the Matrix room: what happened and what to do. */
  readonly userMessage: string
  readonly retryAfterMs: number | undefined
  /** The MSS reason code (matrix-appservice.md §4). */
  readonly reason: string
  /** The network is pacing the bridge (it answered "too many requests" and said when to come back): the
   * attempt is no failure, and does not count towards giving up. Set only together with retryAfterMs. */
  readonly rateLimited: boolean
  /** The login that tried cannot post in this chat at all (not a member, removed, banned): another login may. */
  readonly loginUnusable: boolean

  constructor(
    disposition: Disposition,
    userMessage: string,
    opts: { cause?: unknown; retryAfterMs?: number; rateLimited?: boolean; reason?: string; internal?: string; loginUnusable?: boolean } = {},
  ) {
    super(opts.internal ?? userMessage, { cause: opts.cause })
    this.name = 'DeliveryError'
    this.disposition = disposition
    this.userMessage = userMessage
    this.retryAfterMs = opts.retryAfterMs
    this.rateLimited = opts.rateLimited === true && opts.retryAfterMs !== undefined
    this.loginUnusable = opts.loginUnusable === true
    this.reason = opts.reason ?? (disposition === 'permanent' ? 'm.foreign_network_error' : 'm.bridge_unavailable')
  }
}

/** A command or request that cannot be carried out as given: the message is shown to the user as is. */
export class UserError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'UserError'
  }
}

/** Anything thrown that is not a DeliveryError is treated as transient: a bug or an unknown failure must
 * not drop a message, and retries are bounded by the outbox's attempt limit. */
export function asDeliveryError(err: unknown): DeliveryError {
  if (err instanceof DeliveryError) return err
  const message = err instanceof Error ? err.message : String(err)
  return new DeliveryError('transient', 'The bridge hit an unexpected error and will retry.', {
    cause: err,
    internal: message,
  })
}

/**
 * The bridge may not make this change of group state on the network (a Matrix power level, a Signal or WhatsApp
 * admin right). Not a failure to retry with backoff: the change waits until the permission arrives, and the room
 * is told once what is missing (core/group-state.ts).
 */
export class NotPermitted extends Error {
  /** What is missing, as a clause: "setting the room name (m.room.name) needs power level 50, and I have 0". */
  readonly missing: string
  /** What would let it through, as a sentence: "Make the relay account a group admin, and I will make the change then." */
  readonly remedy: string
  constructor(missing: string, remedy: string) {
    super(missing)
    this.name = 'NotPermitted'
    this.missing = missing
    this.remedy = remedy
  }
}
