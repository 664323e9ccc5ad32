// In-memory stand-ins for the core's login and media stores, for adapter tests that run without the core.
import { createHash, randomUUID } from 'node:crypto'
import type { MediaStore } from '../../src/core/media.ts'
import type { RemoteNetworkId } from '../../src/core/model.ts'
import type { ConnectionState, Login, LoginStore } from '../../src/core/network.ts'

export class MemoryLogins implements LoginStore {
  readonly rows = new Map<string, Login>()
  async get(id: string) {
    return this.rows.get(id)
  }
  async list(network?: RemoteNetworkId) {
    return [...this.rows.values()].filter(l => !network || l.network === network)
  }
  /** Like the real store: re-linking the same account keeps its id. */
  async save(l: Omit<Login, 'id' | 'state' | 'stateMessage'> & { state?: ConnectionState }): Promise<Login> {
    const existing = [...this.rows.values()].find(r => r.network === l.network && r.address === l.address)
    const row: Login = { ...l, id: existing?.id ?? randomUUID(), state: l.state ?? 'disconnected', stateMessage: null }
    this.rows.set(row.id, row)
    return row
  }
  async remove(id: string) {
    this.rows.delete(id)
  }
}

export class MemoryMedia implements MediaStore {
  readonly blobs = new Map<string, Buffer>()
  async put(data: Buffer): Promise<string> {
    const id = createHash('sha256').update(data).digest('hex')
    this.blobs.set(id, data)
    return id
  }
  async get(id: string): Promise<Buffer> {
    const b = this.blobs.get(id)
    if (!b) throw new Error(`no media ${id}`)
    return b
  }
  async remove(id: string): Promise<void> {
    this.blobs.delete(id)
  }
}
