// Linking and unlinking a relay account, shared by the `login`/`logout` commands and the provisioning API, so
// that both release what was held and record a logout the same way.
import { UserError } from './errors.ts'
import type { LoginMedia } from './login-media.ts'
import type { Members } from './members.ts'
import type { SqlLoginStore } from './logins.ts'
import { NETWORK_LABEL, type RemoteNetworkId } from './model.ts'
import type { Login, LoginRequest, LoginUi, RemoteNetwork } from './network.ts'
import type { Outbox } from './outbox.ts'
import type { PortalStore } from './portals.ts'

export interface LinkingEnv {
  networks: Map<RemoteNetworkId, RemoteNetwork>
  logins: SqlLoginStore
  outbox: Outbox
  portals: PortalStore
  /** The media files each login brought: deleted with it. */
  loginMedia: LoginMedia
  members: Pick<Members, 'ownLoginLinked'>
}

export function adapterFor(env: Pick<LinkingEnv, 'networks'>, network: RemoteNetworkId): RemoteNetwork {
  const adapter = env.networks.get(network)
  if (!adapter) throw new UserError(`${NETWORK_LABEL[network]} is not enabled on this bridge.`)
  return adapter
}

/** Runs a login to the end (a person scans a code meanwhile); messages held for the network then go out. */
export async function linkAccount(env: LinkingEnv, network: RemoteNetworkId, request: LoginRequest, ui: LoginUi): Promise<Login> {
  const login = await adapterFor(env, network).login(request, ui)
  await env.members.ownLoginLinked(login)
  await env.outbox.release(network)
  return login
}

/** Unlinks the account and deletes it and its data for good (what the network kept of it, its media cache, its
 * row); rooms it relayed keep their links and lose their relay on its network, so their messages wait until
 * another relay account is set there. */
export async function unlinkAccount(env: LinkingEnv, login: Login): Promise<void> {
  await adapterFor(env, login.network).logout(login)
  await env.loginMedia.forget(login.id)
  await env.logins.remove(login.id)
  env.portals.forgetLogin(login.id)
}
