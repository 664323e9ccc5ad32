// Who may see and change what outside the chat commands (the console and the provisioning API), by the same rules
// the commands apply: bridge.permissions for the level, the login's owner or an admin for a login.
import { levelOf, type Level } from './commands/context.ts'
import type { Login, LoginKind } from './network.ts'

export interface Viewer {
  mxid: string
  level: Level
}

export const viewerOf = (mxid: string, permissions: Record<string, string>): Viewer => ({ mxid, level: levelOf(mxid, permissions) })

/** Managing logins and bridging rooms takes the "user" level, as the `login` and `link` commands do. */
export const mayManageBridge = (v: Viewer): boolean => v.level === 'user' || v.level === 'admin'

/** A login is seen and changed by its owner and by admins only (the `logins` and `logout` commands' rule). */
export const mayManageLogin = (login: Login, v: Viewer): boolean => v.level === 'admin' || login.ownerMxid === v.mxid

/** A phone number (or a JID that holds one) is shown to the login's owner and to admins, nobody else. */
export const maySeeAddress = mayManageLogin

/** A login linked without saying its kind: an admin's is a relay account, anyone else's is their own. */
export const defaultLoginKind = (level: Level): LoginKind => (level === 'admin' ? 'relay' : 'personal')
