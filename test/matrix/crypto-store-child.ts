// The bridge's Olm machine in a process of its own, on the durable crypto store, so that a test can SIGKILL it.
// Driven over IPC: {id, cmd, args} in, {id, result | error} out, each answered only after store.flush(), as
// the bridge must (nothing leaves the process before the state behind it is in the database). The machine's
// requests to the homeserver go to the test process ({ask, request} out, {answer, body | error} in), which
// answers them from its Switchboard.
import * as sdk from '@matrix-org/matrix-sdk-crypto-wasm'
import { migrate } from '../../src/db/migrate.ts'
import { openDatabase } from '../../src/db/open.ts'
import { openCryptoStore } from '../../src/matrix/crypto/store.ts'
import { plainRequest, type PlainRequest, type SyncBatch } from '../support/olm-switchboard.ts'

// argv: database uri ('' for PGlite), data_dir, the store's key, user id, device id.
if (!process.send) throw new Error('crypto-store-child.ts runs with an IPC channel (forkChild)')
await main(process.send.bind(process))

async function main(send: NonNullable<typeof process.send>): Promise<void> {
  const [uri = '', dataDir = '', key = '', BOT = '', BOT_DEVICE = ''] = process.argv.slice(2)
  const db = await openDatabase(uri, dataDir)
  await migrate(db)
  await sdk.initAsync()
  const store = await openCryptoStore({ db, key, name: BOT })
  const machine = await sdk.OlmMachine.initialize(new sdk.UserId(BOT), new sdk.DeviceId(BOT_DEVICE), store.storeName)
  await store.flush()

  const asks = new Map<number, { resolve: (body: string) => void; reject: (err: Error) => void }>()
  let nextAsk = 1
  const ask = (request: PlainRequest) => new Promise<string>((resolve, reject) => {
    const id = nextAsk++
    asks.set(id, { resolve, reject })
    send({ ask: id, request })
  })
  /** Sends requests the way the bridge's driver must: the store flushed before each leaves the process. */
  const sendAll = async (requests: any[]): Promise<PlainRequest[]> => {
    const sent = requests.map(plainRequest)
    for (const r of sent) {
      await store.flush()
      await machine.markRequestAsSent(r.id, r.type, await ask(r))
    }
    return sent
  }

  const commands: Record<string, (args: any) => Promise<unknown>> = {
    /** Every outgoing request until none is left; says which were sent. */
    async drive() {
      const sent: PlainRequest[] = []
      for (let r = await machine.outgoingRequests(); r.length > 0; r = await machine.outgoingRequests()) sent.push(...(await sendAll(r)))
      return sent.map(r => ({ type: r.type, body: JSON.parse(r.body) as unknown }))
    },
    async sync(b: SyncBatch) {
      const done = await machine.receiveSyncChanges(b.toDevice, new sdk.DeviceLists(b.changed.map(u => new sdk.UserId(u)), []), new Map(Object.entries(b.otkCounts)), new Set())
      return done.length
    },
    /** shareRoomKey toward `users` (their keys queried and an Olm session claimed first); the to-device count. */
    async share({ room, users }: { room: string; users: string[] }) {
      // A vector of ids passed to the machine is moved into it: each call gets its own.
      const ids = () => users.map(u => new sdk.UserId(u))
      await machine.updateTrackedUsers(ids())
      await commands.drive!(undefined)
      const claim = await machine.getMissingSessions(ids())
      if (claim) await sendAll([claim])
      const toDevice = await machine.shareRoomKey(new sdk.RoomId(room), ids(), new sdk.EncryptionSettings())
      await sendAll(toDevice)
      return toDevice.length
    },
    async encrypt({ room, body }: { room: string; body: string }) {
      return JSON.parse(await machine.encryptRoomEvent(new sdk.RoomId(room), 'm.room.message', JSON.stringify({ msgtype: 'm.text', body }))) as unknown
    },
    async decrypt({ room, event }: { room: string; event: unknown }) {
      const settings = new sdk.DecryptionSettings(sdk.TrustRequirement.Untrusted)
      const decrypted = await machine.decryptRoomEvent(JSON.stringify(event), new sdk.RoomId(room), settings)
      return JSON.parse(decrypted.event) as unknown
    },
  }

  process.on('message', (m: { answer?: number; body?: string; error?: string; id?: number; cmd?: string; args?: unknown }) => {
    if (m.answer !== undefined) {
      const a = asks.get(m.answer)
      asks.delete(m.answer)
      if (m.error !== undefined) a?.reject(new Error(m.error))
      else a?.resolve(m.body!)
      return
    }
    const run = commands[m.cmd!]
    if (!run) return send({ id: m.id, error: `no command ${m.cmd}` })
    run(m.args)
      .then(async result => {
        await store.flush()
        send({ id: m.id, result })
      })
      .catch((err: Error) => send({ id: m.id, error: `${err.message}\n${err.stack}` }))
  })
  const keys = machine.identityKeys
  send({ ready: { curve25519: keys.curve25519.toBase64(), ed25519: keys.ed25519.toBase64() } })
}
