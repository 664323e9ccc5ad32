// The JSON-RPC methods of the fake signal-cli daemon (signal-cli.md §5, §7). Errors are HTTP 200 with an
// error object; notifications get 201 (decided by the caller when this returns undefined).
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import type { FakeAccount, FakeGroup, RecordedCall } from './signal-daemon.ts'

export class RpcFault extends Error {
  readonly code: number
  readonly data: unknown
  constructor(code: number, message: string, data: unknown = null) {
    super(message)
    this.code = code
    this.data = data
  }
}

export interface RpcState {
  readonly opts: { unknownFields: boolean; linkTimeoutMs: number; attachmentsDir: string }
  readonly accounts: Map<string, FakeAccount>
  readonly unlinked: Map<string, FakeAccount>
  /** Accounts whose whole Signal account `unregister --delete-account` deleted on the server. */
  readonly deletedOnServer: string[]
  /** A registered account signal-cli closed (deleteLocalAccountData refused it): its open streams carry nothing more,
   * and listAccounts leaves it out until a call names it and loads it again. */
  readonly closed: Set<string>
  /** Drops an account from the open event streams (they stay up, keepalives only). */
  dropFromStreams(account: string): void
  readonly groups: Map<string, FakeGroup>
  readonly attachments: Map<string, Buffer>
  readonly stickers: Map<string, Buffer>
  readonly calls: RecordedCall[]
  /** How many calls each HTTP request to /api/v1/rpc carried (1 for a plain request), in arrival order. */
  readonly rpcRequests: number[]
  readonly faults: Map<string, RpcFault[]>
  readonly failingAccounts: Set<string>
  /** Admin deletes sent, and whether receiving clients honour them (only from a group admin). */
  readonly adminDeletes: Array<{ groupId: string; targetAuthor: string; targetTimestamp: number; honoured: boolean }>
  readonly pendingLinks: Map<string, { used: boolean; finish?: (r: FakeAccount | Error) => void }>
  recipientResult(member: { number: string | null; uuid: string }, method: string): string | undefined
  /** What a RATE_LIMIT_FAILURE result says to wait. */
  readonly retryAfterSeconds: number
  nextTimestamp(): number
  notify(): void
  hasStream(account: string): boolean
}

type Params = Record<string, unknown>
const ACCOUNT_FREE = new Set(['version', 'listAccounts', 'startLink', 'finishLink'])
const TYPED: Record<string, string[]> = { finishLink: ['deviceLinkUri', 'deviceName'], receive: ['account', 'timeout', 'maxMessages', 'ignoreAttachments', 'ignoreStories', 'sendReadReceipts'] }

export async function handleRpc(state: RpcState, body: string): Promise<unknown> {
  let req: unknown
  try {
    req = JSON.parse(body)
  } catch {
    return { jsonrpc: '2.0', error: { code: -32700, message: `Unexpected character in ${body.slice(0, 10)}`, data: null }, id: null }
  }
  const request = state.rpcRequests.push(Array.isArray(req) ? req.length : 1) - 1
  if (!Array.isArray(req)) return one(state, req, request)
  // A batch (§3): the calls run concurrently and their answers come in no set order; this fake answers them in
  // reverse, so that a client relying on the order is caught. The reference does not say what a batch of
  // notifications alone gets; as for one notification (201, empty body) and as JSON-RPC 2.0 says, no answer.
  const answers = (await Promise.all(req.map(r => one(state, r, request)))).filter(a => a !== undefined).reverse()
  return answers.length > 0 ? answers : undefined
}

async function one(state: RpcState, req: unknown, request: number): Promise<unknown> {
  const r = req as { method?: unknown; params?: unknown; id?: unknown }
  const isNotification = !('id' in (r as object))
  const id = r.id ?? null
  try {
    if (typeof r.method !== 'string') throw new RpcFault(-32600, 'method field must be set')
    const params = (r.params ?? {}) as Params
    const call: RecordedCall = { method: r.method, params, id, request }
    state.calls.push(call)
    state.notify()
    const fault = state.faults.get(r.method)?.shift()
    if (fault) throw fault
    const result = await dispatch(state, r.method, params)
    call.result = result
    return isNotification ? undefined : { jsonrpc: '2.0', result, id }
  } catch (err) {
    if (isNotification) return undefined
    const e = err instanceof RpcFault ? err : new RpcFault(-32603, `${(err as Error).message} (${(err as Error).name})`)
    return { jsonrpc: '2.0', error: { code: e.code, message: e.message, data: e.data }, id }
  }
}

