// The bot-sdk logs through a process-wide LogService that, by default, prints to the console and at
// TRACE level dumps request and response bodies. Route it into our pino logger instead, keeping only
// the module name and plain strings: bodies and objects (which may hold message text or tokens) are
// dropped, and anything that looks like a token in a string is masked.
import { LogLevel, LogService } from '@vector-im/matrix-bot-sdk'
import type { Logger } from 'pino'

const TOKEN_IN_TEXT = /(access_token=|Bearer\s+|as_token["':=\s]+|hs_token["':=\s]+)[^\s&"']+/gi

function sanitize(parts: unknown[]): string {
  return parts
    .map((p) => {
      if (typeof p === 'string') return p.replace(TOKEN_IN_TEXT, '$1[redacted]')
      if (typeof p === 'number' || typeof p === 'boolean') return String(p)
      if (p instanceof Error) {
        const code = (p as Error & { code?: unknown }).code
        return typeof code === 'string' ? `${p.name} ${code}` : p.name
      }
      return '[object]'
    })
    .join(' ')
}

let routedTo: Logger | undefined

/** Idempotent; the last logger given wins (LogService is global to the process). */
export function routeBotSdkLogs(log: Logger): void {
  if (routedTo === log) return
  routedTo = log
  const child = log.child({ module: 'bot-sdk' })
  // Everything goes to debug: the bridge reports failures itself, with context, where it handles them.
  const sink = (module: string, ...rest: unknown[]) => {
    if (child.isLevelEnabled('debug')) child.debug({ sdkModule: module }, sanitize(rest))
  }
  LogService.setLogger({ trace: sink, debug: sink, info: sink, warn: sink, error: sink })
  // Never TRACE: at that level the SDK serialises bodies before our sink could drop them.
  LogService.setLevel(log.isLevelEnabled('debug') ? LogLevel.DEBUG : LogLevel.INFO)
}
