// The scenario harness with the real adapters: the bridge runs in-process against the fake homeserver,
// a fake signal-cli daemon (real HTTP, SSE) and a fake WhatsApp (Baileys-shaped sockets). People log in
// and link groups with the commands they would type.
import { vi } from 'vitest'
import { buildNetworks } from '../../src/bridge.ts'
import type { WhatsAppNetwork, WhatsAppNetworkOptions } from '../../src/whatsapp/network.ts'
import type { SignalNetwork, SignalTimings } from '../../src/signal/network.ts'
import type { FakeEvent } from '../fakes/homeserver.ts'
import { FakeSignalDaemon, type FakeAccount, type FakeDaemonOptions } from '../fakes/signal-daemon.ts'
import type { FakeSender } from '../fakes/signal-envelopes.ts'
import { FakeWhatsApp, type FakeWaAccount } from '../fakes/whatsapp-socket.ts'
import { ALICE, roomWithBot, scenario, type Scenario, type ScenarioOptions } from './bridge.ts'
import type { DbKind } from './db.ts'
import { PATIENCE_MS } from './patience.ts'

export const SIGNAL_TIMINGS: SignalTimings = { watchdogMs: 2000, backoffInitialMs: 20, backoffMaxMs: 200, pollAccountsMs: 100, receiveRetryMs: 20, rpcTimeoutMs: 2000 }
export const WHATSAPP_OPTIONS: WhatsAppNetworkOptions = { paceMs: [0, 0], reconnect: { initialMs: 5, maxMs: 50 }, phoneCheckMs: 0, loginTimeoutMs: 10_000 }

/** The Signal relay account (a phone linked through the bridge) and two group members. */
export const SIG_RELAY = { number: '+15550100001', aci: '5f0c2a9e-3b7d-4e61-9a2c-7d1e8b4f6a30', name: 'Relay' }
export const SIG_BOB: FakeSender = { number: '+15550100002', aci: 'a3e91c47-0d52-4b8e-b6f1-2c9d7e0a5b14', name: 'Bob' }
export const SIG_CAROL: FakeSender = { number: null, aci: 'e7b2d019-6c4a-4f3e-8d25-91a0c6f3b7e8', name: 'Carol' }
/** WhatsApp group members, by LID with their phone-number JID. */
export const WA_DAVE = { lid: '201000000000042@lid', pn: '15550100042@s.whatsapp.net' }
export const WA_ERIN = { lid: '201000000000043@lid', pn: '15550100043@s.whatsapp.net' }

export interface RealScenario extends Scenario {
  daemon: FakeSignalDaemon
  wa: FakeWhatsApp
  /** The adapters of the bridge running now (a restart builds new ones, as a new process would). */
  signalNet: SignalNetwork
  whatsappNet: WhatsAppNetwork
}

export async function realScenario(kind: DbKind, opts: { daemon?: FakeDaemonOptions; whatsapp?: WhatsAppNetworkOptions; signal?: SignalTimings; configure?: (raw: Record<string, any>) => void; backoff?: ScenarioOptions['backoff']; homeserver?: ScenarioOptions['homeserver']; now?: ScenarioOptions['now']; wrapDb?: ScenarioOptions['wrapDb']; loneMarkLingerMs?: number; markCarryMs?: number } = {}): Promise<RealScenario> {
  const daemon = await FakeSignalDaemon.start({ keepaliveMs: 500, ...opts.daemon })
  const wa = new FakeWhatsApp()
  await wa.start()
  const current: { signal?: SignalNetwork; whatsapp?: WhatsAppNetwork } = {}
  const base = await scenario(kind, {
    ...(opts.configure ? { configure: opts.configure } : {}),
    ...(opts.backoff ? { backoff: opts.backoff } : {}),
    ...(opts.homeserver ? { homeserver: opts.homeserver } : {}),
    ...(opts.now ? { now: opts.now } : {}),
    ...(opts.wrapDb ? { wrapDb: opts.wrapDb } : {}),
    ...(opts.loneMarkLingerMs !== undefined ? { loneMarkLingerMs: opts.loneMarkLingerMs } : {}),
    ...(opts.markCarryMs !== undefined ? { markCarryMs: opts.markCarryMs } : {}),
    // The adapters the bridge's config describes (as buildNetworks makes them), with the fakes and short delays.
    networks: async config => {
      const [signal, whatsapp] = await buildNetworks(config, {
        signal: { daemonUrl: daemon.url, timings: { ...SIGNAL_TIMINGS, ...opts.signal } },
        whatsapp: { ...WHATSAPP_OPTIONS, socketFactory: wa.factory, ...opts.whatsapp },
      })
      current.signal = signal as SignalNetwork
      current.whatsapp = whatsapp as WhatsAppNetwork
      return [current.signal, current.whatsapp]
    },
  })
  const stopBase = base.stop.bind(base)
  const s = base as RealScenario
  Object.defineProperties(s, {
    daemon: { value: daemon },
    wa: { value: wa },
    signalNet: { get: () => current.signal },
    whatsappNet: { get: () => current.whatsapp },
  })
  s.stop = async () => {
    await stopBase()
    await daemon.stop()
    await wa.stop()
  }
  return s
}

