// The Signal adapter: one signal-cli daemon, one event stream per relay login, deliveries through send.ts.
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { Counter, Gauge } from 'prom-client'
import { clockTime, type ConnectionState, type GroupInfo, type Login, type LoginRequest, type LoginUi, type NetworkContext, type RemoteNetwork, type ServiceHealth, type ServiceStatus } from '../core/network.ts'
import type { ChatAvatar, ChatField, ChatValue, CopyRef, Delivery, GroupMember, SendResult } from '../core/model.ts'
import { DeliveryError, UserError } from '../core/errors.ts'
import { AttachmentFiles } from './attachments.ts'
import { SignalClient, SignalRpcError, SignalUnreachableError, isAccountGone } from './client.ts'
import { SignalEventStream, type StreamTimings } from './events.ts'
import { SignalActivity } from './activity.ts'
import { completeEvent, convertInner, ephemeralOf, meaningfulName, neutralLabel, type Converted } from './convert.ts'
import { sendDelivery } from './send.ts'
import { parseRemoteId } from './render.ts'
import { DEVICE_NAME, linkDevice } from './login.ts'
import { MAX_GROUP_NAME, signalChatValue } from './group-state.ts'
import { rosterOf } from './members.ts'
import type { GroupJson } from './types.ts'

export interface SignalTimings extends Partial<StreamTimings> {
  /** Timeout of ordinary RPC calls (finishLink has none). */
  rpcTimeoutMs?: number
  /** Requests to the daemon in flight at once (SignalClient's lanes). */
  rpcRequestsInFlight?: number
  /** How often listAccounts is polled to notice an unlinked device (§11.3: 30–60 s). */
  pollAccountsMs?: number
  /** First delay before retrying an event the core could not record; doubles up to 30 s. */
  receiveRetryMs?: number
  /** How often the daemon is asked whether it is there (`version`, `listAccounts`), with or without accounts. */
  daemonCheckMs?: number
  /** The least time between two writes of a login's last activity (a minute). */
  activityWriteMs?: number
}

/** The daemon as the last check saw it (undefined reachable: not checked yet). */
interface DaemonHealth {
  reachable: boolean | undefined
  since: number
  version: string
  accounts: string[]
  error: string
}

export interface SignalNetworkOptions {
  daemonUrl: string
  timings?: SignalTimings
  /** The daemon's attachments directory as this process sees it (a shared volume): relayed files are removed. */
  attachmentsDir?: string
  /** A directory both this process and the daemon can read, and this process write (a group picture is handed to
   * `updateGroup` as a file): its path here, and as the daemon sees it. */
  sharedDir?: { here: string; inDaemon: string }
}

const GROUP_ID = /^[A-Za-z0-9+/]{43}=$/
const GROUP_LINK = /^https:\/\/signal\.group\/#\S+$/
const unlinkedSentence = 'The Signal relay account is no longer linked to the bridge (removed on the phone, or unused for weeks). Its owner can re-link it with `!relay login signal`; messages wait until then.'

interface Runner {
  login: Login
  stream: SignalEventStream
  /** Events handed over by the stream and not yet taken up, in arrival order, each with what to tell the stream
   * once it is recorded. */
  waiting: Array<{ inner: unknown; taken: () => void }>
  /** Whether drain() is working through `waiting`. */
  draining: boolean
  stopped: boolean
}

export class SignalNetwork implements RemoteNetwork {
  readonly network = 'signal' as const
  readonly client: SignalClient
  private readonly opts: SignalNetworkOptions
  private ctx: NetworkContext | undefined
  private log: Logger | undefined
  private readonly runners = new Map<string, Runner>()
  private readonly states = new Map<string, ConnectionState>()
  /** Profile names seen on envelopes, to name mentioned people (a mention carries no display name). */
  private readonly names = new Map<string, string>()
  /** When the daemon last delivered anything for each login, for the console; kept across restarts. */
  private activity: SignalActivity | undefined
  private poller: NodeJS.Timeout | undefined
  private metrics: { state: Gauge<'login' | 'state'>; sends: Counter<'kind' | 'outcome'>; events: Counter<'outcome'> } | undefined
  private files: AttachmentFiles | undefined
  private daemon: DaemonHealth = { reachable: undefined, since: Date.now(), version: '', accounts: [], error: '' }
  private prober: NodeJS.Timeout | undefined
  private probing = false
  /** Remote ids (`aci:timestamp`) the bridge sent lately, through any of its accounts. */
  private readonly sentIds = new Set<string>()

