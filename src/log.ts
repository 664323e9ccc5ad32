// JSON logs with secrets redacted wherever they appear in a logged object.
import { pino, type Logger } from 'pino'

export const REDACT_PATHS = [
  '*.as_token', '*.hs_token', 'as_token', 'hs_token', '*.access_token', 'access_token',
  '*.authorization', '*.Authorization', 'headers.authorization', 'req.headers.authorization',
  '*.password', 'config.database.uri', '*.uri', 'appservice.as_token', 'appservice.hs_token',
  'config.appservice.as_token', 'config.appservice.hs_token',
]

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    { level, base: { app: 'relay-bridge' }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } },
    destination as pino.DestinationStream | undefined,
  )
}
