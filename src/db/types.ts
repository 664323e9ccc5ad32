// One small interface over node-postgres and PGlite, so every query runs unchanged on both.

export interface QueryResult<R> {
  rows: R[]
  rowCount: number
}

export interface Queryable {
  query<R = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<QueryResult<R>>
  /** Runs a script of several statements with no parameters (migrations). */
  exec(sql: string): Promise<void>
}

export interface Db extends Queryable {
  readonly kind: 'postgres' | 'pglite'
  /** Runs `work` in one transaction; a throw rolls back. */
  transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T>
  /** Runs `work` on one dedicated session (for session-level advisory locks). `lost` settles with an error if the
   * session's connection ends before `work` does (the server restarted, or someone ended the backend): what the
   * session held is gone then. On PGlite it never settles: the database lives in this process. */
  session<T>(work: (conn: Queryable, lost: Promise<Error>) => Promise<T>): Promise<T>
  close(): Promise<void>
}