  constructor(opts: SignalNetworkOptions) {
    this.opts = opts
    this.client = new SignalClient({
      daemonUrl: opts.daemonUrl,
      ...(opts.timings?.rpcTimeoutMs ? { timeoutMs: opts.timings.rpcTimeoutMs } : {}),
      ...(opts.timings?.rpcRequestsInFlight ? { requestsInFlight: opts.timings.rpcRequestsInFlight } : {}),
    })
  }

  async start(ctx: NetworkContext): Promise<void> {
    this.ctx = ctx
    this.log = ctx.log.child({ network: 'signal' })
    this.metrics = signalMetrics(ctx)
    this.activity = new SignalActivity({ db: ctx.db, log: this.log, ...(this.opts.timings?.activityWriteMs ? { everyMs: this.opts.timings.activityWriteMs } : {}) })
    if (this.opts.attachmentsDir) this.files = new AttachmentFiles(this.opts.attachmentsDir, this.log)
    for (const login of await ctx.logins.list('signal')) {
      // An unlinked login stays down until its owner re-links it: its stream would only answer 400.
      if (login.state === 'logged_out') this.states.set(login.id, 'logged_out')
      else this.run(login)
    }
    this.poller = setInterval(() => void this.pollAccounts(), this.opts.timings?.pollAccountsMs ?? 45_000)
    // The event streams only tell about a daemon that holds an account: this notices it going and coming back
    // within seconds either way.
    void this.checkDaemon()
    this.prober = setInterval(() => void this.checkDaemon(), this.opts.timings?.daemonCheckMs ?? 5_000)
  }

  async stop(): Promise<void> {
    clearInterval(this.poller)
    clearInterval(this.prober)
    await Promise.all([...this.runners.values()].map(r => this.halt(r)))
    // Nothing arrives any more: what arrived since the last write is kept for the next run.
    await this.activity?.flush()
  }

  async service(): Promise<ServiceStatus> {
    const d = this.daemon
    const where = `the signal-cli daemon at ${this.client.daemonUrl}`
    if (d.reachable === undefined) return { label: 'Signal', ok: true, text: `${where} has not been checked yet.` }
    if (!d.reachable) {
      return {
        label: 'Signal', ok: false,
        text: `${where} does not answer since ${clockTime(d.since)} (${d.error}). Check that signal-cli runs (\`daemon --http\`) and that signal.daemon_url points at it.`,
      }
    }
    const logins = await this.need().logins.list('signal')
    const held = d.accounts.map(n => logins.find(l => l.address === n)?.id ?? 'one the bridge did not link')
    const accounts = held.length ? `${held.length} account${held.length === 1 ? '' : 's'} (${held.join(', ')})` : 'no account yet'
    return { label: 'Signal', ok: true, text: `${where} answers since ${clockTime(d.since)}: version ${d.version}, holding ${accounts}.` }
  }

  state(loginId: string): ConnectionState {
    return this.states.get(loginId) ?? 'disconnected'
  }

  async send(delivery: Delivery): Promise<SendResult> {
    const ctx = this.need()
    const result = await sendDelivery(delivery, {
      client: this.client,
      media: ctx.media,
      log: this.log!,
      login: async id => (id ? ctx.logins.get(id) : undefined),
      onAccountGone: login => this.markUnlinked(login),
      onOutcome: (kind, outcome) => this.metrics?.sends.inc({ kind, outcome }),
      avatarPath: value => this.avatarFile((value as ChatAvatar).mediaId, (value as ChatAvatar).mimetype),
    })
    // Another of the bridge's accounts in the same group receives this send as a member's message: an echo, until
    // the outbox has recorded the copy (after which the core knows its id).
    if (result.remoteId) {
      this.sentIds.add(result.remoteId)
      if (this.sentIds.size > 2000) this.sentIds.delete(this.sentIds.values().next().value!)
    }
    return result
  }

  chatValue(field: ChatField, value: ChatValue): ChatValue {
    return signalChatValue(field, value)
  }

