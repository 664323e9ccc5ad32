// SignalNetwork end to end against the fake daemon: receiving, sending, linking, unlinking.
import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { plainText, type Delivery, type Person } from '../../src/core/model.ts'
import { DeliveryError, UserError } from '../../src/core/errors.ts'
import type { Login } from '../../src/core/network.ts'
import { SignalNetwork } from '../../src/signal/network.ts'
import { EDIT_MARKER } from '../../src/signal/send.ts'
import { FakeSignalDaemon } from '../fakes/signal-daemon.ts'
import { edit, groupText, groupUpdate, reaction, syncSent } from '../fakes/signal-envelopes.ts'
import { tempDir } from '../support/config.ts'
import { testContext, testUi, type TestContext } from './support.ts'

const RELAY = { number: '+15550100001', aci: '5f0c2a9e-3b7d-4e61-9a2c-7d1e8b4f6a30', name: 'Relay' }
const ALEX = { number: '+15550100002', aci: 'a3e91c47-0d52-4b8e-b6f1-2c9d7e0a5b14', name: 'Alex' }
const KIM = { number: null, aci: 'e7b2d019-6c4a-4f3e-8d25-91a0c6f3b7e8', name: 'Kim' }
const timings = { watchdogMs: 2000, backoffInitialMs: 20, backoffMaxMs: 200, pollAccountsMs: 100, receiveRetryMs: 20, rpcTimeoutMs: 2000 }

let daemon: FakeSignalDaemon
let ctx: TestContext
let net: SignalNetwork
let login: Login
let groupId: string

beforeEach(async () => {
  daemon = await FakeSignalDaemon.start({ keepaliveMs: 500 })
  daemon.addAccount(RELAY)
  groupId = daemon.addGroup({ name: 'Family', members: [RELAY, ALEX, KIM] }).id
  ctx = testContext()
  login = await ctx.logins.save({ network: 'signal', kind: 'relay', address: RELAY.number, personId: RELAY.aci, displayName: 'Relay', ownerMxid: '@op:x', metadata: {} })
  ctx.bridged.add(groupId)
  net = new SignalNetwork({ daemonUrl: daemon.url, timings })
  await net.start(ctx)
  await daemon.until(() => daemon.hasStream(RELAY.number))
})
afterEach(async () => {
  await net.stop()
  await daemon.stop()
})

const alice: Person = { network: 'whatsapp', id: 'alice', displayName: 'Alice' }
const target = () => ({ network: 'signal' as const, chatId: groupId, loginId: login.id, roomId: '!r:x' })

