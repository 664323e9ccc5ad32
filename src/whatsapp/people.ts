// One stable person id per WhatsApp human, whether a sighting carries their LID, their phone number or
// both. The id is the LID user part when the first sighting had a LID, otherwise a random id recorded
// with the phone number; a later sighting of both joins them. No id ever contains a phone number.
import { createHash, randomBytes } from 'node:crypto'
import { isLidUser, isPnUser, jidNormalizedUser } from '@whiskeysockets/baileys'
import type { Db } from '../db/types.ts'

interface Row {
  person_id: string
  lid: string | null
  pn: string | null
  name: string | null
}

export interface WaPerson {
  id: string
  /** The JID to use when addressing this person in a group (LID when known). */
  jid: string
  lid?: string
  pn?: string
  name: string | undefined
}

/** The name shown for someone without a profile name: never their number. */
export function neutralLabel(personId: string): string {
  return `WhatsApp user ${createHash('sha256').update(personId).digest('hex').slice(0, 4)}`
}

const norm = (jid: string | null | undefined): string | undefined => (jid ? jidNormalizedUser(jid) : undefined)

/** Splits two JIDs (either order, either may be missing) into their LID and PN forms. */
export function lidAndPn(a?: string | null, b?: string | null): { lid?: string; pn?: string } {
  const out: { lid?: string; pn?: string } = {}
  for (const j of [norm(a), norm(b)]) {
    if (!j) continue
    if (isLidUser(j)) out.lid ??= j
    else if (isPnUser(j)) out.pn ??= j
  }
  return out
}

export class People {
  readonly #db: Db
  readonly #now: () => number
  /** Sightings already recorded exactly so (every message is one; without this, one commit each). Cleared
   * whenever a sighting changes a row, since a merge can retire a person id that other keys point at. */
  readonly #known = new Map<string, WaPerson>()
  constructor(db: Db, now: () => number = Date.now) {
    this.#db = db
    this.#now = now
  }

  /**
   * The person behind a sighting. `name` (a pushName) updates the stored name. When the LID and the
   * number belong to two rows already (seen apart before), the older id wins for the number's row and the
   * LID joins it: ghosts already exist under that id.
   */
  async resolve(a?: string | null, b?: string | null, name?: string | null): Promise<WaPerson | undefined> {
    const { lid, pn } = lidAndPn(a, b)
    if (!lid && !pn) return undefined
    const key = `${lid ?? ''}\u0000${pn ?? ''}\u0000${name ?? ''}`
    const known = this.#known.get(key)
    if (known) return known
    let changed = false
    const person = await this.#db.transaction(async tx => {
      const byLid = lid
        ? (await tx.query<Row>('SELECT * FROM wa_people WHERE lid = $1 FOR UPDATE', [lid])).rows[0]
        : undefined
      const byPn = pn ? (await tx.query<Row>('SELECT * FROM wa_people WHERE pn = $1 FOR UPDATE', [pn])).rows[0] : undefined
      let row = byPn ?? byLid
      const now = this.#now()
      if (byLid && byPn && byLid.person_id !== byPn.person_id) {
        changed = true
        await tx.query('DELETE FROM wa_people WHERE person_id = $1', [byLid.person_id])
        row = { ...byPn, lid: lid ?? null, name: byPn.name ?? byLid.name }
      }
      if (!row) {
        const id = lid ? lid.split('@', 1)[0]! : `r${randomBytes(8).toString('hex')}`
        row = { person_id: id, lid: lid ?? null, pn: pn ?? null, name: name ?? null }
        await tx.query(
          `INSERT INTO wa_people (person_id, lid, pn, name, updated_at) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (person_id) DO NOTHING`,
          [row.person_id, row.lid, row.pn, row.name, now],
        )
        return this.#person(row)
      }
      const merged: Row = { ...row, lid: row.lid ?? lid ?? null, pn: row.pn ?? pn ?? null, name: name || row.name }
      if (merged.lid !== row.lid || merged.pn !== row.pn || merged.name !== row.name || byLid !== byPn) {
        changed = true
        await tx.query('UPDATE wa_people SET lid = $2, pn = $3, name = $4, updated_at = $5 WHERE person_id = $1', [
          merged.person_id,
          merged.lid,
          merged.pn,
          merged.name,
          now,
        ])
      }
      return this.#person(merged)
    })
    if (changed) this.#known.clear()
    if (this.#known.size > 50_000) this.#known.clear()
    this.#known.set(key, person)
    return person
  }

  /** Records that a LID and a number are the same person (lid-mapping.update, group metadata). */
  async link(lid: string, pn: string): Promise<void> {
    await this.resolve(lid, pn)
  }

  /** The person behind a JID if they were ever seen, without recording anything (typing and receipts). */
  async known(jid: string): Promise<WaPerson | undefined> {
    const { lid, pn } = lidAndPn(jid)
    if (!lid && !pn) return undefined
    const row = (await this.#db.query<Row>('SELECT * FROM wa_people WHERE lid = $1 OR pn = $2 LIMIT 1', [lid ?? null, pn ?? null])).rows[0]
    return row ? this.#person(row) : undefined
  }

  /** A logged-out account's own entry: its number goes. The person stays, by their LID (no phone number), only where
   * something still names them: a ghost in Matrix (what they typed on that phone keeps its sender), or copies they
   * wrote in a group (a later quote of one must name its author). */
  async forgetAccount(personId: string): Promise<void> {
    await this.#db.query(
      `DELETE FROM wa_people p WHERE person_id = $1
         AND NOT EXISTS (SELECT 1 FROM ghosts g WHERE g.network = 'whatsapp' AND g.person_id = p.person_id)
         AND NOT EXISTS (SELECT 1 FROM message_copies c WHERE c.network = 'whatsapp' AND c.author_id = p.person_id)`,
      [personId],
    )
    await this.#db.query('UPDATE wa_people SET pn = NULL WHERE person_id = $1 AND lid IS NOT NULL', [personId])
    this.#known.clear()
  }

  async byId(personId: string): Promise<WaPerson | undefined> {
    const row = (await this.#db.query<Row>('SELECT * FROM wa_people WHERE person_id = $1', [personId])).rows[0]
    return row ? this.#person(row) : undefined
  }

  #person(row: Row): WaPerson {
    const p: WaPerson = { id: row.person_id, jid: (row.lid ?? row.pn)!, name: row.name ?? undefined }
    if (row.lid) p.lid = row.lid
    if (row.pn) p.pn = row.pn
    return p
  }
}
