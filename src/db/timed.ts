// Wraps a database so that every query's latency is observed (the relay_bridge_db_query_seconds metric),
// whichever engine is underneath.
import type { Db, Queryable } from './types.ts'

export type QueryObserver = (ms: number, ok: boolean) => void

function timedQueryable(q: Queryable, observe: QueryObserver): Queryable {
  return {
    async query(sql, params) {
      const t = performance.now()
      let ok = false
      try {
        const res = await q.query(sql, params)
        ok = true
        return res
      } finally {
        observe(performance.now() - t, ok)
      }
    },
    exec: sql => q.exec(sql),
  } as Queryable
}

export function timed(db: Db, observe: QueryObserver): Db {
  const base = timedQueryable(db, observe)
  return {
    kind: db.kind,
    query: base.query,
    exec: base.exec,
    transaction: work => db.transaction(tx => work(timedQueryable(tx, observe))),
    session: work => db.session((conn, lost) => work(timedQueryable(conn, observe), lost)),
    close: () => db.close(),
  }
}