describe('receiving', () => {
  it('a burst is recorded in runs: what arrives while the core records is handed over together next, in order', async () => {
    let release!: () => void
    ctx.hold = new Promise<void>(resolve => (release = resolve))
    const texts = Array.from({ length: 100 }, (_, i) => `m${i}`)
    daemon.push(RELAY.number, groupText(ALEX, groupId, texts[0]!))
    await ctx.until(() => ctx.recording === 1) // the first is being recorded (slowly)
    for (const t of texts.slice(1)) daemon.push(RELAY.number, groupText(ALEX, groupId, t))
    await daemon.until(() => net.backlog(login.id) === 99)
    ctx.hold = undefined
    release()
    await ctx.until(() => ctx.received.length === 100)
    expect(ctx.received.map(e => (e.kind === 'message' ? e.content.body.text : e.kind))).toEqual(texts)
    // The first alone (it was alone when it came), the 99 behind it in one run.
    expect(ctx.batches.map(b => b.length)).toEqual([99])
  })

  it('a view-once photo recorded in a run as its one line still has the daemon’s copy of its file removed', async () => {
    const shared = await tempDir('rb-signal-attachments-')
    await net.stop()
    net = new SignalNetwork({ daemonUrl: daemon.url, timings, attachmentsDir: shared })
    await net.start(ctx)
    await daemon.until(() => daemon.hasStream(RELAY.number))
    await writeFile(join(shared, 'once.jpg'), 'a photo meant to be seen once')
    let release!: () => void
    ctx.hold = new Promise<void>(resolve => (release = resolve))
    daemon.push(RELAY.number, groupText(ALEX, groupId, 'look'))
    await ctx.until(() => ctx.recording === 1)
    daemon.push(RELAY.number, groupText(ALEX, groupId, '', { viewOnce: true, attachments: [{ contentType: 'image/jpeg', id: 'once.jpg', filename: 'once.jpg', size: 29 }] }))
    daemon.push(RELAY.number, groupText(ALEX, groupId, 'did you see it?'))
    await daemon.until(() => net.backlog(login.id) === 2)
    ctx.hold = undefined
    release()
    await ctx.until(() => ctx.received.length === 3)
    expect(ctx.batches.map(b => b.length)).toEqual([2]) // the line and the next message, together
    expect(daemon.callsOf('getAttachment')).toEqual([])
    await daemon.until(() => !existsSync(join(shared, 'once.jpg')))
  })

  it('group messages reach the core in order, and a failed commit is retried, never dropped', async () => {
    ctx.failReceives = 2
    const sent = ['one', 'two', 'three'].map(t => groupText(ALEX, groupId, t))
    for (const e of sent) daemon.push(RELAY.number, e)
    await ctx.until(() => ctx.received.length === 3)
    expect(ctx.received.map(e => (e.kind === 'message' ? e.content.body.text : e.kind))).toEqual(['one', 'two', 'three'])
    expect(ctx.received[0]).toMatchObject({ remoteId: `${ALEX.aci}:${sent[0]!.timestamp}`, loginId: login.id, sender: { displayName: 'Alex' } })
    expect(net.state(login.id)).toBe('connected')
  })

  it('messages from unknown groups pass (the core may create a portal); their reactions, edits and updates do not', async () => {
    const other = daemon.addGroup({ name: 'Other', members: [RELAY, ALEX] }).id
    daemon.push(RELAY.number, reaction(ALEX, other, { emoji: '👍', target: KIM, targetSentTimestamp: 1 }))
    daemon.push(RELAY.number, edit(ALEX, other, 1, 'x'))
    daemon.push(RELAY.number, groupUpdate(ALEX, other, 5))
    daemon.push(RELAY.number, groupText(ALEX, other, 'hello from elsewhere'))
    await ctx.until(() => ctx.received.length === 1)
    expect(ctx.received[0]).toMatchObject({ kind: 'message', chat: { id: other } })
  })

  it('a group rename arrives as a chat update with the name read from listGroups; mentions use names seen before', async () => {
    daemon.groups.get(groupId)!.name = 'Family 2026'
    daemon.push(RELAY.number, groupUpdate(ALEX, groupId, 4))
    daemon.push(RELAY.number, groupText(KIM, groupId, 'I am Kim'))
    daemon.push(RELAY.number, groupText(ALEX, groupId, 'hi \uFFFC', { mentions: [{ aci: KIM.aci, start: 3 }] }))
    // The update also re-reads who is in the group (a `members` event): only the messages and the rename count here.
    const messages = () => ctx.received.filter(e => e.kind === 'message')
    await ctx.until(() => messages().length === 2)
    expect(ctx.received.find(e => e.kind === 'chat_update')).toMatchObject({ name: 'Family 2026' })
    expect(messages()[1]).toMatchObject({ content: { body: { text: 'hi @Kim' } } })
  })

  it('a message typed on the relay phone speaks as the login’s person', async () => {
    daemon.push(RELAY.number, syncSent(RELAY, groupId, 'from my phone'))
    await ctx.until(() => ctx.received.length === 1)
    expect(ctx.received[0]).toMatchObject({ sender: { id: RELAY.aci, viaRelayAccount: true } })
  })
})

