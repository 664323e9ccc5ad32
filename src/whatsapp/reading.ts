// How fast a login's WhatsApp socket is read: no faster than the bridge records what it hands over.
import type { WebSocket } from 'ws'

/** Messages handed over by Baileys and not yet recorded, at most: beyond this the socket is not read until the
 * backlog is down to half, so that a burst (the offline backlog after a reconnect) waits at WhatsApp's server, not
 * in the bridge's memory. What Baileys has read already still comes (a read chunk is decoded whole), so the
 * backlog can pass this by what one read held. */
export const MAX_BACKLOG = 500

/**
 * Counts the messages of one login between Baileys and the core, and pauses its socket's reads at MAX_BACKLOG.
 *
 * Baileys ends a connection it has read nothing from for its keepalive interval plus 5 s, and a paused socket
 * reads nothing, not even the answers to Baileys' pings: so while paused, the socket is read again every
 * `breathMs` (half the keepalive) until one frame has come (the ping's answer, or the next message), then paused again. A live
 * connection is thus never taken for a dead one, and a dead one is still found out, by Baileys' own keepalive and
 * by the close that the next read sees. Each breath reads at most one more chunk into the bridge.
 */
export class ReadGate {
  readonly #transport: () => WebSocket | null | undefined
  readonly #breathMs: number
  #waiting = 0
  /** Whether reading is held back for the backlog (between a pause and the resume at half). */
  #holding = false
  /** The socket is read for one frame during a hold. */
  #breathing = false
  #breath: NodeJS.Timeout | undefined
  /** Times reading was held back, and read again for a breath while held (tests). */
  pauses = 0
  breaths = 0

  constructor(transport: () => WebSocket | null | undefined, breathMs: number) {
    this.#transport = transport
    this.#breathMs = breathMs
  }

  /** Messages handed over and not yet recorded. */
  get backlog(): number {
    return this.#waiting
  }

  /** Whether reading is held back for the backlog. */
  get holding(): boolean {
    return this.#holding
  }

  /** `n` messages were handed over by Baileys. */
  add(n: number): void {
    this.#waiting += n
    if (this.#waiting >= MAX_BACKLOG) this.#hold()
  }

  /** `n` messages were recorded (or will never be). */
  done(n: number): void {
    this.#waiting -= n
    if (this.#holding && this.#waiting <= MAX_BACKLOG / 2) this.#release()
  }

  /** The socket read a frame: a breath is over. */
  read(): void {
    if (!this.#breathing) return
    this.#breathing = false
    this.#transport()?.pause()
  }

  /** The session ends: reading is no longer anyone's business here. */
  stop(): void {
    clearInterval(this.#breath)
    this.#breath = undefined
    this.#holding = false
    this.#breathing = false
  }

  #hold(): void {
    // Also when holding already: a socket made since (a reconnect) starts out reading.
    this.#transport()?.pause()
    this.#breathing = false
    if (this.#holding) return
    this.#holding = true
    this.pauses++
    this.#breath = setInterval(() => {
      this.breaths++
      this.#breathing = true
      this.#transport()?.resume()
    }, this.#breathMs)
    this.#breath.unref()
  }

  #release(): void {
    this.stop()
    this.#transport()?.resume()
  }
}