function accountOf(state: RpcState, p: Params): FakeAccount {
  if (p.account === undefined) {
    if (state.accounts.size === 1) return [...state.accounts.values()][0]!
    throw new RpcFault(-32602, 'Method requires valid account parameter')
  }
  const a = typeof p.account === 'string' ? state.accounts.get(p.account) ?? [...state.accounts.values()].find(x => x.aci === p.account) : undefined
  if (!a) throw new RpcFault(-32602, 'Specified account does not exist')
  state.closed.delete(a.number) // named, a closed account is loaded again (MultiAccountManagerImpl.getManager)
  return a
}

/**
 * `deleteLocalAccountData` is a registration command (DeleteLocalAccountDataCommand, v0.14.x): the daemon opens the
 * account's files itself, closing a loaded account first (SignalJsonRpcCommandHandler), and refuses to delete the data
 * of an account still registered unless `ignoreRegistered` is set. An account it never had is created and deleted at
 * once: `{}` too.
 */
function deleteLocalAccountData(state: RpcState, p: Params): unknown {
  if (typeof p.account !== 'string') throw new RpcFault(-32602, 'Method requires account parameter')
  const registered = state.accounts.get(p.account)
  if (registered) {
    state.dropFromStreams(p.account)
    if (p.ignoreRegistered !== true) {
      state.closed.add(p.account)
      throw new RpcFault(-1, 'Not deleting account, it is still registered. Use --ignore-registered to delete it anyway.')
    }
    state.accounts.delete(p.account)
  }
  state.unlinked.delete(p.account)
  state.closed.delete(p.account)
  return {}
}

/** Timestamps must be JSON numbers: strings end in a ClassCastException (§5). */
function checkTypes(p: Params): void {
  for (const [k, v] of Object.entries(p)) {
    if (/timestamp$/i.test(k) && v !== undefined && typeof v !== 'number') {
      throw new RpcFault(-32603, `class java.lang.String cannot be cast to class java.lang.Long (ClassCastException)`)
    }
    if (/^(mention|mentions|textStyle|textStyles)$/.test(k)) {
      for (const x of [v].flat()) if (typeof x !== 'string') throw new RpcFault(-32603, 'class java.util.LinkedHashMap cannot be cast to class java.lang.String (ClassCastException)')
    }
  }
}

const list = (p: Params, one: string, many: string): unknown[] => [p[one], p[many]].flat().filter(v => v !== undefined)

function group(state: RpcState, account: FakeAccount, groupId: unknown): FakeGroup {
  const g = typeof groupId === 'string' ? state.groups.get(groupId) : undefined
  if (!g) throw new RpcFault(-1, `Group not found: ${String(groupId)}`)
  if (!g.members.some(m => m.uuid === account.aci)) throw new RpcFault(-1, `User is not a member in group: ${g.id}`)
  return g
}

function groupJson(state: RpcState, g: FakeGroup, account: FakeAccount): unknown {
  return {
    id: g.id,
    name: g.name,
    description: g.description,
    isMember: g.members.some(m => m.uuid === account.aci),
    isBlocked: false,
    messageExpirationTime: g.expirationSeconds ?? 0,
    members: g.members.map(m => ({ number: m.number, uuid: m.uuid, isAdmin: g.admins.includes(m.uuid) })),
    pendingMembers: [],
    requestingMembers: [],
    admins: g.members.filter(m => g.admins.includes(m.uuid)).map(m => ({ number: m.number, uuid: m.uuid })),
    // Objects like the members' (the number only where the member shares it).
    banned: (g.banned ?? []).map(uuid => ({ number: null, uuid })),
    permissionAddMember: 'EVERY_MEMBER',
    permissionEditDetails: g.permissionEditDetails ?? 'EVERY_MEMBER',
    permissionSendMessage: 'EVERY_MEMBER',
    groupInviteLink: g.inviteLink,
    ...(state.opts.unknownFields ? { label: null, futureGroupField: true } : {}),
  }
}

