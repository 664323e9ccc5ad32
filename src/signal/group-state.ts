// A group's name, description and picture set through the relay account (signal-cli `updateGroup`, §5). Whether the
// relay may is read from the group first (permissionEditDetails, and its admin flag): the daemon's answer to a change
// it may not make is not documented, so the bridge does not wait to learn it from an error.
import { cleanChatText, withinChars } from '../core/chat-text.ts'
import { NotPermitted } from '../core/errors.ts'
import type { ChatField, ChatUpdateDelivery, ChatValue } from '../core/model.ts'
import type { Login } from '../core/network.ts'
import type { SignalClient } from './client.ts'
import type { GroupJson } from './types.ts'

/** Signal's limits: a group name of 32 characters (§8), a description of 480 (the apps' limit). */
export const MAX_GROUP_NAME = 32
export const MAX_GROUP_DESCRIPTION = 480

export function signalChatValue(field: ChatField, value: ChatValue): ChatValue {
  if (typeof value !== 'string') return value
  return field === 'name' ? withinChars(cleanChatText('name', value), MAX_GROUP_NAME) : withinChars(cleanChatText('topic', value), MAX_GROUP_DESCRIPTION)
}

/** Whether a member entry (0.14 objects, older plain strings) is the relay account. */
export function isRelay(login: Login, m: { number: string | null; uuid: string | null } | string): boolean {
  return typeof m === 'string' ? m === login.address || m === login.personId : m.uuid === login.personId || m.number === login.address
}

/** Whether the relay account is an admin of the group (members[].isAdmin in 0.14, admins before). */
export function relayIsAdmin(g: GroupJson, login: Login): boolean {
  return (g.members ?? []).some(m => typeof m !== 'string' && m.isAdmin === true && isRelay(login, m)) || (g.admins ?? []).some(m => isRelay(login, m))
}

export interface GroupStateDeps {
  client: SignalClient
  /** The picture as a file the daemon can read: its path as the daemon sees it. */
  avatarPath(value: Exclude<ChatValue, string | null>): Promise<string>
}

/** The `updateGroup` parameters for a change (undefined: nothing Signal can do, as removing a picture); NotPermitted
 * when only admins may edit the group's details and the relay is none. */
export async function updateGroupParams(d: ChatUpdateDelivery, login: Login, deps: GroupStateDeps): Promise<Record<string, unknown> | undefined> {
  if (d.field === 'avatar' && (d.value === null || typeof d.value === 'string')) return undefined // signal-cli cannot remove one
  const groupId = d.target.chatId
  const [g] = await deps.client.call<GroupJson[]>('listGroups', { account: login.address, groupId })
  if (g && g.permissionEditDetails === 'ONLY_ADMINS' && !relayIsAdmin(g, login)) {
    throw new NotPermitted('only admins may edit the Signal group’s details, and the relay account is no admin',
      'Make the relay account an admin of the Signal group (or let every member edit the group details), and I will make the change then.')
  }
  const change: Record<string, unknown> =
    d.field === 'timer' ? { expiration: Number(d.value) }
    : d.field === 'name' ? { name: d.value }
    : d.field === 'topic' ? { description: d.value }
    : { avatar: await deps.avatarPath(d.value as Exclude<ChatValue, string | null>) }
  return { account: login.address, groupId, ...change }
}
