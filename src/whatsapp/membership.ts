// Who is in a WhatsApp group: the relay account's own place (whether it is still a member, and whether it is an
// admin: only admins may revoke other people's messages, reference §6), and the other participants as people of
// the neutral model. A participant entry names someone by LID or by number depending on the group's addressing, so
// both JIDs count; a person is keyed by the stable id of people.ts and never named by their number.
import { jidDecode, type GroupMetadata, type GroupParticipant } from '@whiskeysockets/baileys'
import type { MediaStore } from '../core/media.ts'
import type { GroupMember } from '../core/model.ts'
import { usableName } from './convert.ts'
import { currentPicture } from './group-state.ts'
import { neutralLabel, type People } from './people.ts'
import type { WaPort } from './socket.ts'

/** Up to this many members, linking a group fetches each one's picture too (one query each); the people of a larger
 * group get theirs as they join. */
export const PICTURES_AT_LINK = 100

/** Where members' pictures come from: their profile picture, where their privacy lets the relay see it. */
export interface Pictures {
  sock: Pick<WaPort, 'profilePictureUrl'>
  media: MediaStore
}

const userOf = (jid: string | null | undefined): string | undefined => (jid ? jidDecode(jid)?.user : undefined)

/** Whether a participant entry (from group metadata or group-participants.update) is the relay account. */
export function isSelf(p: Pick<GroupParticipant, 'id' | 'lid' | 'phoneNumber'>, user: WaPort['user']): boolean {
  const own = [userOf(user?.id), userOf(user?.lid)].filter((u): u is string => !!u)
  return [p.id, p.lid, p.phoneNumber].some(j => {
    const u = userOf(j)
    return !!u && own.includes(u)
  })
}

/** Whether the relay account is an admin (or the super admin) of the group. */
export function relayIsAdmin(group: GroupMetadata, user: WaPort['user']): boolean {
  return group.participants.some(p => !!p.admin && isSelf(p, user))
}

/** A participant as a group member (undefined: the relay account itself, or an entry with no usable JID). The name
 * is the one people.ts keeps from their messages (or the contact's own, `notify`), else the neutral label. */
export async function memberOf(p: Pick<GroupParticipant, 'id' | 'lid' | 'phoneNumber' | 'notify' | 'admin'>, people: People, user: WaPort['user'], pictures?: Pictures): Promise<GroupMember | undefined> {
  if (isSelf(p, user)) return undefined
  const person = await people.resolve(p.lid ?? p.id, p.phoneNumber ?? p.id, usableName(p.notify) ?? null)
  if (!person) return undefined
  const name = usableName(person.name)
  // rc14 fails the query (404 item-not-found, 401 not-authorized) for someone with no picture, or who hides it.
  const avatar = pictures ? await currentPicture(pictures.sock, p.id, pictures.media).catch(() => null) : null
  return {
    person: { network: 'whatsapp', id: person.id, displayName: name ?? neutralLabel(person.id), ...(avatar ? { avatar } : {}) },
    admin: !!p.admin, ...(name ? {} : { named: false }),
  }
}

/** Everyone in a group but the relay account. */
export async function membersOf(group: GroupMetadata, people: People, user: WaPort['user'], pictures?: Pictures): Promise<GroupMember[]> {
  const out: GroupMember[] = []
  const withPictures = group.participants.length <= PICTURES_AT_LINK ? pictures : undefined
  for (const p of group.participants) {
    const m = await memberOf(p, people, user, withPictures)
    if (m) out.push(m)
  }
  return out
}
