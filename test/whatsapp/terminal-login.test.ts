// `relay-bridge login whatsapp` in a terminal when WhatsApp cannot be reached: Baileys' real socket, pointed at a
// local port where nothing listens (the connection is refused as an unreachable WhatsApp's would fail).
import { createServer } from 'node:net'
import { PassThrough } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { linkWhatsAppHere, terminalUi } from '../../src/terminal-login.ts'
import { baileysSocketFactoryAt } from '../../src/whatsapp/socket.ts'
import { tempDir, testConfig } from '../support/config.ts'
import { freshDb } from '../support/db.ts'
import { captureLog } from '../support/log.ts'

/** A port that was free a moment ago and is closed now. */
async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise(resolve => server.close(resolve))
  return port
}

describe('linking WhatsApp from a terminal', () => {
  it('with WhatsApp unreachable, says WhatsApp could not be reached, advises the terminal command, and logs no DANGER warning', async () => {
    const db = await freshDb('pglite')
    try {
      const config = testConfig({ dataDir: await tempDir() })
      const { log, lines } = captureLog('trace')
      const printed = new PassThrough()
      let shown = ''
      printed.on('data', (d: Buffer) => (shown += d))
      const factory = baileysSocketFactoryAt(`ws://127.0.0.1:${await closedPort()}/ws/chat`)
      const err = await linkWhatsAppHere(config, db, { owner: '@me:example.org' }, terminalUi(printed), log, factory).then(() => undefined, (e: unknown) => e as Error)
      expect(err?.message).toMatch(/^WhatsApp could not be reached \(.*ECONNREFUSED.*\), so no code could be shown\. Check that this machine can reach web\.whatsapp\.com \(outgoing HTTPS\), then type `npx relay-bridge login whatsapp` to try again\.$/)
      expect(err?.message).not.toMatch(/expired|!relay/)
      expect(shown).toBe('') // no QR code was ever shown
      // Baileys says its history-sync line at every socket made as in production (§1), but not as a warning.
      expect(lines.filter(l => l.level >= 40).map(l => l.msg)).not.toContainEqual(expect.stringMatching(/DANGER/))
      expect(lines.filter(l => /DISABLING ALL SYNC/.test(l.msg))).toEqual([])
    } finally {
      await db.close()
    }
  })
})
