// The benchmark's measuring tools (issue 19): the Synapse-like pusher keeps one transaction in flight and sends the
// backlog that formed meanwhile, and a floor's ramp stops at its plateau.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { rampToPlateau } from '../../bench/floors.ts'
import { SynapsePusher } from '../../bench/load.ts'

/** An appservice that answers a transaction only when told: what arrived, in order, with the answers between. */
async function heldAppservice() {
  const log: string[] = []
  const held: ServerResponse[] = []
  let arrived: (() => void) | undefined
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = ''
    req.on('data', (c: Buffer) => (body += c.toString()))
    req.on('end', () => {
      log.push(`txn of ${(JSON.parse(body) as { events: unknown[] }).events.length}`)
      held.push(res)
      arrived?.()
    })
  })
  await new Promise<void>(r => server.listen(0, '127.0.0.1', r))
  return {
    port: (server.address() as AddressInfo).port,
    log,
    /** Resolves once `n` transactions have arrived in all. */
    until: (n: number) => new Promise<void>(r => {
      const check = (): void => (log.filter(l => l.startsWith('txn')).length >= n ? r() : void (arrived = check))
      check()
    }),
    answer: () => {
      log.push('answered')
      held.shift()!.writeHead(200, { 'Content-Type': 'application/json' }).end('{}')
    },
    close: () => new Promise<void>(r => server.close(() => r())),
  }
}

describe('SynapsePusher', () => {
  let stop: (() => Promise<void>) | undefined
  afterEach(async () => stop?.())

  it('keeps one transaction in flight, and the next carries the backlog that formed meanwhile, 50 at most', async () => {
    const as = await heldAppservice()
    const pusher = new SynapsePusher(as.port, 50)
    stop = async () => {
      pusher.close()
      await as.close()
    }
    pusher.add('!a:example.org', [])
    await as.until(1)
    for (let i = 0; i < 120; i++) pusher.add('!a:example.org', [])
    expect(pusher.waiting).toBe(120)
    as.answer()
    await as.until(2)
    as.answer()
    await as.until(3)
    as.answer()
    await as.until(4)
    // Had a second transaction gone out while the first was held, it would stand before the first answer.
    expect(as.log).toEqual(['txn of 1', 'answered', 'txn of 50', 'answered', 'txn of 50', 'answered', 'txn of 20'])
    expect(pusher.waiting).toBe(0)
  })
})

describe('rampToPlateau', () => {
  it('doubles the offered rate until what is accepted grows by less than 5 %, and reports the most accepted', async () => {
    const offered: number[] = []
    // A system that takes everything up to 3,000/s, and 3 % more when offered twice as much again: still growing,
    // but by less than 5 %, so that is the plateau.
    const plateau = await rampToPlateau(async rate => (offered.push(rate), rate <= 3000 ? rate : rate === 4000 ? 3000 : 3100), 500)
    expect(offered).toEqual([500, 1000, 2000, 4000, 8000])
    expect(plateau.plateauPerS).toBe(3100)
    expect(plateau.steps.at(-1)).toEqual({ offeredPerS: 8000, acceptedPerS: 3100 })
  })
})