  /** A group picture written where the daemon can read it; its path as the daemon sees it. */
  private async avatarFile(mediaId: string, mimetype: string): Promise<string> {
    const shared = this.opts.sharedDir
    if (!shared) {
      throw new DeliveryError('permanent', 'The bridge cannot hand a picture to signal-cli: set signal.shared_dir (a directory the bridge writes and the daemon reads) and signal.shared_dir_in_daemon (the same directory as the daemon sees it).')
    }
    const name = `group-avatar-${mediaId.replace(/[^A-Za-z0-9_-]/g, '')}.${mimetype === 'image/png' ? 'png' : 'jpg'}`
    await mkdir(shared.here, { recursive: true })
    await writeFile(join(shared.here, name), await this.need().media.get(mediaId))
    return join(shared.inDaemon, name)
  }

  async login(request: LoginRequest, ui: LoginUi): Promise<Login> {
    const ctx = this.need()
    const { number, aci } = await linkDevice(this.client, ui, request.signal)
    const login = await ctx.logins.save({
      network: 'signal',
      kind: request.kind,
      address: number,
      personId: aci,
      displayName: neutralLabel(aci),
      ownerMxid: request.ownerMxid,
      metadata: { deviceName: DEVICE_NAME, linkedAt: Date.now() },
      state: 'connecting',
    })
    // A newly linked account only appears on a fresh stream (§3.4).
    const old = this.runners.get(login.id)
    if (old) await this.halt(old)
    this.run(login)
    return login
  }

  /**
   * Unlinks the account and deletes its keys and sessions from signal-cli for good. A linked device cannot take itself
   * off the phone's list (`removeDevice` works only on the primary device), and `unregister --delete-account` would
   * delete the person's whole Signal account: so `unregister` (this device stops receiving; the number stays
   * registered on the phone), then `deleteLocalAccountData`, which signal-cli refuses while the device is registered.
   */
  async logout(login: Login): Promise<void> {
    const runner = this.runners.get(login.id)
    if (runner) await this.halt(runner)
    try {
      await this.forgetAccount(login)
    } catch (err) {
      // Nothing was deleted: the login stays as it was, and its stream runs again.
      if (runner && this.states.get(login.id) !== 'logged_out') this.run(runner.login)
      throw err
    }
    this.activity?.forget(login.id)
    const sentence =
      `The bridge unlinked this Signal account and deleted its keys and sessions from signal-cli. A linked device cannot remove itself from the phone's list: on the phone, open Signal → Settings → Linked devices and remove "${DEVICE_NAME}". Re-link any time with \`!relay login signal\`.`
    await this.setState(login.id, 'logged_out', sentence)
    await this.ctx?.notify(login.id, sentence)
  }

  private async forgetAccount(login: Login): Promise<void> {
    const account = { account: login.address }
    try {
      await this.client.call('unregister', account)
    } catch (err) {
      // Unknown to the daemon: unlinked on the phone already (it marked the account unregistered), or deleted.
      if (!isAccountGone(err)) throw this.forgetProblem(err)
    }
    try {
      await this.client.call('deleteLocalAccountData', account)
    } catch (err) {
      throw this.forgetProblem(err)
    }
  }

  private forgetProblem(err: unknown): UserError {
    this.log?.warn({ err: (err as Error).message }, 'signal-cli could not unlink a Signal account and delete its data')
    if (err instanceof SignalRpcError) {
      return new UserError(`signal-cli could not delete this Signal account's keys (error ${err.code}), so the login was kept. Try \`logout\` again; if it fails again, check the signal-cli logs.`)
    }
    return new UserError('The Signal daemon is unreachable, so this Signal account\'s keys could not be deleted and the login was kept. Check that signal-cli is running, then try `logout` again.')
  }

  async typingAs(login: Login, chatId: string, typing: boolean): Promise<void> {
    await this.client.call('sendTyping', { account: login.address, groupId: chatId, ...(typing ? {} : { stop: true }) })
  }

  async readAs(login: Login, _chatId: string, copy: CopyRef): Promise<void> {
    const target = parseRemoteId(copy.remoteId)
    if (!target) return
    // A receipt goes to the message's author alone, in groups too (§5 sendReceipt).
    await this.client.call('sendReceipt', { account: login.address, recipient: target.aci, targetTimestamp: target.timestamp, type: 'read' })
  }

  async listGroups(login: Login): Promise<GroupInfo[]> {
    const groups = await this.rpc<GroupJson[]>(login, 'listGroups', {})
    return groups.filter(g => g.isMember).map(toGroupInfo)
  }

