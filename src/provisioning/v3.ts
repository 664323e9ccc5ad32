// The mautrix bridges' provisioning API v3 (mautrix/go bridgev2/matrix/provisioning.go), so that clients written
// for it link and unlink relay accounts here too: whoami, login/flows, login/start/{flow}, login/step/{process}/
// {step}/{type} (display_and_wait long-polls until the code changes or the phone links), logins, logout/{login}.
// The flows are per network (signal-qr, whatsapp-qr, whatsapp-phone), as this bridge has two.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Logger } from 'pino'
import { defaultLoginKind, mayManageLogin, type Viewer } from '../core/access.ts'
import type { LinkingEnv } from '../core/linking.ts'
import { unlinkAccount } from '../core/linking.ts'
import { HttpError, readJson, sendJson } from '../console/http.ts'
import { FLOWS, LoginProcess, LoginStepError, type ProcessDeps } from './login-process.ts'

export const V3_PREFIX = '/_matrix/provision/v3'

export interface V3Options extends LinkingEnv {
  qrImage: ProcessDeps['qrImage']
  onChange: () => void
  botMxid: string
  domain: string
  commandPrefix: string
  log: Logger
  /** Longest a display_and_wait request is held before it answers with the step unchanged (proxies end quiet
   * requests after a minute). */
  waitCapMs: number
  /** A login nobody has polled for this long is cancelled (the browser was closed). */
  abandonMs: number
}

const notFound = () => new HttpError(404, 'M_NOT_FOUND', 'Login not found')

export class ProvisioningV3 {
  readonly #o: V3Options
  readonly #processes = new Map<string, LoginProcess>()
  readonly #reaper: NodeJS.Timeout

  constructor(opts: V3Options) {
    this.#o = opts
    this.#reaper = setInterval(() => this.#reap(), Math.max(1000, Math.min(opts.abandonMs, 30_000)))
    this.#reaper.unref()
  }

