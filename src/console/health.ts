// The bridge's health at a glance, for the console: the homeserver, each service a network depends on (the
// signal-cli daemon and its version), the database, where the metrics are, and the bridge's own version.
import { readFileSync } from 'node:fs'
import type { RemoteNetworkId } from '../core/model.ts'
import type { RemoteNetwork, ServiceHealth } from '../core/network.ts'

export interface HealthView {
  version: string
  homeserver: { reachable: boolean; problem?: string }
  database: { reachable: boolean; problem?: string }
  services: ServiceHealth[]
  metrics_url: string | null
}

export const BRIDGE_VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version

export interface HealthDeps {
  /** Resolves when the homeserver answers the bridge (its token accepted). */
  homeserver: () => Promise<unknown>
  /** Resolves when the database answers a query. */
  database: () => Promise<unknown>
  networks: Map<RemoteNetworkId, RemoteNetwork>
  metricsUrl: string | null
}

const within = <T>(ms: number, p: Promise<T>): Promise<T> =>
  Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms / 1000} s`)), ms).unref())])

async function check(run: () => Promise<unknown>): Promise<{ reachable: boolean; problem?: string }> {
  try {
    await within(5_000, run())
    return { reachable: true }
  } catch (err) {
    return { reachable: false, problem: (err as Error).message }
  }
}

export async function checkHealth(d: HealthDeps): Promise<HealthView> {
  const [homeserver, database, services] = await Promise.all([
    check(d.homeserver),
    check(d.database),
    Promise.all([...d.networks.values()].flatMap(n => (n.health ? [within(6_000, n.health()).catch((err: Error) => ({ name: n.network, reachable: false, problem: err.message }))] : []))),
  ])
  // Nothing here changes unless the health does: open pages are sent a view only when it differs.
  return { version: BRIDGE_VERSION, homeserver, database, services, metrics_url: d.metricsUrl }
}