  async joinGroup(login: Login, idOrLink: string): Promise<GroupInfo> {
    const input = idOrLink.trim()
    if (GROUP_LINK.test(input)) {
      const joined = await this.rpc<{ groupId: string; onlyRequested?: boolean }>(login, 'joinGroup', { uri: input }, 'That Signal group link did not work; it may have been reset. Ask for a fresh link.')
      if (joined.onlyRequested) {
        throw new UserError('The Signal group needs an admin to approve new members. An admin must approve the relay account in the group settings, then try again.')
      }
      return this.groupById(login, joined.groupId)
    }
    if (GROUP_ID.test(input)) return this.groupById(login, input)
    throw new UserError('Give a Signal group id (44 characters, from `!relay groups signal`) or an invite link starting with https://signal.group/#.')
  }

  async createGroup(login: Login, name: string): Promise<GroupInfo> {
    if ([...name].length > MAX_GROUP_NAME) throw new UserError(`Signal group names can have at most ${MAX_GROUP_NAME} characters; choose a shorter name.`)
    // No groupId: create. The link lets WhatsApp and Matrix people be invited later.
    const created = await this.rpc<{ groupId: string }>(login, 'updateGroup', { name, link: 'enabled' })
    return this.groupById(login, created.groupId)
  }

  async roster(login: Login, groupId: string): Promise<{ members: GroupMember[]; banned: string[] }> {
    const [g] = await this.rpc<GroupJson[]>(login, 'listGroups', { groupId }, 'The relay account is not in that Signal group.')
    if (!g || !g.isMember) throw new UserError('The relay account is not a member of that Signal group.')
    return rosterOf(g, aci => this.names.get(aci))
  }

  async lastActivity(loginId: string): Promise<number | undefined> {
    return this.activity?.last(loginId)
  }

  /** The console's view of the daemon: the same periodic check as service(), so a page refresh asks it nothing. */
  async health(): Promise<ServiceHealth> {
    const d = this.daemon
    if (d.reachable === false) return { name: 'signal-cli daemon', reachable: false, problem: `it cannot be reached at ${this.client.daemonUrl} (${d.error})` }
    return { name: 'signal-cli daemon', reachable: d.reachable === true, ...(d.version ? { version: d.version } : {}), ...(d.reachable === undefined ? { problem: 'not checked yet' } : {}) }
  }

  // ---- internals --------------------------------------------------------------------------------------

  private need(): NetworkContext {
    if (!this.ctx) throw new Error('SignalNetwork.start() has not been called.')
    return this.ctx
  }

  private async groupById(login: Login, groupId: string): Promise<GroupInfo> {
    const [g] = await this.rpc<GroupJson[]>(login, 'listGroups', { groupId }, 'The relay account is not in that Signal group. Add it to the group (or use an invite link), then try again.')
    if (!g || !g.isMember) throw new UserError('The relay account is not a member of that Signal group yet. Add it to the group, then try again.')
    return toGroupInfo(g)
  }

  /** An account-bound call for commands: daemon trouble becomes a sentence for the person who asked. */
  private async rpc<T>(login: Login, method: string, params: Record<string, unknown>, onUserError?: string): Promise<T> {
    try {
      return await this.client.call<T>(method, { ...params, account: login.address })
    } catch (err) {
      if (isAccountGone(err)) {
        await this.markUnlinked(login)
        throw new UserError(unlinkedSentence)
      }
      if (err instanceof SignalRpcError && err.code === -1 && onUserError) throw new UserError(onUserError)
      if (err instanceof SignalRpcError) throw new UserError(`Signal refused the request (error ${err.code}). Try again; if it persists, check the signal-cli logs.`)
      throw new UserError('The Signal daemon is unreachable. Check that signal-cli is running, then try again.')
    }
  }

  private run(login: Login): void {
    const runner: Runner = { login, waiting: [], draining: false, stopped: false, stream: undefined as unknown as SignalEventStream }
    runner.stream = new SignalEventStream(
      { daemonUrl: this.opts.daemonUrl, account: login.address, timings: this.opts.timings ?? {}, log: this.log!.child({ login: login.id }) },
      {
        onEvent: inner => {
          this.activity?.saw(login.id)
          // Typing and receipts go straight on, never behind messages being recorded (and never holding them).
          const ephemeral = ephemeralOf(inner, { loginId: login.id, aci: login.personId, displayName: login.displayName })
          if (ephemeral) {
            if (ephemeral.event) this.ctx?.ephemeral(ephemeral.event)
            return
          }
          // Events of one account are recorded strictly in arrival order; the stream counts them until they are
          // (its backlog bounds how many wait in memory).
          return new Promise<void>(taken => {
            runner.waiting.push({ inner, taken })
            if (!runner.draining) {
              runner.draining = true
              this.drain(runner).catch((err: unknown) => this.log?.error({ err: (err as Error).message }, 'Signal events could not be handled'))
            }
          })
        },
        onState: state => {
          if (!runner.stopped) void this.setState(login.id, state)
        },
        onGone: () => void this.markUnlinked(login),
      },
    )
    this.runners.set(login.id, runner)
    runner.stream.start()
  }

