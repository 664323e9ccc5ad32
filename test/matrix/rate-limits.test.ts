// Homeserver rate limits: a registration with `rate_limited: true` (an operator's edit; homeservers other than
// Synapse ignore the flag anyway) puts the ghosts and the bot under Synapse's per-user limits. A 429 is the
// homeserver pacing the bridge, not a failure: every message arrives, once, in order, whatever form the wait
// takes (retry_after_ms in the body, Retry-After in seconds, or both), and a ghost's profile, join and media
// upload wait their turn like its messages.
import { afterEach, describe, expect, it } from 'vitest'
import type { RateLimitOptions } from '../fakes/homeserver/rate-limit.ts'
import { bridgedRoom, scenario, type Scenario } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { bodyOf, ghostEvents, mediaStore, settled } from '../support/relay.ts'

const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489', 'hex')

describe.each(DB_KINDS)('homeserver rate limits on %s', kind => {
  let s: Scenario | undefined
  afterEach(async () => {
    await s?.stop()
    s = undefined
  })

  /** A bridged room on a homeserver whose registration the operator switched to rate_limited: true. */
  async function limited(rateLimits: RateLimitOptions) {
    s = await scenario(kind, { homeserver: { rateLimits } })
    s.hs.registration.rate_limited = true
    return { s, ...await bridgedRoom(s) }
  }
  const messagesIn = (sc: Scenario, room: string) => ghostEvents(sc, room).filter(e => e.type === 'm.room.message')

  it('500 messages from both networks into one portal under Synapse\'s message limit: 500 delivered, none lost, none twice, in order', async () => {
    const { s, room, sg, wg } = await limited({ message: { perSecond: 50, burstCount: 10 }, retryAfter: 'both' })
    const people = [
      { net: s.signal, group: sg.id, who: { id: 'aci-bob', name: 'Bob' } },
      { net: s.whatsapp, group: wg.id, who: { id: 'wa-dave', name: 'Dave' } },
      { net: s.signal, group: sg.id, who: { id: 'aci-carol', name: 'Carol' } },
      { net: s.whatsapp, group: wg.id, who: { id: 'wa-erin', name: 'Erin' } },
    ]
    // Every ghost's counter is full from the start, and each person sends 25 in a row, more than the burst: the
    // limit bites at the first message of each and again within the runs.
    for (const ghost of ['@signal_aci-bob', '@whatsapp_wa-dave', '@signal_aci-carol', '@whatsapp_wa-erin']) s.hs.limiter!.saturate(`${ghost}:example.org`, 'message')
    const sent: string[] = []
    for (let i = 0; i < 500; i++) {
      const p = people[Math.floor(i / 25) % people.length]!
      const text = `m${i} from ${p.who.name}`
      await p.net.say(p.group, p.who, text)
      sent.push(text)
    }
    await s.hs.waitFor(() => messagesIn(s, room).length >= 500, { what: '500 messages in the portal' })
    await settled(s)
    const arrived = messagesIn(s, room).map(bodyOf)
    const lost = sent.filter(t => !arrived.includes(t))
    const duplicated = arrived.length - new Set(arrived).size
    const refusals = s.hs.limiter!.refusals.length
    console.log(`rate-limited portal (${kind}): sent ${sent.length}, delivered ${new Set(arrived).size}, lost ${lost.length}, duplicated ${duplicated}, 429 answers ${refusals}`)
    expect({ lost: lost.length, duplicated }).toEqual({ lost: 0, duplicated: 0 })
    expect(arrived).toEqual(sent)
    expect(refusals).toBeGreaterThanOrEqual(4)
    expect(s.botNotices(room).filter(n => n.startsWith('⚠️'))).toEqual([])
  })

  it('a homeserver that gives the wait only as a Retry-After header (whole seconds) is honoured too: all arrive, in order', async () => {
    const { s, room, sg } = await limited({ message: { perSecond: 50, burstCount: 10 }, retryAfter: 'header' })
    s.hs.limiter!.saturate('@signal_aci-bob:example.org', 'message')
    const sent = Array.from({ length: 25 }, (_, i) => `h${i}`)
    for (const text of sent) await s.signal.say(sg.id, { id: 'aci-bob', name: 'Bob' }, text)
    await s.hs.waitFor(() => messagesIn(s, room).length >= 25, { what: '25 messages in the portal' })
    await settled(s)
    expect(messagesIn(s, room).map(bodyOf)).toEqual(sent)
    // Each retry came no sooner than the header said (whole seconds): a lower bound, robust however slow the run.
    const ghost = '@signal_aci-bob:example.org'
    const refusals = s.hs.limiter!.refusals.filter(r => r.user === ghost && r.kind === 'message')
    const counted = s.hs.calls.filter(c => c.user === ghost && (c.path.includes('/send/') || c.path.includes('/profile/')))
    const limitedCalls = counted.filter(c => c.status === 429)
    expect(limitedCalls.length).toBe(refusals.length)
    expect(refusals.length).toBeGreaterThan(0)
    for (const [i, c] of limitedCalls.entries()) {
      const next = counted.find(n => n.at > c.at && n !== c)
      if (next) expect(next.at).toBeGreaterThanOrEqual(c.at + 1000 * Math.ceil(refusals[i]!.retryAfterMs / 1000))
    }
  })

  it('a new ghost whose profile change, join, media upload and send are each refused with 429 waits and retries each: the picture arrives', async () => {
    // Four refusals on one delivery: as many as the scenario's outbox allows attempts.
    const { s, room, wg } = await limited({ message: { perSecond: 4, burstCount: 20 }, join: { perSecond: 4, burstCount: 5 }, media: { perSecond: 4, burstCount: 5 }, retryAfter: 'both' })
    const ghost = '@whatsapp_wa-dave:example.org'
    s.hs.limiter!.saturate(ghost, 'message', 2)
    s.hs.limiter!.saturate(ghost, 'join')
    s.hs.limiter!.saturate(ghost, 'media')
    const mediaId = await mediaStore(s).put(PNG)
    await s.whatsapp.inbound({
      kind: 'message', chat: { network: 'whatsapp', id: wg.id }, sender: { network: 'whatsapp', id: 'wa-dave', displayName: 'Dave' },
      remoteId: 'wa-picture-1', timestamp: Date.now(),
      content: { kind: 'text', body: { text: '', styles: [], links: [], mentions: [] }, attachments: [{ kind: 'image', mimetype: 'image/png', filename: 'photo.png', size: PNG.length, mediaId }] },
    })
    // The picture, or the notice that it was given up on (which must not come).
    await s.hs.waitFor(() => s.hs.timeline(room).some(e => e.sender === ghost && e.type === 'm.room.message') || s.botNotices(room).some(n => n.startsWith('⚠️')), { what: 'Dave\'s picture' })
    expect(s.botNotices(room).filter(n => n.startsWith('⚠️'))).toEqual([])
    const picture = s.hs.timeline(room).find(e => e.sender === ghost && e.type === 'm.room.message')!
    expect(picture.content).toMatchObject({ msgtype: 'm.image', body: 'photo.png' })
    expect(s.hs.media(String(picture.content['url']))?.data).toEqual(PNG)
    expect(s.hs.profile(ghost)?.displayname).toBe('Dave (WhatsApp)')
    // Each kind was refused (a join can be twice: the first try after the wait is refused for want of an
    // invitation, and counts, so the join right after the bot's invitation waits again).
    const refused = s.hs.limiter!.refusals.filter(r => r.user === ghost).map(r => r.kind)
    expect(new Set(refused)).toEqual(new Set(['message', 'join', 'media']))
    expect(refused.filter(k => k === 'message')).toHaveLength(2)
    await settled(s)
    expect(s.botNotices(room).filter(n => n.startsWith('⚠️'))).toEqual([])
  })
})
