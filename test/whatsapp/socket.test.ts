// The adapter's socket slice must stay satisfiable by Baileys' real socket and by the fake.
import type { WASocket } from '@whiskeysockets/baileys'
import { describe, expectTypeOf, it } from 'vitest'
import { ignoreJid, type WaPort } from '../../src/whatsapp/socket.ts'
import type { FakeWaSocket } from '../fakes/whatsapp-socket.ts'

describe('the WaPort slice', () => {
  it('is satisfied by the real WASocket and by the fake', () => {
    expectTypeOf<WASocket>().toExtend<WaPort>()
    expectTypeOf<FakeWaSocket>().toExtend<WaPort>()
  })
  it('decrypts every group and the own chat, and ignores broadcasts, newsletters and other people', () => {
    const ignore = ignoreJid(() => ['15550100000', '201000000000001'])
    expectTypeOf(ignore).returns.toEqualTypeOf<boolean>()
    const cases: Array<[string, boolean]> = [['1203@g.us', false], ['15550100000:0@s.whatsapp.net', false], ['201000000000001@lid', false], ['status@broadcast', true], ['1@newsletter', true], ['15550100042@s.whatsapp.net', true]]
    for (const [jid, ignored] of cases) if (ignore(jid) !== ignored) throw new Error(`${jid} should ${ignored ? '' : 'not '}be ignored`)
  })
})
