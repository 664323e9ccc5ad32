// What the operator changes when the bridge cannot open one of its two listeners: the system's error
// (`listen EADDRINUSE 127.0.0.1:9100`) names a port, not the setting that chose it.

export interface Listener {
  /** The config keys of the listener, such as `metrics.port` and `metrics.hostname`. */
  port: string
  hostname: string
  /** What listens there, for the sentence ("the homeserver's transactions"). */
  what: string
  /** What else must change with the port (the appservice port is also in the registration). */
  alsoChange?: string
}

export const APPSERVICE_LISTENER: Listener = {
  port: 'appservice.port', hostname: 'appservice.hostname', what: "the homeserver's transactions",
  alsoChange: ' (and appservice.address to match, then run generate-registration again and restart the homeserver)',
}
export const METRICS_LISTENER: Listener = {
  port: 'metrics.port', hostname: 'metrics.hostname', what: 'metrics and health checks',
  alsoChange: ', or set metrics.enabled to false',
}

const envOf = (key: string): string => `RELAY_BRIDGE_${key.replace('.', '_').toUpperCase()}`

/** A sentence naming the setting to change for a failed listen, or undefined for an error that is no listen error. */
export function listenProblem(err: unknown, listener: Listener, hostname: string, port: number): string | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  const at = `${hostname}:${port}`
  switch (code) {
    case 'EADDRINUSE':
      return `Another program already listens on ${at}, so the bridge cannot receive ${listener.what} there: stop that program, ` +
        `or choose a free port in ${listener.port} (${envOf(listener.port)})${listener.alsoChange ?? ''}.`
    case 'EACCES':
    case 'EPERM':
      return `The bridge may not listen on ${at} (ports below 1024 need privileges): choose a port above 1023 in ${listener.port}${listener.alsoChange ?? ''}.`
    case 'EADDRNOTAVAIL':
      return `${hostname} is not an address of this machine, so the bridge cannot listen there for ${listener.what}: ` +
        `set ${listener.hostname} to one of its addresses (127.0.0.1, or 0.0.0.0 for all).`
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `${listener.hostname} (${hostname}) is not a name this machine can resolve: set it to an address such as 127.0.0.1, or 0.0.0.0 for all.`
    default:
      return undefined
  }
}
