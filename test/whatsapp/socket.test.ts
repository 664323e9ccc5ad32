// Which chats Baileys is told not to decrypt. (That Baileys' real socket and the fake both fit the adapter's
// WaPort slice is proven at compile time, where it can fail: `realSocketFits` in src/whatsapp/socket.ts and
// `FakeWaSocket implements WaPort` in test/fakes/whatsapp-socket.ts, checked by `npx tsc --noEmit` in CI.)
import { describe, expect, it } from 'vitest'
import { ignoreJid } from '../../src/whatsapp/socket.ts'

describe('the chats Baileys decrypts', () => {
  const ignore = ignoreJid(() => ['15550100000', '201000000000001'])

  it.each([
    ['a group', '1203@g.us', false],
    ["the account's own chat (phone number, device 0)", '15550100000:0@s.whatsapp.net', false],
    ["the account's own chat (LID)", '201000000000001@lid', false],
    ['status broadcasts', 'status@broadcast', true],
    ['newsletters', '1@newsletter', true],
    ["another person's one-to-one chat", '15550100042@s.whatsapp.net', true],
  ])('%s (%s): ignored = %s', (_what, jid, ignored) => {
    expect(ignore(jid)).toBe(ignored)
  })
})