const contentOf = (e: FakeEvent) => e.content as Record<string, any>

/** Waits for something outside the homeserver (a fake network's state): re-checked every few ms. */
export function until<T>(check: () => T | undefined | null | false, what = 'a condition', timeoutMs = PATIENCE_MS): Promise<T> {
  return vi.waitFor(() => {
    const v = check()
    if (!v) throw new Error(`still waiting for ${what}`)
    return v
  }, { timeout: timeoutMs, interval: 10 })
}

/** Events the bot posted in a room, of a msgtype (edits excluded). */
export function botEvents(s: Scenario, room: string, msgtype: string): FakeEvent[] {
  return s.hs.timeline(room).filter(e => e.sender === s.hs.botUserId && e.type === 'm.room.message' && contentOf(e).msgtype === msgtype && !contentOf(e)['m.new_content'])
}

/** The owner's direct chat with the bot. */
export async function directChat(s: Scenario, owner = ALICE): Promise<string> {
  if (!s.hs.profile(owner)) s.hs.createUser(owner, { displayname: owner.slice(1, owner.indexOf(':')).replace(/^./, c => c.toUpperCase()) })
  const dm = await s.hs.createRoom(owner, { invite: [s.hs.botUserId], isDirect: true })
  await s.hs.waitFor(() => s.hs.membership(dm, s.hs.botUserId) === 'join', { what: 'the bot to join the direct chat' })
  return dm
}

export async function waitForNotice(s: Scenario, room: string, match: RegExp, what = String(match)): Promise<string> {
  return s.hs.waitFor(() => s.botNotices(room).find(n => match.test(n)), { what: `a bot notice ${what}` })
}

const loginIdIn = (notice: string) => /login ([a-z]+-[0-9a-f]+)/.exec(notice)![1]!

/** `login signal` in the direct chat, the phone scans the QR code; returns the login id. */
export async function loginSignal(s: RealScenario, dm: string, account: { number: string; aci: string; name?: string } = SIG_RELAY, owner = ALICE): Promise<string> {
  const before = s.botNotices(dm).length
  await s.hs.sendMessage(owner, dm, 'login signal relay')
  await s.hs.waitFor(() => botEvents(s, dm, 'm.image').length > 0, { what: 'the Signal QR code' })
  await s.daemon.scanLink(account)
  const linked = await s.hs.waitFor(() => s.botNotices(dm).slice(before).find(n => n.startsWith('Linked!')), { what: 'the Signal login to finish' })
  await s.daemon.until(() => s.daemon.hasStream(account.number))
  return loginIdIn(linked)
}

/** `login whatsapp` in the direct chat, the phone scans the QR code; returns the login id. */
export async function loginWhatsApp(s: RealScenario, dm: string, owner = ALICE): Promise<string> {
  const before = s.botNotices(dm).length
  const images = botEvents(s, dm, 'm.image').length
  await s.hs.sendMessage(owner, dm, 'login whatsapp relay')
  await s.hs.waitFor(() => botEvents(s, dm, 'm.image').length > images, { what: 'the WhatsApp QR code' })
  s.wa.scanQr()
  const linked = await s.hs.waitFor(() => s.botNotices(dm).slice(before).find(n => n.startsWith('Linked!')), { what: 'the WhatsApp login to finish' })
  const id = loginIdIn(linked)
  await until(() => s.whatsappNet.state(id) === 'connected', 'the WhatsApp session to connect')
  return id
}

