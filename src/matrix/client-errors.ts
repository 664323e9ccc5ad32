// Errors from appservice → homeserver calls, typed so that callers decide on retry by kind, never by
// parsing messages. Two kinds: the homeserver answered with an error (MatrixApiError), or it could not be
// reached at all (MatrixConnectionError).
import { DeliveryError } from '../core/errors.ts'

export interface MatrixApiErrorFields {
  status: number
  errcode: string | undefined
  error: string | undefined
  retryAfterMs?: number | undefined
  /** The parsed error body; kept for fields some errors carry (M_BAD_STATUS has `status` and `body`). */
  body?: Record<string, unknown> | undefined
  /** "PUT /_matrix/client/v3/rooms/…/send/…" without the query string (which can hold user ids, never tokens). */
  request?: string
}

export class MatrixApiError extends Error {
  readonly kind = 'http' as const
  readonly status: number
  readonly errcode: string | undefined
  /** The homeserver's human-readable text (the `error` field of the body). */
  readonly error: string | undefined
  readonly retryAfterMs: number | undefined
  readonly body: Record<string, unknown> | undefined
  readonly request: string | undefined

  constructor(fields: MatrixApiErrorFields) {
    const where = fields.request ? `${fields.request}: ` : ''
    super(`${where}${fields.status} ${fields.errcode ?? '(no errcode)'}${fields.error ? `: ${fields.error}` : ''}`)
    this.name = 'MatrixApiError'
    this.status = fields.status
    this.errcode = fields.errcode
    this.error = fields.error
    this.retryAfterMs = fields.retryAfterMs
    this.body = fields.body
    this.request = fields.request
  }
}

/** The homeserver could not be reached (refused, reset, DNS, timeout): always worth retrying. */
export class MatrixConnectionError extends Error {
  readonly kind = 'connection' as const
  /** The system error code, e.g. ECONNREFUSED, ETIMEDOUT, ESOCKETTIMEDOUT. */
  readonly code: string | undefined
  constructor(message: string, code: string | undefined, cause?: unknown) {
    super(message, { cause })
    this.name = 'MatrixConnectionError'
    this.code = code
  }
}

export type PingFailure = 'url_not_set' | 'bad_status' | 'connection_failed' | 'connection_timeout' | 'forbidden'

const PING_HINTS: Record<PingFailure, string> = {
  url_not_set: 'The registration file on the homeserver has no `url`: set it to where the bridge listens and restart the homeserver.',
  bad_status: 'The homeserver reached the bridge but got an error back: check that hs_token in the registration matches the bridge config.',
  connection_failed: 'The homeserver cannot reach the bridge: check the `url` in the registration (host, port, firewall, docker network).',
  connection_timeout: 'The homeserver reached the bridge but it did not answer in time: check that the bridge is not blocked.',
  forbidden: 'The as_token does not belong to this appservice id: check `id` and `as_token` in the registration and the bridge config.',
}

/** AS → HS ping (spec v1.7) failed in one of the ways the spec names; `hint` says what the operator should fix. */
export class AppservicePingError extends MatrixApiError {
  readonly failure: PingFailure
  readonly hint: string
  /** For bad_status: the HTTP status and body the homeserver got from the bridge. */
  readonly appserviceStatus: number | undefined
  readonly appserviceBody: string | undefined

  constructor(failure: PingFailure, fields: MatrixApiErrorFields) {
    super(fields)
    this.name = 'AppservicePingError'
    this.failure = failure
    this.hint = PING_HINTS[failure]
    const status = fields.body?.['status']
    const body = fields.body?.['body']
    this.appserviceStatus = typeof status === 'number' ? status : undefined
    this.appserviceBody = typeof body === 'string' ? body : undefined
  }
}

const PING_ERRCODES: Record<string, PingFailure> = {
  M_URL_NOT_SET: 'url_not_set',
  M_BAD_STATUS: 'bad_status',
  M_CONNECTION_FAILED: 'connection_failed',
  M_CONNECTION_TIMEOUT: 'connection_timeout',
  M_FORBIDDEN: 'forbidden',
}

export function pingFailureOf(err: MatrixApiError): AppservicePingError | undefined {
  const failure = err.errcode ? PING_ERRCODES[err.errcode] : undefined
  if (!failure) return undefined
  return new AppservicePingError(failure, err)
}

/** True when the homeserver does not know the endpoint (old servers answer 400/404/405 M_UNRECOGNIZED, or a
 * bare 404 from a proxy). */
export function isUnrecognized(err: unknown): boolean {
  if (!(err instanceof MatrixApiError)) return false
  if (err.errcode === 'M_UNRECOGNIZED') return true
  return err.status === 404 && err.errcode === undefined
}

export function isMatrixErrcode(err: unknown, errcode: string): err is MatrixApiError {
  return err instanceof MatrixApiError && err.errcode === errcode
}

export type MatrixFailureKind = 'transient' | 'permanent'

/**
 * Transient: the network, 5xx, 408 and 429/M_LIMIT_EXCEEDED: the same call can succeed later.
 * Permanent: any other 4xx: the homeserver refused this call as asked (forbidden, not in room, bad JSON).
 * Anything else (a bug, an unknown throw) counts as transient, like core/errors.ts: a message is never
 * dropped on an error nobody classified, and the outbox bounds the retries.
 */
export function classifyMatrixError(err: unknown): MatrixFailureKind {
  if (err instanceof MatrixConnectionError) return 'transient'
  if (err instanceof MatrixApiError) {
    if (err.status >= 500 || err.status === 429 || err.status === 408) return 'transient'
    if (err.errcode === 'M_LIMIT_EXCEEDED') return 'transient'
    return 'permanent'
  }
  return 'transient'
}

export const isTransientMatrixError = (err: unknown): boolean => classifyMatrixError(err) === 'transient'

/** For delivery workers: a Matrix failure as the outbox understands it, with the MSS reason (§4). */
export function matrixDeliveryError(err: unknown): DeliveryError {
  if (err instanceof DeliveryError) return err
  const internal = err instanceof Error ? err.message : String(err)
  if (classifyMatrixError(err) === 'transient') {
    const retryAfterMs = err instanceof MatrixApiError ? err.retryAfterMs : undefined
    // A homeserver that says how long to wait is pacing the bridge (Synapse's rc_message, rc_joins, media
    // limits for a registration with rate_limited: true), not failing: the delivery waits that long, as often
    // as it takes, and keeps its place.
    const rateLimited = err instanceof MatrixApiError && (err.status === 429 || err.errcode === 'M_LIMIT_EXCEEDED') && retryAfterMs !== undefined
    return new DeliveryError('transient', rateLimited
      ? 'The Matrix homeserver is rate-limiting the bridge; the bridge will retry when it allows.'
      : 'The Matrix homeserver is unavailable; the bridge will retry.', {
      cause: err,
      internal,
      ...(retryAfterMs !== undefined ? { retryAfterMs, rateLimited } : {}),
    })
  }
  const forbidden = err instanceof MatrixApiError && (err.status === 403 || err.errcode === 'M_FORBIDDEN')
  return new DeliveryError(
    'permanent',
    forbidden
      ? 'The homeserver refused the bridge here: check that the bridge bot is in the room and has the power level it needs.'
      : 'The homeserver refused this message from the bridge.',
    { cause: err, internal, reason: forbidden ? 'm.no_permission' : 'm.foreign_network_error' },
  )
}
