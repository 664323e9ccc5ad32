// Who is in a Signal group, as listGroups says (§5): members by ACI with their admin flag (0.14 objects; the
// deprecated `admins` list too), and those the group has banned. A group update names no change (§4.10): the
// roster is read whole, and the core works out who came and went. People are keyed by ACI, never by number, and
// named by the profile name the bridge has seen them use, else the neutral label.
import type { GroupMember } from '../core/model.ts'
import { aciOf, neutralLabel } from './convert.ts'
import type { GroupJson } from './types.ts'

type Entry = { number: string | null; uuid: string | null } | string

const aciOfEntry = (m: Entry): string | undefined => aciOf(typeof m === 'string' ? m : m.uuid)

export function rosterOf(g: GroupJson, nameOf: (aci: string) => string | undefined): { members: GroupMember[]; banned: string[] } {
  const admins = new Set((g.admins ?? []).flatMap(m => aciOfEntry(m) ?? []))
  const members: GroupMember[] = []
  for (const m of g.members ?? []) {
    const aci = aciOfEntry(m)
    if (!aci) continue // an entry with a number only cannot be a ghost: ghosts never carry numbers
    const admin = admins.has(aci) || (typeof m !== 'string' && m.isAdmin === true)
    const name = nameOf(aci)
    members.push({ person: { network: 'signal', id: aci, displayName: name ?? neutralLabel(aci) }, admin, ...(name ? {} : { named: false }) })
  }
  return { members, banned: (g.banned ?? []).flatMap(m => aciOfEntry(m) ?? []) }
}