  close(): void {
    clearInterval(this.#reaper)
    for (const p of this.#processes.values()) if (!p.finished) p.cancel()
    this.#processes.clear()
  }

  flows() {
    return FLOWS.filter(f => this.#o.networks.has(f.network)).map(({ id, name, description }) => ({ id, name, description }))
  }

  /** Handles one v3 request (path after the prefix); false when no route matches. */
  async handle(req: IncomingMessage, res: ServerResponse, path: string, url: URL, viewer: Viewer): Promise<boolean> {
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent)
    const [first, second] = parts
    const get = req.method === 'GET'
    const post = req.method === 'POST'
    if (get && first === 'whoami' && parts.length === 1) return this.#json(res, await this.#whoami(viewer))
    if (get && first === 'logins' && parts.length === 1) {
      return this.#json(res, { login_ids: (await this.#o.logins.list()).filter(l => mayManageLogin(l, viewer)).map(l => l.id) })
    }
    if (post && first === 'logout' && parts.length === 2) return this.#logout(res, second!, viewer)
    if (first !== 'login') return false
    if (get && second === 'flows' && parts.length === 2) return this.#json(res, { flows: this.flows() })
    if (post && second === 'start' && parts.length === 3) return this.#start(res, parts[2]!, url, viewer)
    if (post && second === 'step' && parts.length === 5) return this.#step(req, res, parts[2]!, parts[3]!, parts[4]!, viewer)
    return false
  }

  #json(res: ServerResponse, body: unknown): true {
    sendJson(res, 200, body)
    return true
  }

  async #whoami(viewer: Viewer) {
    const logins = (await this.#o.logins.list()).filter(l => l.ownerMxid === viewer.mxid)
    const bridgeState = { connected: 'CONNECTED', connecting: 'CONNECTING', disconnected: 'TRANSIENT_DISCONNECT', logged_out: 'LOGGED_OUT' } as const
    return {
      network: { displayname: 'relay-bridge', network_id: 'relay-bridge', beeper_bridge_type: 'relay-bridge' },
      login_flows: this.flows(),
      homeserver: this.#o.domain,
      bridge_bot: this.#o.botMxid,
      command_prefix: this.#o.commandPrefix,
      logins: logins.map(l => ({ id: l.id, name: l.displayName, state: { state_event: bridgeState[l.state], reason: l.stateMessage ?? undefined }, profile: { name: l.displayName } })),
    }
  }

  async #start(res: ServerResponse, flowId: string, url: URL, viewer: Viewer): Promise<true> {
    const flow = FLOWS.find(f => f.id === flowId && this.#o.networks.has(f.network))
    if (!flow) throw new HttpError(404, 'M_NOT_FOUND', `There is no login flow “${flowId}”. GET login/flows lists them.`)
    const relinkId = url.searchParams.get('login_id')
    let relink
    if (relinkId) {
      relink = await this.#o.logins.get(relinkId)
      // Someone else's login is answered as if it did not exist: ids are not secrets, but who has what is.
      if (!relink || !mayManageLogin(relink, viewer)) throw notFound()
      if (relink.network !== flow.network) throw new HttpError(400, 'M_INVALID_PARAM', `Login ${relink.id} is not a ${flow.network} login.`)
    }
    const process = new LoginProcess({ ...this.#o }, flow, viewer.mxid, defaultLoginKind(viewer.level), relink)
    this.#processes.set(process.id, process)
    const step = await this.#settle(() => process.start(), process)
    return this.#json(res, { login_id: process.id, ...step })
  }

  async #step(req: IncomingMessage, res: ServerResponse, processId: string, stepId: string, type: string, viewer: Viewer): Promise<true> {
    const process = this.#processes.get(processId)
    if (!process || process.actor !== viewer.mxid) throw notFound()
    const current = process.givenStep
    if (!current || current.step_id !== stepId) throw new HttpError(400, 'M_BAD_STATE', 'Step ID does not match')
    if (current.type !== type) throw new HttpError(400, 'M_BAD_STATE', 'Step type does not match')
    if (type === 'user_input') {
      const body = await readJson(req)
      return this.#json(res, { login_id: process.id, ...await this.#settle(() => process.submit(body), process) })
    }
    if (type !== 'display_and_wait') throw new HttpError(400, 'M_UNRECOGNIZED', `Invalid step type “${type}”.`)
    // A client that goes away stops the login, as with mautrix: nobody is left to show the code to.
    const gone = new AbortController()
    res.once('close', () => {
      if (!res.writableFinished) {
        gone.abort()
        if (!process.finished) process.cancel()
      }
    })
    const step = await this.#settle(() => process.wait(gone.signal, this.#o.waitCapMs), process)
    return this.#json(res, { login_id: process.id, ...step })
  }

  async #logout(res: ServerResponse, loginId: string, viewer: Viewer): Promise<true> {
    const all = await this.#o.logins.list()
    const targets = loginId === 'all' ? all.filter(l => l.ownerMxid === viewer.mxid) : all.filter(l => l.id === loginId && mayManageLogin(l, viewer))
    if (loginId !== 'all' && targets.length === 0) throw notFound()
    for (const l of targets) await unlinkAccount(this.#o, l)
    this.#o.log.info({ logins: targets.map(l => l.id), by: viewer.mxid }, 'Logged out through the provisioning API')
    this.#o.onChange()
    return this.#json(res, {})
  }

  /** Step failures become the API's errors; a finished process is forgotten once its end was told. */
  async #settle<T>(run: () => Promise<T>, process: LoginProcess): Promise<T> {
    try {
      const result = await run()
      if (process.finished) this.#processes.delete(process.id)
      return result
    } catch (err) {
      this.#processes.delete(process.id)
      if (err instanceof LoginStepError) throw new HttpError(err.status, err.errcode, err.message)
      throw err
    }
  }

  #reap(): void {
    const now = Date.now()
    for (const [id, p] of this.#processes) {
      if (p.waiting === 0 && now - p.lastUsed > this.#o.abandonMs) {
        this.#o.log.info({ flow: p.flow.id }, 'A provisioning login nobody polled any more was cancelled')
        p.cancel()
        this.#processes.delete(id)
      }
    }
  }
}