/** A Signal group the relay account is in, with Bob and Carol. */
export function signalGroup(s: RealScenario, name = 'Family (Signal)', members: FakeSender[] = [SIG_BOB, SIG_CAROL]): string {
  return s.daemon.addGroup({ name, members: [SIG_RELAY, ...members.map(m => ({ number: m.number, aci: m.aci }))] }).id
}

/** A room bridged to a Signal group (and a WhatsApp group when `whatsapp` is set) by the commands people type. */
export async function bridgedRoom(s: RealScenario, o: { signal?: boolean; whatsapp?: boolean; owner?: string } = {}): Promise<{ room: string; dm: string; signalGroup?: string; whatsappGroup?: string; signalLogin?: string; whatsappLogin?: string }> {
  const owner = o.owner ?? ALICE
  const dm = await directChat(s, owner)
  const room = await roomWithBot(s, owner)
  const out: Awaited<ReturnType<typeof bridgedRoom>> = { room, dm }
  if (o.signal !== false) {
    out.signalLogin = await loginSignal(s, dm, SIG_RELAY, owner)
    out.signalGroup = signalGroup(s)
    const reply = await s.command(owner, room, `!relay link signal ${out.signalGroup}`)
    if (!reply.startsWith('Linked this room')) throw new Error(`link signal failed: ${reply}`)
  }
  if (o.whatsapp) {
    out.whatsappLogin = await loginWhatsApp(s, dm, owner)
    out.whatsappGroup = s.wa.addGroup({ subject: 'Family (WhatsApp)', members: [WA_DAVE, WA_ERIN] })
    const reply = await s.command(owner, room, `!relay link whatsapp ${out.whatsappGroup}`)
    if (!reply.startsWith('Linked this room')) throw new Error(`link whatsapp failed: ${reply}`)
  }
  return out
}

export type { FakeAccount }

/** A person's own (personal) logins, linked in their direct chat as they would do it: their Signal account
 * (`signal`, put into the Signal group) and their WhatsApp account (`whatsapp`, added to the WhatsApp world and
 * its group). Returns the login ids and the WhatsApp account. */
export async function personalLogins(s: RealScenario, person: string, o: {
  signal?: { number: string; aci: string; name: string }; signalGroup?: string
  whatsapp?: { pn: string; lid: string; name: string }; whatsappGroup?: string
}): Promise<{ signalLogin?: string; whatsappLogin?: string; wa?: FakeWaAccount }> {
  const dm = await directChat(s, person)
  const out: { signalLogin?: string; whatsappLogin?: string; wa?: FakeWaAccount } = {}
  if (o.signal) {
    if (o.signalGroup) s.daemon.groups.get(o.signalGroup)!.members.push({ number: o.signal.number, uuid: o.signal.aci })
    const before = s.botNotices(dm).length
    await s.hs.sendMessage(person, dm, 'login signal personal')
    await s.daemon.until(() => [...s.daemon.pendingLinks.values()].some(l => l.finish))
    await s.daemon.scanLink(o.signal)
    const linked = await s.hs.waitFor(() => s.botNotices(dm).slice(before).find(n => n.startsWith('Linked!')), { what: 'the personal Signal login' })
    out.signalLogin = loginIdIn(linked)
    await s.daemon.until(() => s.daemon.hasStream(o.signal!.number))
  }
  if (o.whatsapp) {
    const wa = s.wa.addAccount(o.whatsapp)
    out.wa = wa
    if (o.whatsappGroup) s.wa.addMember(o.whatsappGroup, s.wa.asMember(wa))
    const before = s.botNotices(dm).length
    const sockets = s.wa.sockets.length
    await s.hs.sendMessage(person, dm, 'login whatsapp personal')
    await until(() => s.wa.sockets.slice(sockets).some(x => !x.account && x.state === 'connecting'), 'the personal WhatsApp login to show a QR code')
    s.wa.scanQr(wa)
    const linked = await s.hs.waitFor(() => s.botNotices(dm).slice(before).find(n => n.startsWith('Linked!')), { what: 'the personal WhatsApp login' })
    out.whatsappLogin = loginIdIn(linked)
    await until(() => s.whatsappNet.state(out.whatsappLogin!) === 'connected', 'the personal WhatsApp session to connect')
  }
  return out
}
