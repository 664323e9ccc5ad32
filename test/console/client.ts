// A provisioning API client for tests: the shared-secret way or a Matrix OpenID token (as mautrix clients call it),
// or a browser's session (cookie and CSRF token, as the console page calls it).
import type { FakeHomeserver } from '../fakes/homeserver.ts'

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

/** `Authorization: Bearer openid:<token>`, with ?user_id= when given (mautrix clients always give it). */
export const withOpenId = (token: string, userId?: string): Caller => ({ secret: { token: `openid:${token}`, ...(userId ? { userId } : {}) } })

/** What a Matrix client does to prove who it is to a third party: logs in to its homeserver and asks it for an
 * OpenID token (POST /_matrix/client/v3/user/{userId}/openid/request_token). */
export async function openIdToken(hs: FakeHomeserver, userId: string): Promise<{ access_token: string; token_type: string; matrix_server_name: string; expires_in: number }> {
  const { accessToken } = hs.login(userId)
  const res = await fetch(`${hs.url}/_matrix/client/v3/user/${encodeURIComponent(userId)}/openid/request_token`, {
    method: 'POST', headers: { Authorization: `Bearer ${accessToken}`, 'Content-Type': 'application/json' }, body: '{}',
  })
  if (!res.ok) throw new Error(`the homeserver refused an OpenID token for ${userId}: ${res.status} ${await res.text()}`)
  return await res.json() as { access_token: string; token_type: string; matrix_server_name: string; expires_in: number }
}

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
