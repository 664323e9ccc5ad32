// Shapes shared by the pieces of the fake homeserver.
import { randomBytes } from 'node:crypto'
import type { RateLimitOptions } from './rate-limit.ts'

/** The registration as the homeserver reads it (matrix-appservice.md §3). */
export interface AppserviceRegistration {
  id: string
  /** Where the homeserver pushes transactions; null = no pushes (and ping answers M_URL_NOT_SET). */
  url: string | null
  as_token: string
  hs_token: string
  sender_localpart: string
  namespaces: {
    users: { exclusive: boolean; regex: string }[]
    aliases?: { exclusive: boolean; regex: string }[]
    rooms?: { exclusive: boolean; regex: string }[]
  }
  rate_limited?: boolean
  receive_ephemeral?: boolean
  'de.sorunome.msc2409.push_ephemeral'?: boolean
  /** MSC3202 transaction extensions: device lists, one-time-key counts, unused fallback key types. */
  'org.matrix.msc3202'?: boolean
  /** MSC4190: the appservice creates its users' devices with PUT /devices/{id}; its m.login.application_service
   * login is refused. */
  'io.element.msc4190'?: boolean
}

export interface FakeHomeserverOptions {
  /** Server name; default 'example.org'. */
  domain?: string
  /** Merged over a default registration (id 'relay', bot 'relaybot', namespaces @signal_.* and @whatsapp_.*). */
  registration?: Partial<AppserviceRegistration>
  /** 'v1': PUT /_matrix/app/v1/transactions/{id} with Bearer (Synapse ≥ 1.90). 'legacy': PUT /transactions/{id}
   * with ?access_token= only (Synapse ≤ 1.69). Default 'v1'. */
  transactionStyle?: 'v1' | 'legacy'
  /** Delay before retrying a refused transaction: doubles from `initialMs` up to `maxMs` (Synapse: 2 s … 512 s). */
  retryBackoff?: { initialMs: number; maxMs: number }
  /** Events per transaction (Synapse: 100). */
  maxEventsPerTransaction?: number
  /** Where ephemeral events go in the body; default 'stable' (`ephemeral`, spec v1.13). */
  ephemeralKey?: 'stable' | 'unstable' | 'both'
  /** First transaction id; default 1. */
  firstTxnId?: number
  /** false: POST /_matrix/client/v1/appservice/{id}/ping answers 400 M_UNRECOGNIZED (Synapse 1.67). */
  pingSupported?: boolean
  /** How long the homeserver waits for the appservice's answer to a ping; default 2000. */
  pingTimeoutMs?: number
  /** Timeout of one transaction push; default 5000. */
  pushTimeoutMs?: number
  /** false: /_matrix/client/v1/media/* answers 404 M_UNRECOGNIZED (servers before spec v1.11). Default true. */
  authenticatedMedia?: boolean
  /** false: /_matrix/media/v3/download answers 404 M_NOT_FOUND (Synapse with frozen unauthenticated media). */
  legacyMedia?: boolean
  /** Room version of new rooms; '11' puts a redaction's target in content.redacts, '10' at the top level. */
  roomVersion?: '10' | '11'
  /** true (default, like MAS / spec v1.17 servers): registering without inhibit_login gives 400
   * M_APPSERVICE_LOGIN_UNSUPPORTED. false: it returns an access token like older Synapse. */
  requireInhibitLogin?: boolean
  /** Synapse pushes a new event to the appservice as soon as it is stored, so the transaction carrying the
   * echo of a ghost's send can arrive before the answer to that PUT /send. true: the fake always makes it so
   * (it answers a send or redaction only once the appservice acknowledged the transaction with its event),
   * then awaits `holdSendAnswer` when a test sets one (an answer slow on the way back). Default false. */
  echoBeforeAnswer?: boolean
  /** Synapse's per-user limits (rc_message, rc_joins, media), enforced while the registration says
   * rate_limited: true, as Synapse does; with false (the default registration) users are exempt. */
  rateLimits?: RateLimitOptions
  /** Which key(s) carry MSC3202 one-time-key counts in transactions: 'both' (Synapse ≥ 1.73, the default),
   * 'key_counts' (`…device_one_time_key_counts` only, older Synapse) or 'keys_count'. */
  otkCountKey?: 'both' | 'key_counts' | 'keys_count'
  /** Synapse's experimental msc3202_device_masquerading: `org.matrix.msc3202.device_id` on the appservice's
   * calls picks the device. Default true; false ignores the parameter, as such a Synapse does. */
  deviceMasquerading?: boolean
  /** The clock OpenID tokens expire by (an hour after they were issued, as Synapse's); default Date.now. */
  clock?: () => number
}

