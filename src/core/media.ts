// Attachment bytes, stored once by content hash under data_dir/media. Queue rows and the message map
// carry only the id, so a 100 MB video is never copied through the database.
import { createHash } from 'node:crypto'
import { mkdir, readdir, readFile, rename, writeFile, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'

export interface MediaStore {
  put(data: Buffer): Promise<string>
  get(id: string): Promise<Buffer>
  remove(id: string): Promise<void>
}

const ID = /^[0-9a-f]{64}$/

export class FileMediaStore implements MediaStore {
  readonly dir: string
  constructor(dataDir: string) {
    this.dir = join(dataDir, 'media')
  }

  async put(data: Buffer): Promise<string> {
    const id = createHash('sha256').update(data).digest('hex')
    const path = this.path(id)
    const exists = await stat(path).then(() => true, () => false)
    if (!exists) {
      await mkdir(this.dir, { recursive: true })
      // Write beside and rename, so a crash never leaves a half file under the final name.
      const tmp = `${path}.${process.pid}.tmp`
      await writeFile(tmp, data, { flush: true })
      await rename(tmp, path)
    }
    return id
  }

  get(id: string): Promise<Buffer> {
    return readFile(this.path(id))
  }

  async remove(id: string): Promise<void> {
    await rm(this.path(id), { force: true })
  }

  /** Retention: removes files last written before `cutoffMs` (and half-written ones a crash left), except `keep`.
   * Returns how many went. */
  async removeOlderThan(cutoffMs: number, keep: ReadonlySet<string>): Promise<number> {
    const names = await readdir(this.dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[]
      throw err
    })
    let removed = 0
    for (const name of names) {
      const id = name.slice(0, 64)
      if (!ID.test(id) || keep.has(id)) continue
      const path = join(this.dir, name)
      const info = await stat(path).catch(() => undefined)
      if (!info || info.mtimeMs >= cutoffMs) continue
      await rm(path, { force: true })
      removed++
    }
    return removed
  }

  private path(id: string): string {
    if (!ID.test(id)) throw new Error(`Not a media id: ${JSON.stringify(id)}`)
    return join(this.dir, id)
  }
}