describe('sending', () => {
  const message = (text: string, extra: Partial<Extract<Delivery, { kind: 'message' }>> = {}): Delivery => ({
    kind: 'message', target: target(), sender: alice, deliveryId: 'd1', relayed: true,
    content: { kind: 'text', body: { ...plainText(`Alice (WhatsApp): ${text}`), styles: [{ start: 0, length: 16, style: 'bold' }] }, attachments: [] },
    ...extra,
  })

  it('a relayed message goes to the group with its bold prefix and returns the relay’s copy id', async () => {
    const res = await net.send(message('hi'))
    const call = daemon.callsOf('send').at(-1)!
    expect(call.params).toMatchObject({ account: RELAY.number, groupId, message: 'Alice (WhatsApp): hi', textStyle: ['0:16:BOLD'] })
    expect(res).toEqual({ remoteId: `${RELAY.aci}:${res.sentAt}`, authorId: RELAY.aci, sentAt: expect.any(Number) })
  })

  it('a reply quotes the copy; an attachment travels as a data URI; long text goes in parts', async () => {
    const mediaId = await ctx.media.put(Buffer.from('png!'))
    const of = { remoteId: `${KIM.aci}:1789999999000`, authorId: KIM.aci, sentAt: 1789999999000 }
    await net.send(message('x'.repeat(2500), { replyTo: of, content: { kind: 'text', body: plainText(`${'word '.repeat(500)}`), attachments: [{ kind: 'image', mimetype: 'image/png', filename: 'a b.png', size: 4, mediaId }] } }))
    const sends = daemon.callsOf('send')
    expect(sends).toHaveLength(2)
    expect(sends[0]!.params).toMatchObject({ quoteTimestamp: 1789999999000, quoteAuthor: KIM.aci, attachments: [`data:image/png;filename=a%20b.png;base64,${Buffer.from('png!').toString('base64')}`] })
    expect(sends[1]!.params.quoteTimestamp).toBeUndefined()
  })

  it('an edit aims at the latest revision; past 24 h it becomes a marked new message quoting the original', async () => {
    const original = { remoteId: `${RELAY.aci}:1000`, authorId: RELAY.aci, sentAt: Date.now() - 60_000 }
    const latest = { remoteId: `${RELAY.aci}:2000`, authorId: RELAY.aci, sentAt: Date.now() - 30_000 }
    const e = (o: typeof original, count: number): Delivery => ({ kind: 'edit', target: target(), sender: alice, deliveryId: 'e', relayed: true, content: { kind: 'text', body: plainText('fixed'), attachments: [] }, of: latest, original: o, editCount: count })
    await net.send(e(original, 1))
    expect(daemon.callsOf('send').at(-1)!.params).toMatchObject({ editTimestamp: 2000, message: 'fixed' })
    await net.send(e({ ...original, sentAt: Date.now() - 25 * 3600_000 }, 1))
    expect(daemon.callsOf('send').at(-1)!.params).toMatchObject({ message: `${EDIT_MARKER}fixed`, quoteTimestamp: 1000, quoteAuthor: RELAY.aci })
    expect(daemon.callsOf('send').at(-1)!.params.editTimestamp).toBeUndefined()
  })

  it('a delete older than 24 h is refused permanently with a sentence; a fresh one is sent', async () => {
    const of = { remoteId: `${RELAY.aci}:1000`, authorId: RELAY.aci, sentAt: Date.now() - 25 * 3600_000 }
    const err = await net.send({ kind: 'delete', target: target(), sender: alice, deliveryId: 'x', of }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(DeliveryError)
    expect((err as DeliveryError).disposition).toBe('permanent')
    await net.send({ kind: 'delete', target: target(), sender: alice, deliveryId: 'x', of: { ...of, sentAt: Date.now() } })
    expect(daemon.callsOf('remoteDelete').at(-1)!.params).toMatchObject({ targetTimestamp: 1000, groupId })
  })

  it('a reaction names the target author and timestamp', async () => {
    const of = { remoteId: `${KIM.aci}:1789999999000`, authorId: KIM.aci, sentAt: 0 }
    await net.send({ kind: 'reaction', target: target(), sender: alice, deliveryId: 'r', of, emoji: '❤️', removed: true })
    expect(daemon.callsOf('sendReaction').at(-1)!.params).toMatchObject({ emoji: '❤️', targetAuthor: KIM.aci, targetTimestamp: 1789999999000, remove: true })
  })

  it('a partial failure is not an error', async () => {
    daemon.recipientResult = m => (m.uuid === KIM.aci ? 'UNREGISTERED_FAILURE' : undefined)
    await expect(net.send(message('hi'))).resolves.toMatchObject({ authorId: RELAY.aci })
  })

  it('a send to a dropped daemon fails transient, and succeeds once the daemon is back', async () => {
    await daemon.goAway(300)
    const err = await net.send(message('hi')).catch((e: unknown) => e)
    expect((err as DeliveryError).disposition).toBe('transient')
    await daemon.until(() => daemon.hasStream(RELAY.number))
    await expect(net.send(message('hi'))).resolves.toMatchObject({ authorId: RELAY.aci })
  })
})

describe('linking and unlinking', () => {
  it('an unlinked device is noticed by polling listAccounts: logged out, and the owner told how to re-link', async () => {
    daemon.unlink(RELAY.number)
    // The owner is told once the state is recorded (a message sent after the notice is held, never tried).
    await ctx.until(() => ctx.notices.length > 0)
    expect(ctx.states.at(-1)).toMatchObject({ loginId: login.id, state: 'logged_out' })
    expect(ctx.notices.at(-1)!.text).toMatch(/!relay login signal/)
    const err = await net.send({ kind: 'message', target: target(), sender: alice, deliveryId: 'z', relayed: true, content: { kind: 'text', body: plainText('x'), attachments: [] } }).catch((e: unknown) => e)
    expect((err as DeliveryError).disposition).toBe('hold')
  })

  it('linking shows a QR code, waits for the scan, saves the login with its ACI and opens its stream', async () => {
    const { ui, shown } = testUi()
    const pending = net.login({ ownerMxid: '@me:x', kind: 'relay' }, ui)
    await daemon.scanLink({ number: '+15550100009', aci: 'b1b2b3b4-0000-4000-8000-000000000009' })
    const linked = await pending
    expect(shown[0]).toMatchObject({ kind: 'qr', data: expect.stringMatching(/^sgnl:\/\/linkdevice\?/), caption: expect.stringMatching(/Linked devices/) })
    expect(linked).toMatchObject({ network: 'signal', kind: 'relay', address: '+15550100009', personId: 'b1b2b3b4-0000-4000-8000-000000000009', ownerMxid: '@me:x' })
    expect(daemon.callsOf('finishLink')[0]!.params).toEqual({ deviceLinkUri: shown[0]!.data, deviceName: 'relay-bridge' })
    await daemon.until(() => daemon.hasStream('+15550100009'))
  })

  it('an expired link request tells the person to ask for a fresh code', async () => {
    await net.stop()
    await daemon.stop()
    daemon = await FakeSignalDaemon.start({ linkTimeoutMs: 100 })
    net = new SignalNetwork({ daemonUrl: daemon.url, timings })
    await net.start(ctx)
    const err = await net.login({ ownerMxid: '@me:x', kind: 'relay' }, testUi().ui).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(UserError)
    expect((err as Error).message).toMatch(/expired.*!relay login signal/)
  })

  it('a link for a number the daemon still holds fails with what the operator should do', async () => {
    const pending = net.login({ ownerMxid: '@me:x', kind: 'relay' }, testUi().ui).catch((e: unknown) => e)
    await daemon.scanLink({ number: RELAY.number })
    const err = await pending
    expect(err).toBeInstanceOf(UserError)
    expect((err as Error).message).toMatch(/restart signal-cli/)
  })

  it('logout unregisters the device and deletes its keys and sessions from signal-cli, never the person\'s Signal account', async () => {
    await net.logout(login)
    expect(net.state(login.id)).toBe('logged_out')
    expect(ctx.notices.at(-1)!.text).toMatch(/deleted its keys and sessions.*Linked devices/)
    await daemon.until(() => !daemon.hasStream(RELAY.number))
    const asked = daemon.calls.filter(c => ['unregister', 'deleteLocalAccountData', 'removeDevice'].includes(c.method))
    expect(asked.map(c => [c.method, c.params])).toEqual([
      ['unregister', { account: RELAY.number }],
      ['deleteLocalAccountData', { account: RELAY.number }],
    ])
    expect(daemon.hasLocalData(RELAY.number)).toBe(false)
    expect(daemon.deletedOnServer).toEqual([])
    expect(await net.client.listAccounts()).toEqual([])
    // Linked again later, the same number starts afresh (signal-cli no longer holds it).
    const again = net.login({ ownerMxid: '@op:x', kind: 'relay' }, testUi().ui)
    await daemon.scanLink(RELAY)
    expect((await again).address).toBe(RELAY.number)
  })

  it('logout of an account the phone had unlinked already still deletes what signal-cli kept of it', async () => {
    daemon.unlink(RELAY.number)
    expect(daemon.hasLocalData(RELAY.number)).toBe(true) // unregistered, its keys still on disk (§11.1)
    await net.logout(login)
    expect(daemon.hasLocalData(RELAY.number)).toBe(false)
    expect(net.state(login.id)).toBe('logged_out')
  })

  it('signal-cli refuses to delete a registered account\'s data, and removes devices only from the primary: why logout unregisters first', async () => {
    await expect(net.client.call('deleteLocalAccountData', { account: RELAY.number })).rejects.toMatchObject({ code: -1, rpcMessage: expect.stringMatching(/still registered/) })
    expect(daemon.hasLocalData(RELAY.number)).toBe(true)
    await expect(net.client.call('removeDevice', { account: RELAY.number, deviceId: 2 })).rejects.toMatchObject({ code: -1, rpcMessage: "This command doesn't work on linked devices." })
  })

  it('a logout the daemon cannot carry out keeps the login and its stream, and says to try again', async () => {
    daemon.fail('unregister', -3, 'Unregister error: [500] Internal Server Error')
    const err = await net.logout(login).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(UserError)
    expect((err as Error).message).toMatch(/could not delete this Signal account's keys \(error -3\), so the login was kept\. Try `logout` again/)
    expect(daemon.hasLocalData(RELAY.number)).toBe(true)
    await daemon.until(() => daemon.hasStream(RELAY.number))
    expect(net.state(login.id)).not.toBe('logged_out')
    // Tried again, it goes through.
    await net.logout(login)
    expect(daemon.hasLocalData(RELAY.number)).toBe(false)
  })

  it('groups: list, join by link (and admin approval), create with an invite link', async () => {
    expect(await net.listGroups(login)).toEqual([expect.objectContaining({ id: groupId, name: 'Family', memberCount: 3 })])
    const open = daemon.addGroup({ name: 'Open', members: [ALEX] })
    expect(await net.joinGroup(login, open.inviteLink!)).toMatchObject({ id: open.id, name: 'Open', memberCount: 2 })
    const closed = daemon.addGroup({ name: 'Closed', members: [ALEX], requiresApproval: true })
    await expect(net.joinGroup(login, closed.inviteLink!)).rejects.toThrow(/admin must approve/)
    await expect(net.joinGroup(login, daemon.addGroup({ name: 'NotIn', members: [ALEX] }).id)).rejects.toThrow(UserError)
    await expect(net.createGroup(login, 'x'.repeat(33))).rejects.toThrow(/at most 32/)
    const created = await net.createGroup(login, 'Bridged family')
    expect(created).toMatchObject({ name: 'Bridged family', memberCount: 1, inviteLink: expect.stringMatching(/^https:\/\/signal\.group\/#/) })
  })
})
