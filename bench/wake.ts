// The machine alone: what the same piece of work costs in CPU when it runs back to back, and when it starts every
// `gapMs` after the process has slept, as the bridge's work does at the latency rate (100 msg/s: a message every
// 10 ms). On the 2-core VM the benchmark ran on in session 13 the second cost 2–3 times the first, with nothing of
// the bridge in it, so a CPU-per-message figure at 100 msg/s says as much about the machine's wake-ups as about
// the code; this probe puts the machine's factor beside it. Run in a process of its own (a fresh heap, nothing
// else on its event loop): the benchmark starts this file and reads the JSON line it prints.
import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { Agent, createServer, request } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import { pathToFileURL } from 'node:url'

export interface WakeProbe {
  gapMs: number
  /** CPU (user + system) per piece of work, µs: run back to back, and each started `gapMs` after the last ended. */
  backToBackUs: number
  afterGapUs: number
  /** afterGapUs / backToBackUs. */
  factor: number
  /** What the process's wake-up alone costs after `gapMs` asleep (a timer and nothing else), µs. */
  wakeOnlyUs: number
  /** CPU of one small loopback write to another process, µs: when that process sleeps (the write wakes it), and
   * when it is kept busy reading. A message at 100 msg/s makes three writes that wake a peer (to PostgreSQL, the
   * homeserver's answer, signal-cli), on top of its own three wake-ups. */
  peerWriteUs: { asleep: number; busy: number }
}

/** Runs the probe in a fresh Node process (this file, compiled, at `script`). */
export async function probeWake(script: string, gapMs: number): Promise<WakeProbe> {
  const stdout = await new Promise<string>((resolve, reject) =>
    execFile(process.execPath, [script, String(gapMs)], { timeout: 120_000 }, (err, out) => (err ? reject(err) : resolve(out))))
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as WakeProbe
}

const sleep = (ms: number): Promise<void> => new Promise(r => setTimeout(r, ms))
const cpu = (): number => {
  const u = process.cpuUsage()
  return u.user + u.system
}

// One piece: an event through JSON and back, and a POST answered by a server in the same process over loopback
// (both ends of a small HTTP exchange, as the bridge has several per message).
const EVENT = { type: 'm.room.message', sender: '@alice:example.org', room_id: '!room:example.org', event_id: '$event', origin_server_ts: 1, content: { msgtype: 'm.text', body: 'x'.repeat(200) } }

async function measure(gapMs: number): Promise<WakeProbe> {
  const server = createServer((req, res) => {
    req.resume()
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'))
  })
  await new Promise<void>(r => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as AddressInfo).port
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  const post = (body: string): Promise<void> => new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/', agent, headers: { 'content-type': 'application/json' } }, res => {
      res.resume()
      res.on('end', resolve)
    })
    req.on('error', reject)
    req.end(body)
  })
  let sink = 0
  const piece = async (i: number): Promise<void> => {
    for (let k = 0; k < 20; k++) sink += (JSON.parse(JSON.stringify({ ...EVENT, i, k })) as { content: { body: string } }).content.body.length
    await post(JSON.stringify({ events: [{ ...EVENT, i }] }))
  }
  for (let i = 0; i < 500; i++) await piece(i) // compiled and optimized before anything is measured
  // Alternated blocks, so that a change in the machine during the probe falls on both.
  let b2bUs = 0, b2bN = 0, gapUs = 0, gapN = 0, wakeUs = 0, wakeN = 0
  for (let block = 0; block < 5; block++) {
    let t = cpu()
    for (let i = 0; i < 400; i++) await piece(i)
    b2bUs += cpu() - t
    b2bN += 400
    for (let i = 0; i < 60; i++) {
      await sleep(gapMs)
      t = cpu()
      await piece(i)
      gapUs += cpu() - t
      gapN++
    }
    for (let i = 0; i < 20; i++) {
      t = cpu()
      await sleep(gapMs)
      wakeUs += cpu() - t
      wakeN++
    }
  }
  agent.destroy()
  server.close()
  if (sink < 0) throw new Error('unreachable')
  const r = (n: number): number => Math.round(n)
  const backToBackUs = b2bUs / b2bN
  const afterGapUs = gapUs / gapN
  return { gapMs, backToBackUs: r(backToBackUs), afterGapUs: r(afterGapUs), factor: Math.round((afterGapUs / backToBackUs) * 100) / 100, wakeOnlyUs: r(wakeUs / wakeN), peerWriteUs: await peerWrites(gapMs) }
}

// The peer: another process that reads whatever comes and does nothing else.
const PEER = `const s = require('node:net').createServer(c => c.on('data', () => {})); s.listen(0, '127.0.0.1', () => console.log(s.address().port))`

async function peerWrites(gapMs: number): Promise<WakeProbe['peerWriteUs']> {
  const peer = spawn(process.execPath, ['-e', PEER], { stdio: ['ignore', 'pipe', 'inherit'] })
  try {
    const [line] = (await once(peer.stdout, 'data')) as [Buffer]
    const sock = connect(Number(String(line).trim()), '127.0.0.1')
    await once(sock, 'connect')
    const chunk = Buffer.alloc(300, 'x')
    const spinUntil = (ms: number): void => {
      for (const end = performance.now() + ms; performance.now() < end;);
    }
    let asleepUs = 0, asleepN = 0, busyUs = 0, busyN = 0
    for (let block = 0; block < 5; block++) {
      // Busy: writes back to back, the peer reading all along (a breath every 100 lets the socket drain).
      for (let i = 0; i < 10; i++) {
        const t = cpu()
        for (let k = 0; k < 100; k++) sock.write(chunk)
        busyUs += cpu() - t
        busyN += 100
        await new Promise(res => setImmediate(res))
      }
      await sleep(50)
      // Asleep: the peer has slept `gapMs`; this process spins a moment first, so that only the peer's wake-up is
      // in the figure, not this process's own.
      for (let i = 0; i < 40; i++) {
        await sleep(gapMs)
        spinUntil(0.5)
        const t = cpu()
        sock.write(chunk)
        asleepUs += cpu() - t
        asleepN++
      }
    }
    sock.destroy()
    return { asleep: Math.round(asleepUs / asleepN), busy: Math.round(busyUs / busyN) }
  } finally {
    peer.kill()
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(JSON.stringify(await measure(Number(process.argv[2] ?? 10))))
}