  /** Events of a login handed over by its stream that wait for the ones before them to be recorded. */
  backlog(loginId: string): number {
    return this.runners.get(loginId)?.waiting.length ?? 0
  }

  private async halt(runner: Runner): Promise<void> {
    runner.stopped = true
    if (this.runners.get(runner.login.id) === runner) this.runners.delete(runner.login.id)
    await runner.stream.stop()
  }

  /**
   * Records what the stream handed over, in arrival order. A run of events that need nothing more from the daemon
   * (no file, long text or group to read: most traffic) goes to the core together, in one transaction; anything
   * else goes on its own, between runs. What arrives meanwhile is the next round's.
   */
  private async drain(runner: Runner): Promise<void> {
    try {
      while (runner.waiting.length > 0) {
        let run: Array<{ item: Runner['waiting'][number]; events: Converted[] }> = []
        for (const item of runner.waiting.splice(0)) {
          try {
            const events = this.prepare(runner, item.inner)
            if (events.every(selfContained)) {
              run.push({ item, events })
              continue
            }
            await this.recordRun(runner, run)
            run = []
            await this.handle(runner, item.inner, events)
          } catch (err) {
            this.log!.error({ login: runner.login.id, err: (err as Error).message }, 'A Signal event could not be handled; it is not relayed')
          }
          item.taken()
        }
        await this.recordRun(runner, run)
      }
    } finally {
      runner.draining = false
    }
  }

  /** What one event from the stream asks the core to record (none for what is not relayed). */
  private prepare(runner: Runner, inner: unknown): Converted[] {
    const ctx = this.need()
    const login = runner.login
    const self = { loginId: login.id, aci: login.personId, displayName: login.displayName }
    this.learnName(inner)
    const result = convertInner(inner, self, aci => this.names.get(aci))
    if (result.exception) {
      // Decrypt or identity failures (§6): logged, never relayed. The type holds no number or text.
      this.log!.warn({ login: login.id, type: result.exception.type }, 'Signal could not decrypt or trust an incoming message; it is not relayed')
      this.metrics?.events.inc({ outcome: 'exception' })
      return []
    }
    if (result.skipped) this.log!.debug({ login: login.id, reason: result.skipped }, 'Signal event ignored')
    return result.events.filter(c => {
      if (this.sentIds.has(c.event.remoteId)) return false
      // Unknown groups still pass a relay account's messages (the core may create a portal); the rest needs a portal.
      // A personal account's other chats are none of the bridge's business: nothing of them is fetched or kept.
      return (c.event.kind === 'message' && login.kind !== 'personal') || ctx.isBridgedChat('signal', c.event.chat.id)
    })
  }

  /** Records a run of self-contained events together; should the core refuse the run, each goes on its own. */
  private async recordRun(runner: Runner, run: Array<{ item: Runner['waiting'][number]; events: Converted[] }>): Promise<void> {
    if (run.length === 0) return
    const ctx = this.need()
    const converted = run.flatMap(r => r.events)
    let together = false
    if (converted.length > 1 && ctx.receiveMany) {
      try {
        // Complete as converted: with no file, long text or group to read, completeEvent would change nothing.
        const events = converted.map(c => c.event)
        await ctx.receiveMany(events)
        this.metrics?.events.inc({ outcome: 'received' }, events.length)
        together = true
      } catch (err) {
        this.log!.debug({ login: runner.login.id, err: (err as Error).message }, 'Signal events could not be recorded together; one by one')
      }
    }
    for (const r of run) {
      try {
        if (!together) await this.handle(runner, r.item.inner, r.events)
        // Recorded: the daemon's copies of files the event named but nobody relays (a view-once photo) can go.
        else await this.files?.removeNamedIn(r.item.inner)
      } catch (err) {
        this.log!.error({ login: runner.login.id, err: (err as Error).message }, 'A Signal event could not be handled; it is not relayed')
      }
      r.item.taken()
    }
  }

