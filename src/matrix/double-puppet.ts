// Double puppeting: the bridge posts as a local Matrix user (through the second registration's token) what that
// person typed on their own Signal or WhatsApp phone. Those posts come back to the bridge as the person's events, and
// must never be taken for something they wrote in Matrix: each carries this mark, as the mautrix bridges mark theirs.
import type { MatrixEvent } from './inbox.ts'

export const DOUBLE_PUPPET_KEY = 'fi.mau.double_puppet_source'

/** Whether the bridge itself posted this event as a person (its mark names the bridge's double-puppet id). */
export function isPuppetEcho(ev: Pick<MatrixEvent, 'content'>, source: string | undefined): boolean {
  return source !== undefined && ev.content?.[DOUBLE_PUPPET_KEY] === source
}
