// People's own (personal) logins: the one place that decides "who is this sender" for what arrives from Signal and
// WhatsApp, and "which login sends this copy" for what goes there. Adapters only carry the decisions out.
import type { SqlLoginStore } from './logins.ts'
import { NETWORK_LABEL, type Person, type RemoteNetworkId } from './model.ts'
import type { Login } from './network.ts'

/** How long a personal login that could not post in a chat is left alone there before it is tried again. */
export const UNUSABLE_FOR_MS = 10 * 60_000

/** Why a personal login did not send: logged out (or unlinked), or unable to post in that chat. */
export type Why = 'logged_out' | 'cannot_post'

export interface OwnLoginsOptions {
  logins: SqlLoginStore
  /** The person's display name in a portal's room (their Matrix name, as relayed messages show it). */
  matrixName(roomId: string, mxid: string): Promise<string>
  now?: () => number
}

export class OwnLogins {
  private readonly opts: OwnLoginsOptions
  /** `login \0 chat` → until when the login is not tried there. */
  private readonly unusable = new Map<string, number>()
  /** `login \0 room`: the person has been told that their messages go through the relay there. */
  private readonly told = new Set<string>()

  constructor(opts: OwnLoginsOptions) {
    this.opts = opts
  }

  private get now(): number {
    return (this.opts.now ?? Date.now)()
  }

  /**
   * Who sent an event that arrived from a network: the account's owner, as their Matrix user, when the account is
   * someone's personal login; else the network's own person, unchanged. One person, not three.
   */
  async identify(sender: Person, roomId: string): Promise<Person> {
    if (sender.network === 'matrix') return sender
    const own = await this.opts.logins.personalByPerson(sender.network, sender.id)
    if (!own) return sender
    return { network: 'matrix', id: own.ownerMxid, displayName: await this.opts.matrixName(roomId, own.ownerMxid) }
  }

  /**
   * Whose login a Matrix person's message goes out through in a chat: `via` their personal login there, as
   * themselves; else the relay, with `fallback` naming the personal login that cannot post now (logged out, or
   * found unable to post in that chat lately), so that they are told. Undefined: they have no login there.
   */
  async speaking(sender: Person, network: RemoteNetworkId, chatId: string): Promise<{ via: Login } | { fallback: Login; why: Why } | undefined> {
    if (sender.network !== 'matrix') return undefined
    const own = await this.opts.logins.personalOf(network, sender.id)
    if (!own) return undefined
    if (own.state === 'logged_out') return { fallback: own, why: 'logged_out' }
    const until = this.unusable.get(this.key(own.id, chatId))
    if (until !== undefined && until > this.now) return { fallback: own, why: 'cannot_post' }
    return { via: own }
  }

  /** The login that wrote a copy (by its author on the network), when it is one of the bridge's. */
  author(network: RemoteNetworkId, authorId: string): Promise<Login | undefined> {
    return this.opts.logins.byPerson(network, authorId)
  }

  /** The personal login could not post in the chat: leave it alone there for a while. */
  failed(own: Login, chatId: string): void {
    this.unusable.set(this.key(own.id, chatId), this.now + UNUSABLE_FOR_MS)
  }

  /** It posted there: it is usable again, and a later fallback is worth a new notice. */
  sent(own: Login, chatId: string, roomId: string): void {
    this.unusable.delete(this.key(own.id, chatId))
    this.told.delete(this.key(own.id, roomId))
  }

  /**
   * The sentence to post once in the room when a person's message went through the relay although they have their
   * own login on that network; undefined when they were told already.
   */
  notice(own: Login, roomId: string, name: string, why: Why): string | undefined {
    const key = this.key(own.id, roomId)
    if (this.told.has(key)) return undefined
    this.told.add(key)
    const network = NETWORK_LABEL[own.network]
    const reason = why === 'logged_out'
      ? `is logged out of the bridge (link it again with \`login ${own.network} personal\` in a direct chat with me)`
      : `cannot post in the ${network} group (it is not a member there, was removed, or is banned)`
    return `${name}: your messages reach ${network} through the room's relay, under your name, because your own ${network} account (${own.id}) ${reason}.`
  }

  private key(a: string, b: string): string {
    return `${a}\u0000${b}`
  }
}
