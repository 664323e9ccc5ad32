// The operator console in a real browser (Debian's Chromium through playwright-core), against the real bridge
// process with the fake homeserver, signal-cli daemon and WhatsApp: sign in through the bot's one-time link,
// relink a logged-out WhatsApp relay by scanning its live QR code and watch the held messages go out, relink it with
// a pairing code, log a Signal relay out, and the refusals: a replayed link, someone else's login, a group name full of markup.
// RELAY_BRIDGE_SCREENSHOTS=1 (scripts/console-screenshots.sh) also writes the main views into docs/.
import { mkdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { E2E } from '../e2e/harness.ts'
import { freePort } from '../support/ports.ts'
import { ADMIN, SIGNAL_RELAY, setUpPortal, type Portal } from '../e2e/setup.ts'
import { launchChromium } from '../support/chromium.ts'
import { PATIENCE_MS } from '../support/patience.ts'
import { linkToken } from './client.ts'

const CAROL = '@carol:example.org'
const HOSTILE = '<img src=x onerror="window.__pwned=1">Family<script>window.__pwned=2</script>'
const DOCS = fileURLToPath(new URL('../../docs/', import.meta.url))
const SHOTS = !!process.env.RELAY_BRIDGE_SCREENSHOTS

describe('the operator console in a real browser', () => {
  let e: E2E
  let p: Portal
  let browser: Browser
  let base: string
  let admin: Page

  beforeAll(async () => {
    browser = await launchChromium()
    const port = await freePort()
    e = await E2E.create('pglite', { configure: raw => { raw.console = { enabled: true, hostname: '127.0.0.1', port } } })
    base = `http://127.0.0.1:${port}/`
    p = await setUpPortal(e)
  }, PATIENCE_MS * 3)
  afterAll(async () => {
    await browser?.close()
    await e?.stop()
  })

  async function shot(page: Page, name: string): Promise<void> {
    if (!SHOTS) return
    await mkdir(DOCS, { recursive: true })
    // A dialog is shown as the screen shows it; the other views whole.
    await page.screenshot({ path: `${DOCS}console-${name}.png`, fullPage: !/relink|confirm/.test(name) })
  }

  /** Types `console` in the direct chat and returns the link the bot sent there. */
  async function consoleLink(user: string, dm: string): Promise<string> {
    const reply = await e.command(user, dm, 'console')
    expect(linkToken([reply])).toBeTruthy()
    return /(http:\/\/\S+#signin=\S+)/.exec(reply)![1]!
  }

  async function dmOf(user: string): Promise<string> {
    if (!e.hs.profile(user)) e.hs.createUser(user, { displayname: 'Carol' })
    const dm = await e.hs.createRoom(user, { invite: [e.hs.botUserId], isDirect: true })
    await e.hs.waitFor(() => e.hs.membership(dm, e.hs.botUserId) === 'join', { what: 'the bot to join the direct chat' })
    return dm
  }

  async function openPage(link: string, viewport = { width: 1280, height: 900 }): Promise<Page> {
    const context = await browser.newContext({ viewport })
    const page = await context.newPage()
    page.setDefaultTimeout(PATIENCE_MS)
    await page.goto(link)
    return page
  }

  const card = (page: Page, network: 'Signal' | 'WhatsApp') => page.getByRole('article', { name: new RegExp(`^${network}: `) })

  it('an admin signs in through the bot\'s one-time link and sees every login, the portal and the health, live', async () => {
    const link = await consoleLink(ADMIN, p.dm)
    admin = await openPage(link)
    await admin.getByText(`Signed in as ${ADMIN} (admin)`).waitFor()
    // The token left the address bar at once.
    expect(admin.url()).not.toContain('signin=')
    await card(admin, 'Signal').getByText('connected', { exact: true }).waitFor()
    await card(admin, 'WhatsApp').getByText('connected', { exact: true }).waitFor()
    expect(await card(admin, 'Signal').innerText()).toContain(SIGNAL_RELAY.number!)
    const portal = admin.getByRole('article', { name: 'Family' })
    await portal.getByText('Family', { exact: true }).first().waitFor()
    expect(await portal.getByRole('link', { name: 'Open in Matrix' }).getAttribute('href')).toBe(`https://matrix.to/#/${encodeURIComponent(p.room)}`)
    const health = admin.locator('#health-list')
    await health.getByText('The homeserver answers').waitFor()
    await health.getByText('signal-cli daemon answers').waitFor()
    expect(await health.innerText()).toMatch(/version 0\.14\.6/)
    await shot(admin, 'overview')

    // The same link again, in another browser: refused, and that browser is not signed in.
    const replay = await openPage(link)
    await replay.getByText(/This sign-in link was already used/).waitFor()
    expect(await replay.locator('#logins').isHidden()).toBe(true)
    await replay.context().close()
  })

  it('relinks the logged-out WhatsApp relay with a live QR code that follows the network, and the held messages go out', async () => {
    const wa = card(admin, 'WhatsApp')
    // WhatsApp drops the linked device: the card turns "logged out" without a reload, and messages are held.
    await e.wa('unlinkedLive')
    await wa.getByText('logged out', { exact: true }).waitFor()
    await e.hs.sendMessage(ADMIN, p.room, 'held while WhatsApp was away')
    await e.hs.sendMessage(ADMIN, p.room, 'and this one too')
    await wa.getByText(/^2 since/).waitFor()
    await admin.getByRole('article', { name: 'Family' }).getByRole('table', { name: 'Held and failed deliveries' }).waitFor()
    await shot(admin, 'held')

    await wa.getByRole('button', { name: 'Relink' }).click()
    const dialog = admin.getByRole('dialog', { name: /^Relink WhatsApp/ })
    await dialog.getByRole('button', { name: 'Use a pairing code instead' }).waitFor()
    await dialog.getByRole('button', { name: 'Show a QR code' }).click()
    const qr = dialog.getByRole('img', { name: /QR code to scan with WhatsApp/ })
    await qr.waitFor()
    expect(await qr.getAttribute('alt')).toMatch(/It holds: 2@fake-qr-1,/)
    expect(await dialog.locator('#relink-data').textContent()).toMatch(/^2@fake-qr-1,/)
    await shot(admin, 'relink-qr')

    // WhatsApp rotates the code: the page shows the new one without being asked.
    await e.wa('rotateQr')
    await admin.waitForFunction(() => /^2@fake-qr-2,/.test((globalThis as any).document.getElementById('relink-data')?.textContent ?? ''))
    expect(await qr.getAttribute('alt')).toMatch(/It holds: 2@fake-qr-2,/)

    // The phone scans it: "linked", and the held messages go out in order.
    await e.wa('scanQr')
    await dialog.getByText(/^Linked\./).waitFor()
    const sent = await e.waitForWaSent(s => s.some(x => x.content.text === '*Admin (Matrix)*: and this one too'), 'the held messages after the relink')
    const texts = sent.map(x => x.content.text)
    expect(texts.indexOf('*Admin (Matrix)*: held while WhatsApp was away')).toBeGreaterThanOrEqual(0)
    expect(texts.indexOf('*Admin (Matrix)*: held while WhatsApp was away')).toBeLessThan(texts.indexOf('*Admin (Matrix)*: and this one too'))
    await admin.keyboard.press('Escape')
    await wa.getByText('connected', { exact: true }).waitFor()
    await wa.getByText('none', { exact: true }).waitFor()
  })

  it('relinks WhatsApp with a pairing code instead, by keyboard: the number typed, the 8-character code shown and spelled out, the phone types it, linked', async () => {
    const wa = card(admin, 'WhatsApp')
    await e.wa('unlinkedLive')
    await wa.getByText('logged out', { exact: true }).waitFor()
    await wa.getByRole('button', { name: 'Relink' }).focus()
    await admin.keyboard.press('Enter')
    const dialog = admin.getByRole('dialog', { name: /^Relink WhatsApp/ })
    await dialog.waitFor()
    // From "Show a QR code" (focused) one Tab reaches the pairing code option.
    await admin.keyboard.press('Tab')
    expect(await admin.evaluate(() => (globalThis as any).document.activeElement?.textContent)).toBe('Use a pairing code instead')
    await admin.keyboard.press('Enter')
    const number = dialog.getByRole('textbox', { name: 'Phone number of the relay account, with country code' })
    await number.waitFor()
    expect(await number.evaluate(el => el === (globalThis as any).document.activeElement)).toBe(true)
    await admin.keyboard.type('+1 555 0100 000')
    await admin.keyboard.press('Enter')

    // The code as WhatsApp shows it, and for a screen reader one character at a time (the grouped form hidden from
    // it); the keyboard is on it, since the form that had the focus is gone.
    const pair = dialog.locator('#relink-pair')
    await pair.getByText('K7QW-2M9X', { exact: true }).waitFor()
    expect(await pair.evaluate(el => el === (globalThis as any).document.activeElement)).toBe(true)
    const heard = await pair.ariaSnapshot()
    expect(heard).toContain('Pairing code: K 7 Q W 2 M 9 X')
    expect(heard).not.toContain('K7QW')
    await dialog.getByRole('status').filter({ hasText: /Link with phone number instead, and type this code/ }).waitFor()
    // WhatsApp was asked for a code for the number typed, in digits.
    expect(await e.wa('pairingCodeRequests')).toEqual(['15550100000'])
    await shot(admin, 'relink-code')

    // The person types the code on the phone: "linked", the code gone, the login connected again.
    await e.wa('acceptPairingCode')
    await dialog.getByText(/^Linked\./).waitFor()
    expect(await pair.isHidden()).toBe(true)
    expect(await admin.evaluate(() => (globalThis as any).document.activeElement?.textContent)).toBe('Close')
    await admin.keyboard.press('Enter')
    await dialog.waitFor({ state: 'hidden' })
    await wa.getByText('connected', { exact: true }).waitFor()
  })

  it('logs the Signal relay out after a confirmation, and Cancel changes nothing', async () => {
    const signal = card(admin, 'Signal')
    const sigId = (await signal.locator('.id').first().textContent())!
    await signal.getByRole('button', { name: 'Log out' }).click()
    const confirm = admin.getByRole('alertdialog', { name: /^Log out sig-/ })
    await confirm.waitFor()
    await confirm.getByRole('button', { name: 'Cancel' }).click()
    await confirm.waitFor({ state: 'hidden' })
    expect(e.daemon.hasStream(SIGNAL_RELAY.number!)).toBe(true)

    await signal.getByRole('button', { name: 'Log out' }).click()
    await shot(admin, 'logout-confirm')
    await confirm.getByRole('button', { name: 'Log out' }).click()
    await admin.getByText(/^Logged out sig-/).waitFor()
    await e.until(() => !e.daemon.hasStream(SIGNAL_RELAY.number!), 'the Signal event stream to close')
    // A logout deletes the login for good (as the `logout` command does): its card goes from the page.
    // (Its card, found by the login id it carries: the portal's card names the id too, until the same update.)
    await admin.locator(`article[data-login="${sigId}"]`).waitFor({ state: 'detached' })
  })

  it('a user who is no admin sees neither another person\'s login nor a portal they do not administer, and cannot log one out', async () => {
    const carol = await openPage(await consoleLink(CAROL, await dmOf(CAROL)))
    await carol.getByText(`Signed in as ${CAROL} (user)`).waitFor()
    await carol.getByText(/You have no logins/).waitFor()
    await carol.getByText('No bridged room that you administer.').waitFor()
    expect(await carol.locator('#main').innerText()).not.toMatch(/sig-|wa-|15550100/)
    // Even with her page's own CSRF token, the admin's login id in the URL is answered as unknown.
    const waId = (await card(admin, 'WhatsApp').locator('.id').first().textContent())!
    const answer = await carol.evaluate(async id => {
      const session = await (await fetch('_relay_bridge/v1/session')).json() as { csrf_token: string }
      const res = await fetch(`_matrix/provision/v3/logout/${id}`, { method: 'POST', headers: { 'X-CSRF-Token': session.csrf_token } })
      return { status: res.status, body: await res.json() }
    }, waId)
    expect(answer).toEqual({ status: 404, body: { errcode: 'M_NOT_FOUND', error: 'Login not found' } })
    // And without the token the page's cookie alone is refused.
    const bare = await carol.evaluate(async id => (await fetch(`_matrix/provision/v3/logout/${id}`, { method: 'POST' })).status, waId)
    expect(bare).toBe(403)
    await card(admin, 'WhatsApp').getByText('connected', { exact: true }).waitFor()
    await carol.context().close()
  })

  it('a group name full of markup is shown as text and runs nothing, on a phone-sized screen too', async () => {
    await e.wa('renameGroup', p.whatsappGroup, HOSTILE)
    const portal = admin.getByRole('article', { name: HOSTILE })
    await portal.waitFor()
    expect(await admin.evaluate(() => (globalThis as any).__pwned)).toBeUndefined()
    expect(await portal.locator('img, script').count()).toBe(0)
    expect(await portal.getByRole('heading').textContent()).toBe(HOSTILE)

    const phone = await openPage(await consoleLink(ADMIN, p.dm), { width: 390, height: 844 })
    await phone.getByRole('article', { name: HOSTILE }).waitFor()
    expect(await phone.evaluate(() => (globalThis as any).document.documentElement.scrollWidth <= (globalThis as any).innerWidth)).toBe(true)
    expect(await phone.evaluate(() => (globalThis as any).__pwned)).toBeUndefined()
    await shot(phone, 'phone')
    await phone.context().close()
  })

  it('is used with the keyboard alone: the skip link, then every button in order', async () => {
    await admin.goto(base)
    await admin.getByText(`Signed in as ${ADMIN} (admin)`).waitFor()
    await card(admin, 'WhatsApp').getByRole('button', { name: 'Relink' }).waitFor()
    await admin.keyboard.press('Tab')
    expect(await admin.evaluate(() => (globalThis as any).document.activeElement?.textContent)).toBe('Skip to the content')
    // Tab reaches the WhatsApp card's Relink button, and Enter opens the dialog with focus inside it.
    for (let i = 0; i < 40; i++) {
      await admin.keyboard.press('Tab')
      const here = await admin.evaluate(() => ({ text: (globalThis as any).document.activeElement?.textContent, card: (globalThis as any).document.activeElement?.closest('article')?.getAttribute('aria-labelledby') }))
      if (here.text === 'Relink' && here.card?.startsWith('login-wa-')) break
    }
    await admin.keyboard.press('Enter')
    const dialog = admin.getByRole('dialog', { name: /^Relink WhatsApp/ })
    await dialog.waitFor()
    expect(await admin.evaluate(() => (globalThis as any).document.activeElement?.textContent)).toBe('Show a QR code')
    await admin.keyboard.press('Escape')
    await dialog.waitFor({ state: 'hidden' })
  })
})