/** A send result with one entry per other member; all failed → the error the daemon gives (§5, §7). */
function sendResult(state: RpcState, account: FakeAccount, g: FakeGroup, method: string): unknown {
  const timestamp = state.nextTimestamp()
  const results = g.members
    .filter(m => m.uuid !== account.aci)
    .map(m => {
      const type = state.failingAccounts.has(account.number) ? 'NETWORK_FAILURE' : state.recipientResult(m, method) ?? 'SUCCESS'
      return {
        recipientAddress: { uuid: m.uuid, number: m.number, username: null },
        groupId: g.id,
        type,
        ...(type === 'RATE_LIMIT_FAILURE' ? { retryAfterSeconds: state.retryAfterSeconds } : {}),
        ...(state.opts.unknownFields ? { futureRecipientField: 'x' } : {}),
      }
    })
  const response = { timestamp, results, ...(state.opts.unknownFields ? { futureResultField: { x: 1 } } : {}) }
  if (results.length > 0 && results.every(x => x.type !== 'SUCCESS')) {
    if (results.every(x => x.type === 'IDENTITY_FAILURE')) throw new RpcFault(-4, 'Failed to send message due to untrusted identities', { response })
    if (results.every(x => x.type === 'RATE_LIMIT_FAILURE')) throw new RpcFault(-5, 'Failed to send message due to rate limiting', { response })
    throw new RpcFault(-1, 'Failed to send message', { response })
  }
  return response
}

