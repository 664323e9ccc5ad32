// One login started through the provisioning API, as the steps of the mautrix bridges' v3 API: a QR code or
// pairing code to show (display_and_wait, long-polled until it changes), a phone number to ask for (user_input),
// then complete. Underneath it is the same login the `login` command runs (core/linking.ts); this only turns
// its UI callbacks into steps a client can poll.
import { HttpError } from '../http-error.ts'
import { randomBytes } from 'node:crypto'
import { UserError } from '../core/errors.ts'
import { linkAccount, type LinkingEnv } from '../core/linking.ts'
import { NETWORK_LABEL, type RemoteNetworkId } from '../core/model.ts'
import type { Login, LoginKind, LoginUi } from '../core/network.ts'

export interface Flow {
  id: string
  name: string
  description: string
  network: RemoteNetworkId
  /** Asks for the phone number first and shows a pairing code instead of a QR code. */
  pairingCode: boolean
}

export const FLOWS: Flow[] = [
  { id: 'signal-qr', network: 'signal', pairingCode: false, name: 'Signal: QR code', description: 'Scan a QR code in Signal → Settings → Linked devices to link a Signal account to the bridge' },
  { id: 'whatsapp-qr', network: 'whatsapp', pairingCode: false, name: 'WhatsApp: QR code', description: 'Scan a QR code in WhatsApp → Linked devices to link a WhatsApp account to the bridge' },
  { id: 'whatsapp-phone', network: 'whatsapp', pairingCode: true, name: 'WhatsApp: pairing code', description: 'Give the phone number and type the pairing code it gets into WhatsApp → Linked devices' },
]

export interface DisplayStep {
  type: 'display_and_wait'
  step_id: string
  instructions: string
  display_and_wait: { type: 'qr' | 'code'; data: string; image_url?: string }
}
export interface InputStep {
  type: 'user_input'
  step_id: string
  instructions: string
  user_input: { fields: Array<{ type: 'phone_number'; id: string; name: string; description: string; pattern?: string }> }
}
export interface CompleteStep {
  type: 'complete'
  step_id: string
  instructions: string
  complete: { user_login_id: string }
}
export type Step = DisplayStep | InputStep | CompleteStep

/** A failure to tell the client, with the mautrix-style error code. */
export class LoginStepError extends HttpError {}

export interface ProcessDeps extends LinkingEnv {
  /** Renders QR data as an image for clients that would rather show an image (a data: URL). */
  qrImage: (data: string) => Promise<string>
  /** Something about logins changed (a code shown, a login linked): live views refresh. */
  onChange: () => void
}

export class LoginProcess {
  readonly id = randomBytes(12).toString('hex')
  readonly flow: Flow
  readonly actor: string
  /** The login being linked again, if this is a relink: the new link keeps its owner. */
  readonly relink: Login | undefined
  /** Progress sentences the network said meanwhile (shown by the console under the code). */
  readonly progress: string[] = []
  #step: Step | undefined
  #failure: LoginStepError | undefined
  /** Bumped at every change; a wait returns once it passes what the client was last given. */
  #version = 0
  #given = 0
  #waiters = new Set<() => void>()
  readonly #abort = new AbortController()
  readonly #deps: ProcessDeps
  #started = false
  lastUsed = Date.now()
  waiting = 0

  /** What the new login will be: a relink keeps the kind it had. */
  readonly kind: LoginKind

  constructor(deps: ProcessDeps, flow: Flow, actor: string, kind: LoginKind, relink?: Login) {
    this.#deps = deps
    this.flow = flow
    this.actor = actor
    this.relink = relink
    this.kind = relink?.kind ?? kind
  }

  get step(): Step | undefined {
    return this.#step
  }

  /** The step the client was last given: the one its next request names (the login may have moved on since). */
  get givenStep(): Step | undefined {
    return this.#givenStep
  }
  #givenStep: Step | undefined

  get finished(): boolean {
    return this.#failure !== undefined || this.#step?.type === 'complete'
  }

