// The relay account's own place in a WhatsApp group: whether it is still a member, and whether it is an
// admin (only admins may revoke other people's messages, reference §6). A participant entry names the
// account by LID or by number depending on the group's addressing, so both of the socket's own JIDs count.
import { jidDecode, type GroupMetadata, type GroupParticipant } from '@whiskeysockets/baileys'
import type { WaPort } from './socket.ts'

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
