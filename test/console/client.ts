// A provisioning API client for tests: the shared-secret way (as mautrix clients call it) or a browser's session
// (cookie and CSRF token, as the console page calls it).
export const SECRET = 'provisioning-secret-for-tests-0123456789'

export interface Answer {
  status: number
  body: any
  headers: Headers
}

export interface Caller {
  /** Authorization: Bearer …, with ?user_id= */
  secret?: { token: string; userId?: string }
  /** A console session: its cookie and (for state changes) its CSRF token. */
  session?: { cookie: string; csrf?: string }
  headers?: Record<string, string>
}

export async function call(base: string, method: string, path: string, who: Caller = {}, body?: unknown, signal?: AbortSignal): Promise<Answer> {
  const url = new URL(path, base)
  const headers: Record<string, string> = { ...who.headers }
  if (who.secret) {
    headers.Authorization = `Bearer ${who.secret.token}`
    if (who.secret.userId) url.searchParams.set('user_id', who.secret.userId)
  }
  if (who.session) {
    headers.Cookie = who.session.cookie
    if (who.session.csrf !== undefined) headers['X-CSRF-Token'] = who.session.csrf
  }
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  const res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: signal ?? null })
  const text = await res.text()
  let parsed: unknown = text
  try {
    parsed = JSON.parse(text)
  } catch {
    // not JSON (the page)
  }
  return { status: res.status, body: parsed, headers: res.headers }
}

export const asUser = (userId: string): Caller => ({ secret: { token: SECRET, userId } })

/** The sign-in token of the newest console link in a list of bot notices. */
export function linkToken(notices: string[]): string | undefined {
  const link = [...notices].reverse().map(n => /#signin=([A-Za-z0-9_-]+)/.exec(n)).find(Boolean)
  return link?.[1]
}

/** Signs in with a one-time token: the session's cookie and CSRF token. */
export async function signIn(base: string, token: string): Promise<{ cookie: string; csrf: string; answer: Answer }> {
  const answer = await call(base, 'POST', '_relay_bridge/v1/session', {}, { token })
  const setCookie = answer.headers.get('set-cookie') ?? ''
  return { cookie: setCookie.split(';')[0] ?? '', csrf: answer.body?.csrf_token ?? '', answer }
}
