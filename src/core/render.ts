// How relayed messages look on Signal and WhatsApp: the sender's name and network in bold, then the text.
import { Coalescer } from '../db/coalesce.ts'
import type { Queryable } from '../db/types.ts'
import { NETWORK_LABEL, plainText, type AttachmentKind, type MessageContent, type NetworkId, type Person, type RichText } from './model.ts'
import { concat } from './richtext.ts'

export type ReactionPolicy = 'message' | 'emoji' | 'drop'

export interface RenderOptions {
  /** e.g. "{name} ({network}): {message}" */
  template: string
}

function bolded(text: string): RichText {
  const rt = plainText(text)
  // The trailing separator (": ") stays plain, so the name reads as a label.
  const end = text.replace(/[\s:]+$/u, '').length
  if (end > 0) rt.styles.push({ start: 0, length: end, style: 'bold' })
  return rt
}

function fill(part: string, name: string, network: string): string {
  return part.replaceAll('{name}', name).replaceAll('{network}', network)
}

/** "Alice (Signal)": the label a sender gets on the other networks. */
export function senderLabel(sender: Person, name: string, template: string): string {
  const before = template.split('{message}')[0] ?? ''
  return fill(before, name, NETWORK_LABEL[sender.network]).replace(/[\s:]+$/u, '')
}

/** Puts the sender's label in front of a message's text (or its caption). */
export function renderRelayed(content: MessageContent, sender: Person, name: string, opts: RenderOptions): MessageContent {
  const network = NETWORK_LABEL[sender.network]
  if (content.kind === 'emote') {
    const label = senderLabel(sender, name, opts.template)
    return { ...content, kind: 'text', body: concat(plainText('* '), bolded(label), plainText(' '), content.body) }
  }
  const [before = '', after = ''] = opts.template.split('{message}')
  const body = content.body.text.length > 0 || content.attachments.length === 0 ? content.body : plainText('')
  const prefix = content.body.text.length > 0 || content.attachments.length === 0
    ? bolded(fill(before, name, network))
    : bolded(`${fill(before, name, network).replace(/[\s:]+$/u, '')}:`)
  return { ...content, body: concat(prefix, body, plainText(fill(after, name, network))) }
}

/** A reaction from someone the relay speaks for, as a short line (policy "message"). */
export function renderReactionNote(sender: Person, name: string, emoji: string, opts: RenderOptions): MessageContent {
  return {
    kind: 'text',
    body: concat(bolded(senderLabel(sender, name, opts.template)), plainText(` reacted ${emoji}`)),
    attachments: [],
  }
}

/** A short stable tag that tells two people with the same name apart, without revealing any number. */
export function shortTag(id: string): string {
  let h = 2166136261
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 16777619)
  return (h >>> 0).toString(16).padStart(8, '0').slice(0, 4)
}

/**
 * Remembers who has spoken in each portal under which name, so two senders sharing a name on one network
 * are shown as "Alice #4f2a" and "Alice #09c1". Loaded lazily per portal from the message map.
 */
export class SenderNames {
  private readonly portals = new Map<number, Promise<Map<string, Set<string>>>>()
  // A portal's names are read on its first delivery; with many portals starting at once, in one statement.
  private readonly reads: Coalescer<number, Array<{ sender_network: string; sender_id: string; sender_name: string }>>

  constructor(db: Queryable) {
    this.reads = new Coalescer<number, Array<{ sender_network: string; sender_id: string; sender_name: string }>>(async portalIds => {
      const { rows } = await db.query<{ portal_id: number; sender_network: string; sender_id: string; sender_name: string }>(
        `SELECT p.portal_id, r.* FROM unnest($1::bigint[]) AS p(portal_id) CROSS JOIN LATERAL (
           SELECT DISTINCT sender_network, sender_id, sender_name FROM
             (SELECT sender_network, sender_id, sender_name FROM messages WHERE portal_id = p.portal_id ORDER BY id DESC LIMIT 2000) recent) r`,
        [portalIds],
      )
      const byPortal = new Map<number, typeof rows>()
      for (const r of rows) {
        const list = byPortal.get(Number(r.portal_id))
        if (list) list.push(r)
        else byPortal.set(Number(r.portal_id), [r])
      }
      return portalIds.map(id => byPortal.get(id) ?? [])
    })
  }

  private key(network: string, name: string): string {
    return `${network}\u0000${name.trim().toLowerCase()}`
  }

  private load(portalId: number): Promise<Map<string, Set<string>>> {
    let names = this.portals.get(portalId)
    if (!names) {
      // Both networks' deliveries of a portal's first message ask at once: they share one read.
      names = this.reads.add(portalId).then(rows => {
        const map = new Map<string, Set<string>>()
        for (const r of rows) this.add(map, r.sender_network, r.sender_name, r.sender_id)
        return map
      })
      names.catch(() => this.portals.delete(portalId))
      this.portals.set(portalId, names)
    }
    return names
  }

  private add(names: Map<string, Set<string>>, network: string, name: string, id: string): void {
    const k = this.key(network, name)
    let ids = names.get(k)
    if (!ids) names.set(k, (ids = new Set()))
    ids.add(id)
  }

  /** Records the sender and returns the name to show for them. */
  async nameFor(portalId: number, sender: Person): Promise<string> {
    const names = await this.load(portalId)
    this.add(names, sender.network, sender.displayName, sender.id)
    const clash = (names.get(this.key(sender.network, sender.displayName))?.size ?? 0) > 1
    return clash ? `${sender.displayName} #${shortTag(sender.id)}` : sender.displayName
  }
}

/**
 * A view-once photo or video is never copied: a copy in Matrix or in the other group would be a permanent one of what
 * its sender meant to be seen once. Its place is taken by one line, as the sender's emote ("* Dave (WhatsApp) sent a
 * view-once photo; open it on WhatsApp"). signal-cli (`send` viewOnce) and Baileys (`viewOnce` on media) could send
 * it on as view-once to the other group, but Matrix has no such thing, and the relay would hold the only copy the
 * bridge keeps: the line alone, everywhere, is the simpler promise (docs/operators.md).
 */
export function viewOnceContent(kind: AttachmentKind, network: NetworkId): MessageContent {
  const what = kind === 'image' ? 'photo' : kind === 'video' ? 'video' : kind === 'voice' || kind === 'audio' ? 'voice message' : 'message'
  return { kind: 'emote', body: plainText(`sent a view-once ${what}; open it on ${NETWORK_LABEL[network]}`), attachments: [] }
}
