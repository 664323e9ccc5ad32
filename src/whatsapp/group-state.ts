// A group's subject, description and picture set through the relay account (groupUpdateSubject,
// groupUpdateDescription, updateProfilePicture). In a group whose info only admins may edit (`restrict`), the relay
// must be an admin: that is read from the group's metadata before trying, and a refusal that comes anyway (the cached
// metadata was stale) counts the same.
import { cleanChatText, withinChars } from '../core/chat-text.ts'
import { NotPermitted } from '../core/errors.ts'
import type { MediaStore } from '../core/media.ts'
import type { ChatAvatar, ChatField, ChatUpdateDelivery, ChatValue } from '../core/model.ts'
import { relayIsAdmin } from './membership.ts'
import { statusOf, type GroupCache, type WaPort } from './socket.ts'

/** WhatsApp's limits: a subject of 100 characters (reference §6), a description of 2,048 (the apps' limit). */
export const MAX_SUBJECT = 100
export const MAX_DESCRIPTION = 2048

export function whatsappChatValue(field: ChatField, value: ChatValue): ChatValue {
  if (typeof value !== 'string') return value
  return field === 'name' ? withinChars(cleanChatText('name', value), MAX_SUBJECT) : withinChars(cleanChatText('topic', value), MAX_DESCRIPTION)
}

const notPermitted = () => new NotPermitted('only admins may edit the WhatsApp group’s info, and the relay account is no admin',
  'Make the relay account an admin of the WhatsApp group (or let all members edit the group info), and I will make the change then.')

export async function setGroupState(sock: WaPort, d: ChatUpdateDelivery, deps: { groups: GroupCache; media: MediaStore; ownPictures: Set<string> }): Promise<void> {
  const chat = d.target.chatId
  const meta = await deps.groups.load(sock, chat)
  if (meta.restrict && !relayIsAdmin(meta, sock.user)) throw notPermitted()
  try {
    // The timer is one of the group's settings, which `restrict` also reserves to admins.
    if (d.field === 'timer') await sock.groupToggleEphemeral(chat, Number(d.value))
    else if (d.field === 'name') await sock.groupUpdateSubject(chat, String(d.value))
    else if (d.field === 'topic') await sock.groupUpdateDescription(chat, d.value ? String(d.value) : undefined)
    else {
      // Marked before the call: the notification of the change may arrive before the call returns.
      deps.ownPictures.add(chat)
      if (d.value === null || typeof d.value !== 'object') await sock.removeProfilePicture(chat)
      else await sock.updateProfilePicture(chat, await deps.media.get(d.value.mediaId))
    }
  } catch (err) {
    deps.ownPictures.delete(chat)
    // rc14 fails a refused query with the server's code in `data` (reference §12): 401 not-authorized, 403 forbidden.
    const code = (err as { data?: unknown }).data
    if (code === 401 || /not-authorized/i.test((err as Error).message) || statusOf(err) === 401) {
      deps.groups.forget(chat)
      throw notPermitted()
    }
    throw err
  }
}

/** A group's (or a person's) picture now, fetched from WhatsApp's CDN (null: the group has none). */
export async function currentPicture(sock: Pick<WaPort, 'profilePictureUrl'>, chat: string, media: MediaStore): Promise<ChatAvatar | null> {
  const url = await sock.profilePictureUrl(chat, 'image')
  if (!url) return null
  const res = await fetch(url)
  if (!res.ok) throw new Error(`WhatsApp's CDN answered ${res.status} for a group picture`)
  return { mediaId: await media.put(Buffer.from(await res.arrayBuffer())), mimetype: res.headers.get('content-type')?.split(';')[0] || 'image/jpeg' }
}