  private async handle(runner: Runner, inner: unknown, events: Converted[]): Promise<void> {
    let done = true
    for (const c of events) if (!(await this.deliverInbound(runner, c))) done = false
    // Recorded, or never to be relayed: the daemon's copies of its files are no longer needed.
    if (done) await this.files?.removeNamedIn(inner)
  }

  /** Never drops an event: retries until the core has recorded it (true), or the runner stops (false). */
  private async deliverInbound(runner: Runner, c: Converted): Promise<boolean> {
    const ctx = this.need()
    let delay = this.opts.timings?.receiveRetryMs ?? 500
    for (;;) {
      // A group update is read whole (§4.10): its name and description, and who is in it now.
      let group: GroupJson | undefined
      try {
        const event = await completeEvent(c, {
          media: ctx.media,
          getAttachment: async id => Buffer.from((await this.client.call<{ data: string }>('getAttachment', { account: runner.login.address, id })).data, 'base64'),
          getSticker: async (packId, stickerId) =>
            Buffer.from((await this.client.call<{ data: string }>('getSticker', { account: runner.login.address, packId, stickerId })).data, 'base64'),
          groupDetails: async groupId => {
            const [g] = await this.client.call<GroupJson[]>('listGroups', { account: runner.login.address, groupId })
            group = g
            // The timer too: signal-cli before 0.13.21 does not mark a timer change as one (§3).
            return g ? { name: g.name ?? '', topic: g.description ?? '', ...(typeof g.messageExpirationTime === 'number' ? { timer: g.messageExpirationTime } : {}) } : undefined
          },
        })
        await ctx.receive(event)
        // What changed is not said (§4.10): an admin made, or the edit permission opened, lets waiting changes through.
        if (event.kind === 'chat_update') ctx.permissionsChanged('signal', event.chat.id)
        // Who made the change is the envelope's source: someone gone by their own hand left, anyone else was removed.
        // A group the relay is no longer in shows no members worth believing.
        if (event.kind === 'chat_update' && group?.isMember) {
          await ctx.receive({
            kind: 'members', chat: event.chat, sender: event.sender, remoteId: `${event.remoteId}/members`, timestamp: event.timestamp,
            loginId: runner.login.id, ...rosterOf(group, aci => this.names.get(aci)),
          })
        }
        this.metrics?.events.inc({ outcome: 'received' })
        return true
      } catch (err) {
        if (err instanceof SignalRpcError && err.code === -1) {
          // The file, sticker or group is gone for good (§4.4): relay the rest rather than block the account's
          // queue (and retry without everything that asks the daemon, or this would ask again forever).
          this.log!.warn({ login: runner.login.id, code: err.code }, 'Part of a Signal event could not be fetched; relaying without it')
          c = { ...c, media: [], longText: undefined, groupUpdate: undefined }
          continue
        }
        if (runner.stopped) return false
        this.log!.warn({ login: runner.login.id, err: (err as Error).message, retryInMs: delay }, 'Could not record a Signal event; retrying')
        await new Promise(resolve => setTimeout(resolve, delay))
        delay = Math.min(delay * 2, 30_000)
      }
    }
  }

  private learnName(inner: unknown): void {
    const env = (inner as { envelope?: { sourceUuid?: unknown; sourceName?: unknown } } | null)?.envelope
    if (typeof env?.sourceUuid !== 'string') return
    const name = meaningfulName(typeof env.sourceName === 'string' ? env.sourceName : undefined)
    if (name) this.names.set(env.sourceUuid.toLowerCase(), name)
  }

