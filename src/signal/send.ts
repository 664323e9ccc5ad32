// Delivering one neutral Delivery through a relay account, and turning daemon answers into DeliveryErrors
// (signal-cli.md §5 send result, §7 error codes, §8 windows).
import type { Logger } from 'pino'
import type { Login } from '../core/network.ts'
import type { CopyRef, Delivery, SendResult } from '../core/model.ts'
import { plainText } from '../core/model.ts'
import { concat } from '../core/richtext.ts'
import { DeliveryError, NotPermitted } from '../core/errors.ts'
import type { MediaStore } from '../core/media.ts'
import { isAccountGone, SignalRpcError, SignalUnreachableError, type SignalClient } from './client.ts'
import type { GroupJson, SendResultJson } from './types.ts'
import { attachmentUri, parseRemoteId, renderParts, renderWhole, type SignalText } from './render.ts'
import { relayIsAdmin, updateGroupParams, type GroupStateDeps } from './group-state.ts'

export const EDIT_WINDOW_MS = 24 * 3600_000
export const DELETE_WINDOW_MS = 24 * 3600_000
export const MAX_EDITS = 10
/** Put before a late edit that goes out as a new message quoting the original (Signal refuses it as an edit). */
export const EDIT_MARKER = '✏️ '

export type SendOutcome = 'ok' | 'partial' | 'transient' | 'permanent' | 'hold'

export interface SendDeps {
  client: SignalClient
  media: MediaStore
  log: Logger
  /** The relay login for a delivery; undefined when the portal has none on Signal. */
  login(loginId: string | undefined): Promise<Login | undefined>
  /** The daemon no longer knows the account (-32602): mark the login logged out. */
  onAccountGone(login: Login): Promise<void>
  onOutcome?(kind: Delivery['kind'], outcome: SendOutcome): void
  now?: () => number
  avatarPath: GroupStateDeps['avatarPath']
}

export async function sendDelivery(delivery: Delivery, deps: SendDeps): Promise<SendResult> {
  const login = await deps.login(delivery.target.loginId)
  if (!login) {
    throw new DeliveryError('hold', 'This room has no Signal relay account; an admin can set one with `!relay set signal`.')
  }
  if (login.state === 'logged_out') {
    throw new DeliveryError('hold', 'The Signal relay account is unlinked; its owner can re-link it with `!relay login signal`.')
  }
  try {
    const result = await dispatch(delivery, login, deps)
    deps.onOutcome?.(delivery.kind, 'ok')
    return result
  } catch (err) {
    if (err instanceof NotPermitted) throw err
    const mapped = toDeliveryError(err)
    deps.onOutcome?.(delivery.kind, mapped.disposition)
    if (isAccountGone(err)) await deps.onAccountGone(login)
    deps.log.warn({ kind: delivery.kind, disposition: mapped.disposition, code: (err as SignalRpcError).code }, 'Signal send failed')
    throw mapped
  }
}