export interface FakeEvent {
  event_id: string
  room_id: string
  sender: string
  type: string
  content: Record<string, unknown>
  origin_server_ts: number
  state_key?: string
  /** Only in rooms before version 11. */
  redacts?: string
  unsigned?: Record<string, unknown>
}

export interface RecordedCall {
  method: string
  /** Percent-decoded path, e.g. /_matrix/client/v3/rooms/!a:example.org/send/m.room.message/t1 */
  path: string
  query: Record<string, string>
  /** Parsed JSON, or { bytes: n } for uploads. */
  body: unknown
  /** The user the call acted as (after `user_id` assertion), if authenticated. */
  user: string | undefined
  status: number
  response: unknown
  at: number
}

export interface PushAttempt {
  txnId: string
  attempt: number
  url: string
  body: TransactionBody
  /** HTTP status, or undefined when the connection failed. */
  status: number | undefined
  error?: string
  at: number
}

export interface TransactionBody {
  events: FakeEvent[]
  ephemeral?: Record<string, unknown>[]
  'de.sorunome.msc2409.ephemeral'?: Record<string, unknown>[]
  /** MSC2409/MSC4203: each message names its recipient (to_user_id, to_device_id). */
  'de.sorunome.msc2409.to_device'?: { type: string; sender: string; content: Record<string, unknown>; to_user_id: string; to_device_id: string }[]
  'org.matrix.msc3202.device_lists'?: { changed: string[]; left: string[] }
  /** user → device → algorithm → count, under either spelling (see otkCountKey). */
  'org.matrix.msc3202.device_one_time_key_counts'?: Record<string, unknown>
  'org.matrix.msc3202.device_one_time_keys_count'?: Record<string, unknown>
  /** user → device → algorithms. */
  'org.matrix.msc3202.device_unused_fallback_key_types'?: Record<string, unknown>
}

/** An error the fake answers instead of handling a matching call (to test the bridge's retries). */
export interface InjectedFault {
  method?: string
  /** Substring of, or pattern on, the decoded path. */
  path?: string | RegExp
  /** Only calls acting as this user. */
  user?: string
  status: number
  errcode?: string
  error?: string
  retryAfterMs?: number
  /** How many matching calls fail; default 1. */
  times?: number
}

/** A refusal as the client-server API gives it. Helpers throw it too, so tests can expect the errcode. */
export class MatrixFault extends Error {
  readonly status: number
  readonly errcode: string
  readonly extra: Record<string, unknown>
  constructor(status: number, errcode: string, message: string, extra: Record<string, unknown> = {}) {
    super(message)
    this.name = 'MatrixFault'
    this.status = status
    this.errcode = errcode
    this.extra = extra
  }
  toJSON(): Record<string, unknown> {
    return { errcode: this.errcode, error: this.message, ...this.extra }
  }
}

const b64url = (n: number): string => randomBytes(n).toString('base64url')
const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'

/** Room versions ≥ 4 use the url-safe base64 of a 32-byte reference hash, with no server part. */
export const newEventId = (): string => `$${b64url(32)}`
export function newRoomId(domain: string): string {
  const bytes = randomBytes(18)
  let s = ''
  for (const b of bytes) s += LETTERS[b % LETTERS.length]
  return `!${s}:${domain}`
}
export const newMediaId = (): string => b64url(18).replace(/[-_]/g, 'x')
