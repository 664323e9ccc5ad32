// A pino logger whose JSON lines a test can read: proves that something was logged (and what was not).
import { Writable } from 'node:stream'
import { pino, type Level } from 'pino'

export function captureLog(level: Level = 'info') {
  const lines: Array<{ msg: string; level: number; [k: string]: unknown }> = []
  const stream = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l))
      done()
    },
  })
  return { log: pino({ level }, stream), lines, text: () => lines.map(l => l.msg).join('\n') }
}
