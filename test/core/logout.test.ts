// `logout` deletes a login for good (issue 15, item 1): after it, nothing of the login is left in the bridge's
// database or its data directory, on either network, and signal-cli no longer holds the account's keys.
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { Db } from '../../src/db/types.ts'
import { groupText } from '../fakes/signal-envelopes.ts'
import { ALICE } from '../support/bridge.ts'
import { DB_KINDS } from '../support/db.ts'
import { SIG_BOB, SIG_RELAY, WA_DAVE, bridgedRoom, realScenario, waitForNotice, type RealScenario } from '../support/networks.ts'
import { content, settled } from '../support/relay.ts'

// The same picture sent on both networks: one file in the content-addressed store, brought by both logins.
const PNG = Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010806000000', 'hex')
const SIGNAL_ONLY = Buffer.concat([PNG, Buffer.from('signal only')])
const WHATSAPP_ONLY = Buffer.concat([PNG, Buffer.from('whatsapp only')])

/** Every row of every table of the bridge's schema whose text holds `needle`, as `table: row`. */
async function rowsHolding(db: Db, needle: string): Promise<string[]> {
  const { rows: tables } = await db.query<{ name: string }>(
    `SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`)
  const found: string[] = []
  for (const { name } of tables) {
    const { rows } = await db.query<{ row: string }>(`SELECT x::text AS row FROM "${name}" x WHERE strpos(x::text, $1) > 0`, [needle])
    found.push(...rows.map(r => `${name}: ${r.row}`))
  }
  return found
}

describe.each(DB_KINDS)('logout leaves nothing behind, on %s', kind => {
  let s: RealScenario
  afterEach(async () => s?.stop())

  const mediaFiles = async (): Promise<string[]> => (await readdir(join(s.config.data_dir, 'media')).catch(() => [] as string[])).sort()

  it('after logout of the Signal and the WhatsApp login no row names them, their media files are gone (a file the other still brought stays until it goes too), and signal-cli holds no keys', async () => {
    s = await realScenario(kind)
    const { room, dm, signalGroup, whatsappGroup, signalLogin, whatsappLogin } = await bridgedRoom(s, { signal: true, whatsapp: true })
    const signal = (await s.bridge.logins.get(signalLogin!))!
    const whatsapp = (await s.bridge.logins.get(whatsappLogin!))!
    // Pictures arrive through each login: one only on Signal, one only on WhatsApp, one on both.
    s.daemon.attachments.set('only-signal', SIGNAL_ONLY)
    s.daemon.attachments.set('both', PNG)
    for (const id of ['only-signal', 'both']) {
      s.daemon.push(SIG_RELAY.number, groupText(SIG_BOB, signalGroup!, '', { attachments: [{ id, contentType: 'image/png', filename: `${id}.png` }] }))
    }
    for (const bytes of [WHATSAPP_ONLY, PNG]) {
      const media = await s.wa.uploadMedia(bytes, 'image')
      s.wa.deliver({ chat: whatsappGroup!, from: WA_DAVE, pushName: 'Dave', message: { imageMessage: { ...media, mimetype: 'image/png', width: 1, height: 1 } } })
    }
    await s.hs.waitFor(() => s.hs.timeline(room).filter(e => content(e).msgtype === 'm.image').length === 4, { what: 'the four pictures in the room' })
    await settled(s)
    expect(await mediaFiles()).toHaveLength(3)

    // Rows a login leaves: its own, its WhatsApp keys, the messages it kept for quoting (with their copies), its
    // phone's sightings.
    expect(await rowsHolding(s.db, whatsapp.id)).not.toEqual([])
    expect((await rowsHolding(s.db, whatsapp.id)).filter(r => r.startsWith('message_copies:'))).not.toEqual([])
    await s.hs.sendMessage(ALICE, dm, `logout ${signal.id}`)
    await waitForNotice(s, dm, new RegExp(`^Logged out ${signal.id}`))
    expect(s.daemon.hasLocalData(SIG_RELAY.number)).toBe(false)
    // The WhatsApp login still holds the picture both brought.
    expect(await mediaFiles()).toHaveLength(2)
    await s.hs.sendMessage(ALICE, dm, `logout ${whatsapp.id}`)
    await waitForNotice(s, dm, new RegExp(`^Logged out ${whatsapp.id}`))
    expect(await mediaFiles()).toEqual([])

    for (const login of [signal, whatsapp]) {
      // The `logout` command itself, as typed in the direct chat, is kept a while to recognise a redelivery.
      expect((await rowsHolding(s.db, login.id)).filter(r => !r.startsWith('inbox:'))).toEqual([])
      expect(await rowsHolding(s.db, login.address)).toEqual([])
    }
    const { rows } = await s.db.query<{ n: number }>(`SELECT (SELECT count(*) FROM wa_auth) + (SELECT count(*) FROM wa_messages) + (SELECT count(*) FROM wa_phone) + (SELECT count(*) FROM login_media)
      + (SELECT count(*) FROM message_copies WHERE extra ? 'message') AS n`)
    expect(Number(rows[0]!.n)).toBe(0)
  })
})