  private async checkDaemon(): Promise<void> {
    if (this.probing) return
    this.probing = true
    const was = this.daemon.reachable
    const url = this.client.daemonUrl
    try {
      const timeoutMs = Math.min(this.opts.timings?.rpcTimeoutMs ?? 5_000, 5_000)
      const { version } = await this.client.call<{ version: string }>('version', {}, { timeoutMs })
      const accounts = (await this.client.call<Array<{ number: string }>>('listAccounts', {}, { timeoutMs })).map(a => a.number)
      this.daemon = { reachable: true, since: was === true ? this.daemon.since : Date.now(), version, accounts, error: '' }
      if (was !== true) {
        this.log?.info({ version, accounts: accounts.length }, was === false
          ? `The signal-cli daemon at ${url} answers again (version ${version}).`
          : `The signal-cli daemon at ${url} answers (version ${version}).`)
        // Streams waiting out a long backoff reconnect now, so their logins are back within seconds.
        for (const r of this.runners.values()) r.stream.retryNow()
      }
    } catch (err) {
      const error = !(err instanceof SignalUnreachableError) ? (err as Error).message
        : err.status !== undefined ? `HTTP ${err.status}` : ((err.cause as { code?: string } | undefined)?.code ?? 'no answer')
      this.daemon = { ...this.daemon, reachable: false, since: was === false ? this.daemon.since : Date.now(), error }
      if (was !== false) {
        this.log?.warn({ error }, `The signal-cli daemon at ${url} does not answer (${error}). Relaying to Signal waits; check that signal-cli runs with \`daemon --http\` and that signal.daemon_url points at it.`)
      }
    } finally {
      this.probing = false
    }
  }

  private async pollAccounts(): Promise<void> {
    if (this.runners.size === 0) return
    let numbers: Set<string>
    try {
      numbers = new Set((await this.client.listAccounts()).map(a => a.number))
    } catch {
      return // daemon down: the stream state already says so
    }
    for (const r of [...this.runners.values()]) {
      if (!numbers.has(r.login.address)) await this.markUnlinked(r.login)
    }
  }

  private async markUnlinked(login: Login): Promise<void> {
    if (this.states.get(login.id) === 'logged_out') return
    const runner = this.runners.get(login.id)
    if (runner) await this.halt(runner)
    this.log?.warn({ login: login.id }, 'Signal relay account is no longer in the daemon (unlinked)')
    // Recorded before anyone is told: a message sent after the notice is then held at once, not tried first.
    await this.setState(login.id, 'logged_out', unlinkedSentence)
    await this.ctx?.notify(login.id, unlinkedSentence).catch(err => this.log?.error({ err }, 'Could not notify about an unlinked Signal login'))
  }

  /** Resolves once the new state is recorded (callers that need it recorded first await it). */
  private async setState(loginId: string, state: ConnectionState, message?: string): Promise<void> {
    if (this.states.get(loginId) === state) return
    this.states.set(loginId, state)
    for (const s of ['connecting', 'connected', 'disconnected', 'logged_out'] as const) this.metrics?.state.set({ login: loginId, state: s }, s === state ? 1 : 0)
    await this.ctx?.reportState(loginId, state, message).catch(err => this.log?.error({ err }, 'Could not record a Signal login state'))
  }
}

/** An event the core can record as it is: nothing to fetch from the daemon first, no group to read. */
function selfContained(c: Converted): boolean {
  return c.media.length === 0 && !c.longText && !c.groupUpdate && c.event.kind !== 'chat_update' && c.event.kind !== 'members'
}

export function toGroupInfo(g: GroupJson): GroupInfo {
  return {
    id: g.id,
    name: g.name ?? '',
    ...(typeof g.description === 'string' ? { topic: g.description } : {}),
    ...(typeof g.messageExpirationTime === 'number' ? { disappearingSeconds: g.messageExpirationTime } : {}),
    memberCount: g.members?.length ?? 0,
    ...(g.groupInviteLink ? { inviteLink: g.groupInviteLink } : {}),
  }
}

/** Stream state and send outcomes, labelled by login id and kind only: never numbers. */
export function signalMetrics(ctx: Pick<NetworkContext, 'metrics'>) {
  const reg = ctx.metrics
  const get = <T>(name: string, make: () => T): T => (reg.getSingleMetric(name) as T | undefined) ?? make()
  return {
    state: get('relay_bridge_signal_stream_state', () => new Gauge({ name: 'relay_bridge_signal_stream_state', help: 'Signal event stream state per login (1 = current state)', labelNames: ['login', 'state'] as const, registers: [reg] })),
    sends: get('relay_bridge_signal_sends_total', () => new Counter({ name: 'relay_bridge_signal_sends_total', help: 'Signal deliveries by kind and outcome (partial = some members missed it)', labelNames: ['kind', 'outcome'] as const, registers: [reg] })),
    events: get('relay_bridge_signal_events_total', () => new Counter({ name: 'relay_bridge_signal_events_total', help: 'Signal events received by outcome', labelNames: ['outcome'] as const, registers: [reg] })),
  }
}