async function dispatch(state: RpcState, method: string, p: Params): Promise<unknown> {
  const allowed = TYPED[method]
  if (allowed) {
    const bad = Object.keys(p).find(k => !allowed.includes(k))
    if (bad) throw new RpcFault(-32600, `Unrecognized field "${bad}" (class org.asamk.signal.commands.${method}), not marked as ignorable`)
  }
  checkTypes(p)
  if (method === 'deleteLocalAccountData') return deleteLocalAccountData(state, p)
  const account = ACCOUNT_FREE.has(method) ? undefined : accountOf(state, p)
  switch (method) {
    case 'version':
      return { version: '0.14.6' }
    case 'listAccounts':
      return [...state.accounts.values()].filter(a => !state.closed.has(a.number)).map(a => ({ number: a.number }))
    case 'unregister': {
      // UnregisterCommand → AccountHelper.unregister: the server stops delivering to this device (a linked device; the
      // number stays registered on the phone), the account file says `registered: false` and the account is closed:
      // gone from the daemon like an unlinked one (§11.1), its keys still on disk. `deleteAccount` deletes the whole
      // Signal account on the server.
      if (p.deleteAccount === true) state.deletedOnServer.push(account!.number)
      state.accounts.delete(account!.number)
      state.unlinked.set(account!.number, account!)
      state.dropFromStreams(account!.number)
      return {}
    }
    case 'removeDevice':
      // Every account of this daemon is a linked device; ManagerImpl.removeLinkedDevices needs the primary.
      throw new RpcFault(-1, "This command doesn't work on linked devices.")
    case 'send': {
      const g = group(state, account!, p.groupId)
      const attachments = list(p, 'attachment', 'attachments')
      for (const a of attachments) {
        if (typeof a !== 'string' || !/^data:[^;,]+(;filename=[^;,]*)?;base64,/.test(a)) throw new RpcFault(-1, 'Failed to add attachment: file not found')
      }
      const message = typeof p.message === 'string' ? p.message : ''
      if (!message && attachments.length === 0 && !p.sticker) throw new RpcFault(-1, 'Sending empty message is not allowed, either a message, attachment or sticker must be given.')
      if (p.quoteTimestamp !== undefined && p.quoteAuthor === undefined) throw new RpcFault(-1, 'Quote author parameter is missing')
      for (const m of list(p, 'mention', 'mentions')) {
        if (!/^\d+:\d+:.+$/.test(m as string)) throw new RpcFault(-1, `Invalid mention syntax (${String(m)}) expected 'start:length:recipientNumber'`)
      }
      return sendResult(state, account!, g, method)
    }
    case 'sendReaction': {
      const g = group(state, account!, p.groupId)
      if (typeof p.emoji !== 'string' || p.targetTimestamp === undefined) throw new RpcFault(-32603, 'null (NullPointerException)')
      if (p.targetAuthor === undefined) throw new RpcFault(-1, 'No target author given')
      return sendResult(state, account!, g, method)
    }
    case 'remoteDelete': {
      const g = group(state, account!, p.groupId)
      if (p.targetTimestamp === undefined) throw new RpcFault(-32603, 'null (NullPointerException)')
      return sendResult(state, account!, g, method)
    }
    case 'sendAdminDelete': {
      // signal-cli 0.14.0+ (SendAdminDeleteCommand): groups only; sent whatever the sender's role, but receiving
      // clients drop an admin delete from a member who is not an admin (IncomingMessageHandler).
      const ids = list(p, 'groupId', 'groupIds')
      if (ids.length === 0) throw new RpcFault(-1, 'Admin delete requires group IDs')
      if (typeof p.targetAuthor !== 'string' || p.targetTimestamp === undefined) throw new RpcFault(-32603, 'null (NullPointerException)')
      const g = group(state, account!, ids[0])
      state.adminDeletes.push({ groupId: g.id, targetAuthor: p.targetAuthor, targetTimestamp: p.targetTimestamp as number, honoured: g.admins.includes(account!.aci) })
      return sendResult(state, account!, g, method)
    }
    case 'sendTyping':
      return sendResult(state, account!, group(state, account!, p.groupId), method)
    case 'sendReceipt': {
      // SendReceiptCommand: one recipient, the message's author (also for group messages, §5); `read` by default.
      if (typeof p.recipient !== 'string') throw new RpcFault(-1, 'No recipients given')
      if (list(p, 'targetTimestamp', 'targetTimestamps').length === 0) throw new RpcFault(-32603, 'null (NullPointerException)')
      if (p.type !== undefined && p.type !== 'read' && p.type !== 'viewed') throw new RpcFault(-1, `Unknown receipt type: ${String(p.type)}`)
      const known = [...state.groups.values()].flatMap(g => g.members).find(m => m.uuid === p.recipient || m.number === p.recipient)
      const type = known ? state.recipientResult(known, method) ?? 'SUCCESS' : 'UNREGISTERED_FAILURE'
      const entry = { recipientAddress: { uuid: known?.uuid ?? null, number: known?.number ?? null, username: null }, type }
      const response = { timestamp: state.nextTimestamp(), results: [entry] }
      if (type !== 'SUCCESS') throw new RpcFault(-1, 'Failed to send message', { response })
      return response
    }
    case 'listGroups': {
      const ids = list(p, 'groupId', 'groupIds')
      const mine = [...state.groups.values()].filter(g => g.members.some(m => m.uuid === account!.aci))
      if (ids.length === 0) return mine.map(g => groupJson(state, g, account!))
      // signal-cli leaves out ids it does not know (GroupHelper.getGroups filters them); no error.
      return ids.flatMap(id => {
        const g = state.groups.get(id as string)
        return g ? [groupJson(state, g, account!)] : []
      })
    }
    case 'updateGroup': {
      if (p.groupId === undefined) {
        const g: FakeGroup = {
          id: randomBytes(32).toString('base64'),
          name: typeof p.name === 'string' ? p.name : '',
          description: typeof p.description === 'string' ? p.description : '',
          members: [{ number: account!.number, uuid: account!.aci }],
          admins: [account!.aci],
          inviteLink: p.link === 'enabled' || p.link === 'enabled-with-approval' ? `https://signal.group/#${randomBytes(24).toString('base64url')}` : null,
          requiresApproval: p.link === 'enabled-with-approval',
        }
        state.groups.set(g.id, g)
        return { groupId: g.id, timestamp: state.nextTimestamp(), results: [] }
      }
      const g = group(state, account!, p.groupId)
      const details = ['name', 'description', 'avatar', 'expiration'].filter(k => p[k] !== undefined)
      // Who may not edit the details is refused by the Signal server (403); how signal-cli words that is not
      // documented, so the fake answers with the least telling of its errors (an I/O failure, -3).
      if (details.length > 0 && g.permissionEditDetails === 'ONLY_ADMINS' && !g.admins.includes(account!.aci)) {
        throw new RpcFault(-3, 'Failed to send message: [403] Authorization failed!')
      }
      if (p.avatar !== undefined) {
        // A path on the daemon's filesystem (§5): a file that is not there is refused as an invalid attachment.
        const data = typeof p.avatar === 'string' && p.avatar !== '' ? await readFile(p.avatar).catch(() => undefined) : undefined
        if (!data) throw new RpcFault(-1, `Failed to add avatar attachment for group": ${String(p.avatar)} (No such file or directory)`)
        g.avatar = data
      }
      if (typeof p.name === 'string') g.name = p.name
      if (typeof p.description === 'string') g.description = p.description
      if (typeof p.expiration === 'number') g.expirationSeconds = p.expiration
      return sendResult(state, account!, g, method)
    }
    case 'joinGroup': {
      const g = [...state.groups.values()].find(x => x.inviteLink !== null && x.inviteLink === p.uri)
      if (!g) throw new RpcFault(-1, 'Group link is not valid or has been reset')
      if (g.requiresApproval) return { timestamp: state.nextTimestamp(), results: [], groupId: g.id, onlyRequested: true }
      if (!g.members.some(m => m.uuid === account!.aci)) g.members.push({ number: account!.number, uuid: account!.aci })
      return { timestamp: state.nextTimestamp(), results: [], groupId: g.id }
    }
    case 'getAttachment': {
      const id = typeof p.id === 'string' && p.id !== '' && basename(p.id) === p.id ? p.id : undefined
      const dir = state.opts.attachmentsDir
      const data = id === undefined ? undefined : dir ? await readFile(join(dir, id)).catch(() => undefined) : state.attachments.get(id)
      if (!data) throw new RpcFault(-1, `Could not find attachment with ID: ${String(p.id)}`)
      return { data: data.toString('base64') }
    }
    case 'getSticker': {
      const data = state.stickers.get(`${String(p.packId)}:${String(p.stickerId)}`)
      if (!data) throw new RpcFault(-1, 'Sticker not found')
      return { data: data.toString('base64') }
    }
    case 'getUserStatus': {
      return list(p, 'recipient', 'recipients').map(r => {
        const a = [...state.accounts.values()].find(x => x.number === r || x.aci === r)
        return { recipient: r, number: a?.number ?? null, uuid: a?.aci ?? null, isRegistered: a !== undefined }
      })
    }
    case 'startLink': {
      const uri = `sgnl://linkdevice?uuid=${randomBytes(16).toString('base64url')}&pub_key=${randomBytes(33).toString('base64url')}`
      state.pendingLinks.set(uri, { used: false })
      return { deviceLinkUri: uri }
    }
    case 'finishLink': {
      const link = typeof p.deviceLinkUri === 'string' ? state.pendingLinks.get(p.deviceLinkUri) : undefined
      if (!link || link.used) throw new RpcFault(-1, 'Unknown device link uri.')
      link.used = true
      // Blocks until the phone scans the code (scanLink) or the request times out.
      const outcome = await new Promise<FakeAccount | Error>(resolve => {
        const timer = setTimeout(() => resolve(new RpcFault(-1, 'Link request timed out, please try again.')), state.opts.linkTimeoutMs)
        link.finish = r => {
          clearTimeout(timer)
          resolve(r)
        }
        state.notify()
      })
      link.finish = undefined
      if (outcome instanceof Error) throw outcome
      return { number: outcome.number }
    }
    case 'receive': {
      if (state.hasStream(account!.number)) throw new RpcFault(-1, 'Receive command cannot be used if messages are already being received.')
      return []
    }
    case 'trust':
    case 'updateProfile':
    case 'submitRateLimitChallenge':
      return {}
    default:
      throw new RpcFault(-32601, 'Method not implemented')
  }
}