async function dispatch(delivery: Delivery, login: Login, deps: SendDeps): Promise<SendResult> {
  const now = deps.now?.() ?? Date.now()
  const base = { account: login.address, groupId: delivery.target.chatId }
  switch (delivery.kind) {
    case 'message': {
      const parts = renderParts(delivery.content.body, delivery.content.location)
      const attachments = await Promise.all(delivery.content.attachments.map(a => attachmentUri(a, deps.media)))
      const quote = quoteOf(delivery.replyTo)
      return sendParts(parts, { ...base, ...quote, ...(attachments.length ? { attachments } : {}) }, login, deps)
    }
    case 'edit': {
      const of = parseRemoteId(delivery.of.remoteId)
      const tooLate = now - delivery.original.sentAt > EDIT_WINDOW_MS || delivery.editCount >= MAX_EDITS
      // Clients apply an edit only from the original's author: another account's edit would be dropped too.
      const notItsOwn = delivery.original.authorId !== login.personId
      if (!of || tooLate || notItsOwn) {
        // Receiving clients drop late edits silently (§8): send a new message quoting the original instead.
        const body = concat(plainText(EDIT_MARKER), delivery.content.body)
        return sendParts(renderParts(body, delivery.content.location), { ...base, ...quoteOf(delivery.original) }, login, deps)
      }
      // The whole new text goes as one edit; signal-cli moves text past 2,000 bytes into a long-text attachment.
      const text = renderWhole(delivery.content.body, delivery.content.location)
      if (!text) throw new DeliveryError('permanent', 'Signal cannot edit a message into an empty one.')
      // The latest revision's timestamp: clients ignore an edit aimed at an older one (§4.3).
      const res = await call(deps, 'send', { ...base, ...textParams(text), editTimestamp: of.timestamp })
      return resultOf(res, login)
    }
    case 'delete': {
      const of = parseRemoteId(delivery.of.remoteId)
      if (!of) throw new DeliveryError('permanent', 'The message to delete has no usable Signal id.')
      if (now - delivery.of.sentAt > DELETE_WINDOW_MS) {
        throw new DeliveryError('permanent', 'Signal only allows deleting a message for everyone within 24 hours, so the copy on Signal stays.')
      }
      if (delivery.of.authorId === login.personId) {
        await call(deps, 'remoteDelete', { ...base, targetTimestamp: of.timestamp })
        return {}
      }
      // Someone else's message: only a group admin may delete it (signal-cli 0.14's sendAdminDelete), and clients
      // drop an admin delete from anyone else without a word, so decide from the group before sending.
      if (!(await isGroupAdmin(deps, login, delivery.target.chatId))) {
        throw new DeliveryError('permanent', "Signal lets only group admins delete other people's messages, and the relay account is not an admin of this Signal group, so the message stays there. A Signal group admin can delete it, or make the relay account an admin.", { reason: 'm.no_permission' })
      }
      await call(deps, 'sendAdminDelete', { ...base, targetAuthor: of.aci, targetTimestamp: of.timestamp })
      return { notice: 'The relay account deleted this message for everyone in the Signal group, as a group admin.' }
    }
    case 'reaction': {
      const of = parseRemoteId(delivery.of.remoteId)
      if (!of) throw new DeliveryError('permanent', 'The message reacted to has no usable Signal id.')
      const res = await call(deps, 'sendReaction', {
        ...base,
        emoji: delivery.emoji,
        targetAuthor: delivery.of.authorId,
        targetTimestamp: of.timestamp,
        remove: delivery.removed,
      })
      return resultOf(res, login)
    }
    case 'chat_update': {
      const params = await updateGroupParams(delivery, login, deps)
      if (params) await call(deps, 'updateGroup', params)
      return {}
    }
  }
}

/** Whether the relay account is an admin of the group, from listGroups (members[].isAdmin in 0.14, admins before). */
async function isGroupAdmin(deps: SendDeps, login: Login, groupId: string): Promise<boolean> {
  const [g] = await deps.client.call<GroupJson[]>('listGroups', { account: login.address, groupId })
  return !!g && relayIsAdmin(g, login)
}

function quoteOf(ref: CopyRef | undefined): Record<string, unknown> {
  const id = ref && parseRemoteId(ref.remoteId)
  if (!ref || !id) return {}
  return { quoteTimestamp: id.timestamp, quoteAuthor: ref.authorId || id.aci }
}

function textParams(t: SignalText): Record<string, unknown> {
  return {
    message: t.message,
    ...(t.textStyle.length ? { textStyle: t.textStyle } : {}),
    ...(t.mention.length ? { mention: t.mention } : {}),
  }
}

async function sendParts(parts: SignalText[], first: Record<string, unknown>, login: Login, deps: SendDeps): Promise<SendResult> {
  if (parts.length === 0 && !first.attachments) return {}
  const { attachments, quoteTimestamp, quoteAuthor, ...common } = first
  let firstResult: SendResult | undefined
  const all = parts.length ? parts : [undefined]
  for (const [i, part] of all.entries()) {
    const params = {
      ...common,
      ...(part ? textParams(part) : {}),
      // The reply and the files go with the first part, so the quote and caption sit together.
      ...(i === 0 ? { ...(attachments ? { attachments } : {}), ...(quoteTimestamp ? { quoteTimestamp, quoteAuthor } : {}) } : {}),
    }
    const res = resultOf(await call(deps, 'send', params), login)
    firstResult ??= res
  }
  return firstResult ?? {}
}

