// The mission's story: what people assemble today from two bridges, done by relay-bridge alone.
import { afterEach, describe, expect, it } from 'vitest'
import type { E2E } from './harness.ts'
import { E2E as Harness } from './harness.ts'
import { setUpPortal } from './setup.ts'

describe('the story', () => {
  let e: E2E | undefined
  afterEach(async () => {
    await e?.stop()
    e = undefined
  })

  it('the operator links both relays by QR code, a Signal group makes a portal, and create whatsapp finishes the set-up', async () => {
    e = await Harness.create('pglite')
    const portal = await setUpPortal(e)
    expect(portal.whatsappGroup).toMatch(/@g\.us$/)
  })
})
