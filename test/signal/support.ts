// A fake NetworkContext for the Signal adapter's tests: events collected in arrays, logins in memory.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pino from 'pino'
import { Registry } from 'prom-client'
import type { ConnectionState, LoginUi, NetworkContext } from '../../src/core/network.ts'
import type { InboundEvent } from '../../src/core/model.ts'
import type { Db } from '../../src/db/types.ts'
import { MemoryLogins, MemoryMedia } from '../support/memory-stores.ts'
import { PATIENCE_MS } from '../support/patience.ts'

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
/** A payload another project published, copied into test/fixtures/published/signal (see its README). */
export const publishedFixture = (name: string): unknown =>
  JSON.parse(readFileSync(path.resolve(repoRoot, 'test/fixtures/published/signal', name), 'utf8'))
export const ownFixture = (name: string): unknown => JSON.parse(readFileSync(path.resolve(repoRoot, 'test/fixtures/signal', name), 'utf8'))

export { MemoryLogins, MemoryMedia }

export interface TestContext extends NetworkContext {
  received: InboundEvent[]
  states: Array<{ loginId: string; state: ConnectionState; message?: string }>
  notices: Array<{ loginId: string; text: string }>
  bridged: Set<string>
  /** Makes the next `n` receive() or receiveMany() calls fail (the core could not commit). */
  failReceives: number
  /** The runs recorded together through receiveMany(), each as it came. */
  batches: InboundEvent[][]
  /** While set, recording waits for it (a slow database); `recording` counts the calls waiting. */
  hold: Promise<void> | undefined
  recording: number
  logins: MemoryLogins
  media: MemoryMedia
  /** Resolves once `check` holds, re-checked whenever the context sees something. */
  until(check: () => boolean, timeoutMs?: number): Promise<void>
}

export function testContext(): TestContext {
  const waiters: Array<() => void> = []
  const poke = () => waiters.splice(0).forEach(w => w())
  const ctx: TestContext = {
    log: pino({ level: process.env.LOG_LEVEL ?? 'silent' }),
    db: undefined as unknown as Db,
    media: new MemoryMedia(),
    metrics: new Registry(),
    logins: new MemoryLogins(),
    received: [],
    states: [],
    notices: [],
    bridged: new Set(),
    failReceives: 0,
    batches: [],
    hold: undefined,
    recording: 0,
    async receive(event) {
      await ctx.receiveMany!([event])
      ctx.batches.pop()
    },
    async receiveMany(events) {
      if (ctx.hold) {
        ctx.recording++
        poke()
        await ctx.hold
        ctx.recording--
      }
      if (ctx.failReceives > 0) {
        ctx.failReceives--
        poke()
        throw new Error('database unavailable')
      }
      ctx.received.push(...events)
      ctx.batches.push(events)
      poke()
    },
    async reportState(loginId, state, message) {
      ctx.states.push({ loginId, state, ...(message ? { message } : {}) })
      const row = ctx.logins.rows.get(loginId)
      if (row) ctx.logins.rows.set(loginId, { ...row, state, stateMessage: message ?? null })
      poke()
    },
    async notify(loginId, text) {
      ctx.notices.push({ loginId, text })
      poke()
    },
    ephemeral: () => {},
    wantsEphemeral: { typing: false, receipts: false },
    async notifyChat(_n, chatId, text) {
      ctx.notices.push({ loginId: chatId, text })
      poke()
    },
    isBridgedChat: (_n, chatId) => ctx.bridged.has(chatId),
    permissionsChanged: () => {},
    findCopy: async () => undefined,
    forgetKeptContent: async () => {},
    async until(check, timeoutMs = PATIENCE_MS) {
      const deadline = Date.now() + timeoutMs
      while (!check()) {
        if (Date.now() > deadline) throw new Error('timed out waiting for the Signal adapter')
        await new Promise<void>(resolve => {
          const t = setTimeout(resolve, 25)
          waiters.push(() => {
            clearTimeout(t)
            resolve()
          })
        })
      }
    },
  }
  return ctx
}

export function testUi() {
  const shown: Array<{ kind: 'qr' | 'code' | 'say'; data: string; caption?: string }> = []
  const ui: LoginUi = {
    async showQr(data, caption) {
      shown.push({ kind: 'qr', data, caption })
    },
    async showCode(data, caption) {
      shown.push({ kind: 'code', data, caption })
    },
    async say(text) {
      shown.push({ kind: 'say', data: text })
    },
  }
  return { ui, shown }
}
