// Stopping within a deadline (src/stop.ts): what did not finish is named, and nothing waits past the time.
import { describe, expect, it } from 'vitest'
import { stopWithin } from '../../src/stop.ts'

describe('stopping within a deadline', () => {
  it('a step that never finishes is named, the steps after it are named as not started, and none of them runs', async () => {
    const ran: string[] = []
    const unfinished = await stopWithin(50, [
      { what: 'closing the endpoint', run: async () => void ran.push('endpoint') },
      { what: () => 'sending the messages in flight to Signal', run: () => new Promise(() => ran.push('deliveries')) },
      { what: 'closing the metrics listener', run: async () => void ran.push('metrics') },
    ])
    expect(unfinished).toEqual(['sending the messages in flight to Signal', 'closing the metrics listener (not started)'])
    expect(ran).toEqual(['endpoint', 'deliveries'])
  })

  it('a step that fails is named with its error, and the steps after it still run', async () => {
    const ran: string[] = []
    const unfinished = await stopWithin(60_000, [
      { what: 'disconnecting from WhatsApp', run: async () => { throw new Error('socket already closed') } },
      { what: 'closing the database', run: async () => void ran.push('database') },
    ])
    expect(unfinished).toEqual(['disconnecting from WhatsApp (failed: socket already closed)'])
    expect(ran).toEqual(['database'])
  })

  it('when everything finishes, nothing is named', async () => {
    expect(await stopWithin(60_000, [{ what: 'closing the database', run: async () => {} }])).toEqual([])
  })
})
