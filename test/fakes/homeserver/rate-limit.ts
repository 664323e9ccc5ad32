// Synapse's rate limits for a registration with `rate_limited: true` (with `false`, the default, its users are
// exempt): a leaky bucket per user and action kind, as synapse/api/ratelimiting.py keeps it. `burstCount`
// actions may happen at once; the bucket drains at `perSecond`; a refused action is not counted. The refusal
// is 429 M_LIMIT_EXCEEDED with `retry_after_ms` (whole milliseconds, truncated, as Synapse computes it) and,
// like Synapse since MSC4041, a `Retry-After` header in whole seconds, rounded up.
import { MatrixFault } from './types.ts'

export interface BucketConfig {
  perSecond: number
  burstCount: number
}

/** rc_message (sends, state, redactions, profile changes), rc_joins.local (joins, per user), rc_joins_per_room (joins
 * to one room, whoever joins: the bucket is the room's), and media uploads. */
export type RateLimitKind = 'message' | 'join' | 'joinPerRoom' | 'media'

export interface RateLimitOptions {
  /** Synapse's defaults are rc_message 0.2/s burst 10, rc_joins.local 0.1/s burst 10, rc_joins_per_room 1/s burst
   * 10; tests use quicker ones. */
  message?: BucketConfig
  join?: BucketConfig
  joinPerRoom?: BucketConfig
  media?: BucketConfig
  /** Which forms of the wait the 429 carries: Synapse ≥ 1.100 sends both; older ones only the body. */
  retryAfter?: 'body' | 'header' | 'both'
}

/** A 429 as the client API writes it: the body's fields and the headers to add. */
export class RateLimited extends MatrixFault {
  readonly headers: Record<string, string>
  constructor(retryAfterMs: number, form: NonNullable<RateLimitOptions['retryAfter']>) {
    super(429, 'M_LIMIT_EXCEEDED', 'Too Many Requests', form === 'header' ? {} : { retry_after_ms: retryAfterMs })
    this.headers = form === 'body' ? {} : { 'Retry-After': String(Math.ceil(retryAfterMs / 1000)) }
  }
}

export class RateLimiter {
  private readonly opts: RateLimitOptions
  private readonly now: () => number
  /** user + kind → [actions counted, since when (s)]. */
  private readonly buckets = new Map<string, [number, number]>()
  private readonly saturated = new Map<string, number>()
  /** Every 429 given, for tests to count. */
  readonly refusals: Array<{ user: string; kind: RateLimitKind; retryAfterMs: number }> = []

  constructor(opts: RateLimitOptions, now: () => number = Date.now) {
    this.opts = opts
    this.now = now
  }

  /** The next `times` actions of this kind by `user` find its bucket full (as after a burst elsewhere just
   * before): each is refused with the wait the bucket gives, whatever the time the bridge took to get there. */
  saturate(user: string, kind: RateLimitKind, times = 1): void {
    const key = `${user}\u0000${kind}`
    this.saturated.set(key, (this.saturated.get(key) ?? 0) + times)
  }

  /** Counts one action of `user` (for joinPerRoom: of the room), or throws the 429 Synapse would answer. */
  check(user: string, kind: RateLimitKind): void {
    const config = this.opts[kind]
    if (!config) return
    const key = `${user}\u0000${kind}`
    const nowS = this.now() / 1000
    const full = this.saturated.get(key) ?? 0
    if (full > 0) {
      this.saturated.set(key, full - 1)
      this.buckets.set(key, [config.burstCount, nowS])
    }
    let [count, start] = this.buckets.get(key) ?? [0, nowS]
    // Synapse: performed = count - elapsed * rate; an empty bucket starts over.
    let performed = count - (nowS - start) * config.perSecond
    if (performed < 0) {
      performed = 0
      count = 0
      start = nowS
    }
    if (performed + 1 <= config.burstCount) {
      this.buckets.set(key, [count + 1, start])
      return
    }
    const allowedAt = Math.max(nowS, start + (count - config.burstCount + 1) / config.perSecond)
    const retryAfterMs = Math.trunc(1000 * (allowedAt - nowS))
    this.refusals.push({ user, kind, retryAfterMs })
    throw new RateLimited(retryAfterMs, this.opts.retryAfter ?? 'both')
  }
}