async function call(deps: SendDeps, method: string, params: Record<string, unknown>): Promise<SendResultJson> {
  const res = await deps.client.call<SendResultJson>(method, params)
  const results = res.results ?? []
  const failed = results.filter(r => r.type !== 'SUCCESS')
  if (results.length > 0 && failed.length === results.length) {
    // The daemon normally answers this case with an error (§7); a result carrying it is handled the same.
    throw new SignalRpcError(method, failed.every(r => r.type === 'RATE_LIMIT_FAILURE') ? -5 : -3, 'every recipient failed', { response: res })
  }
  if (failed.length > 0) {
    // Partial failure is not an error (§5): some members got it. Counted, never retried (that would duplicate).
    deps.onOutcome?.('message', 'partial')
    deps.log.info({ method, failed: failed.length, recipients: results.length, types: [...new Set(failed.map(f => f.type))] }, 'Signal send reached only some group members')
  }
  return res
}

function resultOf(res: SendResultJson, login: Login): SendResult {
  return { remoteId: `${login.personId}:${res.timestamp}`, authorId: login.personId, sentAt: res.timestamp }
}

/** What each daemon answer means for the outbox (§7, §11.3). */
export function toDeliveryError(err: unknown): DeliveryError {
  if (err instanceof DeliveryError) return err
  if (err instanceof SignalUnreachableError) {
    return new DeliveryError('transient', 'The Signal daemon is unreachable; the bridge will retry.', { cause: err, internal: err.message })
  }
  if (!(err instanceof SignalRpcError)) {
    return new DeliveryError('transient', 'The bridge hit an unexpected error sending to Signal and will retry.', { cause: err })
  }
  const internal = err.message
  const msg = err.rpcMessage
  switch (err.code) {
    case -32602:
      return new DeliveryError('hold', 'The Signal relay account is no longer linked; its owner can re-link it with `!relay login signal`.', { cause: err, internal })
    case -5: {
      const secs = err.retryAfterSeconds
      return new DeliveryError('transient', 'Signal is rate-limiting the relay account; the bridge will retry later.', {
        cause: err,
        internal,
        ...(secs !== undefined ? { retryAfterMs: secs * 1000 } : {}),
      })
    }
    case -4:
      return new DeliveryError(
        'permanent',
        "Signal refused the message because a member's safety number changed; the operator should run signal-cli with `--trust-new-identities always` or trust the new identity.",
        { cause: err, internal },
      )
    case -3:
    case -32603:
      return new DeliveryError('transient', 'Signal could not take the message just now; the bridge will retry.', { cause: err, internal })
    case -1: {
      if (/Group not found|Invalid group id/i.test(msg)) {
        return new DeliveryError('permanent', 'The Signal group no longer exists for the relay account; link another with `!relay link signal <group>`.', { cause: err, internal, loginUnusable: true })
      }
      if (/not a member|not allowed to send/i.test(msg)) {
        return new DeliveryError('permanent', 'The Signal relay account is not a member of the group (or may not post there); add it back, or re-link with `!relay link signal <group>`.', { cause: err, internal, loginUnusable: true })
      }
      // Before an unlink is noticed every recipient fails as NETWORK_FAILURE (§11.1): retry rather than give up.
      const types = (err.response?.results ?? []).map(r => r.type)
      if (types.length > 0 && types.every(t => t === 'NETWORK_FAILURE')) {
        return new DeliveryError('transient', 'Signal could not reach the group members; the bridge will retry.', { cause: err, internal })
      }
      return new DeliveryError('permanent', 'Signal refused the message as invalid.', { cause: err, internal })
    }
    default:
      return new DeliveryError('permanent', 'Signal refused the message.', { cause: err, internal })
  }
}