  /** The first step: the phone number to ask for, or the first code once the network has one. */
  async start(): Promise<Step> {
    if (this.flow.pairingCode) {
      this.#set({
        type: 'user_input', step_id: `relay-bridge.${this.flow.network}.phone`,
        instructions: 'Give the relay phone number in international form, with its country code.',
        user_input: { fields: [{ type: 'phone_number', id: 'phone_number', name: 'Phone number', description: 'The WhatsApp phone number in international form, e.g. +15550100042', pattern: '^\\+?[0-9 ()-]{6,20}$' }] },
      })
      this.#given = this.#version
      this.#givenStep = this.#step
      return this.#step!
    }
    this.#run()
    return this.#next(undefined, 0)
  }

  /** The phone number for a pairing-code login: answers with the code to type on the phone. */
  async submit(input: Record<string, unknown>): Promise<Step> {
    const phone = typeof input.phone_number === 'string' ? input.phone_number : ''
    if (!/^\+?[0-9 ()-]{6,20}$/.test(phone)) {
      throw new LoginStepError(400, 'M_INVALID_PARAM', 'Give the relay phone number in international form with its country code, for example +15550100042.')
    }
    this.#run(phone.replace(/[^0-9]/g, ''))
    return this.#next(undefined, 0)
  }

  /** Long-polls for the next step: a new code, the login completed, or (after `capMs`) the step as it is, so
   * that proxies that end quiet requests do not break the wait. Rejects with the login's failure. */
  wait(signal: AbortSignal | undefined, capMs: number): Promise<Step> {
    return this.#next(signal, capMs)
  }

  cancel(): void {
    this.#abort.abort()
    this.#fail(new LoginStepError(400, 'ORG.RELAY_BRIDGE.LOGIN_CANCELLED', 'The login was cancelled.'))
  }

  #run(phoneNumber?: string): void {
    if (this.#started) throw new LoginStepError(400, 'M_BAD_STATE', 'This login has already started.')
    this.#started = true
    const network = this.flow.network
    const ui: LoginUi = {
      showQr: async (data, caption) => {
        const image_url = await this.#deps.qrImage(data)
        this.#set({ type: 'display_and_wait', step_id: `relay-bridge.${network}.qr`, instructions: caption, display_and_wait: { type: 'qr', data, image_url } })
      },
      showCode: async (code, caption) => {
        this.#set({ type: 'display_and_wait', step_id: `relay-bridge.${network}.code`, instructions: caption, display_and_wait: { type: 'code', data: code } })
      },
      say: async text => {
        this.progress.push(text)
      },
    }
    const owner = this.relink?.ownerMxid ?? this.actor
    linkAccount(this.#deps, network, { ownerMxid: owner, kind: this.kind, signal: this.#abort.signal, ...(phoneNumber ? { phoneNumber } : {}) }, ui)
      .then(login => {
        this.#set({ type: 'complete', step_id: `relay-bridge.${network}.complete`, instructions: `Linked: the ${NETWORK_LABEL[network]} account is login ${login.id}.`, complete: { user_login_id: login.id } })
      })
      .catch((err: unknown) => {
        this.#fail(err instanceof UserError
          ? new LoginStepError(400, 'ORG.RELAY_BRIDGE.LOGIN_FAILED', err.message)
          : new LoginStepError(500, 'M_UNKNOWN', `The login failed: ${(err as Error).message}. Start it again.`))
      })
  }

  #set(step: Step): void {
    if (this.finished) return
    this.#step = step
    this.#version++
    this.#wake()
  }

  #fail(err: LoginStepError): void {
    if (this.finished) return
    this.#failure = err
    this.#version++
    this.#wake()
  }

  #wake(): void {
    this.lastUsed = Date.now()
    for (const w of this.#waiters) w()
    this.#deps.onChange()
  }

  async #next(signal: AbortSignal | undefined, capMs: number): Promise<Step> {
    this.waiting++
    this.lastUsed = Date.now()
    try {
      await new Promise<void>(resolve => {
        if (this.#version > this.#given || !this.#started) return resolve()
        const done = () => {
          clearTimeout(timer)
          this.#waiters.delete(done)
          signal?.removeEventListener('abort', done)
          resolve()
        }
        const timer = capMs > 0 ? setTimeout(done, capMs) : undefined
        this.#waiters.add(done)
        signal?.addEventListener('abort', done, { once: true })
      })
    } finally {
      this.waiting--
      this.lastUsed = Date.now()
    }
    if (this.#failure) throw this.#failure
    if (!this.#step) {
      // The cap passed before the network showed a first code: nothing to show yet is no error, but there is no
      // step to return either, so wait on (only the first code can be this slow, and the network times out).
      if (signal?.aborted) throw new LoginStepError(400, 'ORG.RELAY_BRIDGE.LOGIN_CANCELLED', 'The login was cancelled.')
      return this.#next(signal, capMs)
    }
    this.#given = this.#version
    this.#givenStep = this.#step
    return this.#step
  }
}
