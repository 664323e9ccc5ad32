#!/usr/bin/env node
// The relay-bridge command line: start (default), generate-registration, migrate, login.
import { Command, CommanderError } from 'commander'
import { copyFile, access } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { ConfigError, loadConfig, missingEssentials, type Config } from './config.ts'
import { ensureStoreKey, ensureTokens, writeRegistration } from './registration.ts'
import { openDatabase } from './db/open.ts'
import { migrate } from './db/migrate.ts'
import { createLogger } from './log.ts'

const EXAMPLE = fileURLToPath(new URL('../config/config.example.yaml', import.meta.url))

/** Exit codes: 0 fine, 1 failure, 2 the operator has to edit the configuration first. */
class Exit extends Error {
  readonly code: number
  constructor(code: number, message: string) {
    super(message)
    this.code = code
  }
}

const exists = (path: string): Promise<boolean> => access(path).then(() => true, () => false)

/** First run: no config yet. Write one from the example and say what to fill in. */
async function configOrFirstRun(path: string): Promise<Config> {
  if (!(await exists(path))) {
    await copyFile(EXAMPLE, path)
    throw new Exit(
      2,
      `No configuration found, so I wrote ${path} from the example. Fill in at least:\n` +
        '  - homeserver.address and homeserver.domain (your Synapse and its server name)\n' +
        '  - appservice.address (how Synapse reaches the bridge)\n' +
        '  - database.uri (or leave it empty for the embedded database)\n' +
        '  - signal.daemon_url (your signal-cli daemon)\n' +
        `Then run: relay-bridge generate-registration -c ${path}`,
    )
  }
  return loadConfig(path)
}

export function buildProgram(): Command {
  const program = new Command()
    .name('relay-bridge')
    .description('One Matrix appservice that unites a Signal group and a WhatsApp group in one room')
    .option('-c, --config <path>', 'configuration file', 'config.yaml')
    .option('-r, --registration <path>', 'appservice registration file', 'registration.yaml')
    .exitOverride()

  program
    .command('start', { isDefault: true })
    .description('run the bridge')
    .action(async () => {
      const { config: configPath } = program.opts<{ config: string }>()
      let config = await configOrFirstRun(configPath)
      if (config.encryption.allow && !config.encryption.store_key) {
        // The first start with encryption: the at-rest key is made here, like the tokens, and kept in the file.
        await ensureStoreKey(configPath)
        console.log(`Wrote a new encryption.store_key into ${configPath}. Keep it with the database: the bridge's encryption keys cannot be read without it.`)
        config = await loadConfig(configPath)
      }
      const missing = missingEssentials(config)
      if (missing.length > 0) {
        throw new Exit(2, `Before the bridge can start, fill in ${configPath}:\n${missing.map(m => `  - ${m}`).join('\n')}`)
      }
      const { runBridge } = await import('./bridge.ts')
      // Exit here rather than when the event loop empties: a dependency that hangs keeps a socket open.
      process.exit(await runBridge(config))
    })

  program
    .command('generate-registration')
    .description('fill in missing tokens and write the registration file for the homeserver')
    .action(async () => {
      const { config: configPath, registration } = program.opts<{ config: string; registration: string }>()
      await configOrFirstRun(configPath)
      const { changed } = await ensureTokens(configPath)
      const config = await loadConfig(configPath)
      await writeRegistration(registration, config)
      console.log(
        `${changed ? `Wrote new appservice tokens into ${configPath}. ` : ''}Wrote ${registration}.\n` +
          'Add it to Synapse (homeserver.yaml: app_service_config_files) and restart Synapse.',
      )
    })

  program
    .command('migrate')
    .description('apply database migrations and exit')
    .action(async () => {
      const { config: configPath } = program.opts<{ config: string }>()
      const config = await configOrFirstRun(configPath)
      const db = await openDatabase(config.database.uri, config.data_dir)
      try {
        const applied = await migrate(db)
        console.log(applied.length ? `Applied ${applied.join(', ')}.` : 'The database is up to date.')
      } finally {
        await db.close()
      }
    })

  program
    .command('reset-encryption')
    .description('start a fresh encryption identity for the bot (when its keys or store_key are lost); stop the bridge first')
    .action(async () => {
      const { config: configPath } = program.opts<{ config: string }>()
      const config = await configOrFirstRun(configPath)
      const db = await openDatabase(config.database.uri, config.data_dir)
      try {
        await migrate(db)
        const { resetEncryption } = await import('./matrix/encryption.ts')
        const { MatrixClientApi } = await import('./matrix/client.ts')
        const log = createLogger('warn')
        const botMxid = `@${config.appservice.bot.username}:${config.homeserver.domain}`
        const api = new MatrixClientApi({
          homeserverUrl: config.homeserver.address, asToken: config.appservice.as_token, domain: config.homeserver.domain,
          botLocalpart: config.appservice.bot.username, log, requestTimeoutMs: 10_000,
        })
        const { deviceId, deletedOnHomeserver } = await resetEncryption({ db, botMxid, api, log })
        console.log(deviceId
          ? `Forgot the bot's encryption device ${deviceId}${deletedOnHomeserver ? ' and deleted it on the homeserver' : ' (the homeserver kept it: delete it there by hand if you like)'}. ` +
            'The next start makes a new device and identity; people in encrypted rooms will see that the bot\'s identity changed (docs/operators.md §16).'
          : 'The bot had no encryption device yet; the next start with encryption allowed makes one.')
      } finally {
        await db.close()
      }
    })

  program
    .command('login')
    .description('link a relay account in this terminal by scanning a QR code')
    .argument('<network>', 'signal or whatsapp')
    .option('--phone <number>', 'WhatsApp: get a pairing code for this number instead of a QR code')
    .option('--owner <mxid>', 'Matrix user who owns the login', '')
    .action(async (network: string, opts: { phone?: string; owner: string }) => {
      if (network !== 'signal' && network !== 'whatsapp') throw new Exit(1, 'Say which network: signal or whatsapp.')
      const { config: configPath } = program.opts<{ config: string }>()
      const config = await configOrFirstRun(configPath)
      const { terminalLogin } = await import('./terminal-login.ts')
      await terminalLogin(config, network, opts)
    })

  return program
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv)
    return 0
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode
    if (err instanceof Exit) {
      console.error(err.message)
      return err.code
    }
    if (err instanceof ConfigError) {
      console.error(err.message)
      return 2
    }
    // Whatever else reaches here is a sentence from our own code; never a bare stack trace.
    const log = createLogger('error')
    log.error({ err: (err as Error).message }, (err as Error).message)
    console.error(`relay-bridge stopped: ${(err as Error).message}`)
    return 1
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === (await import('node:fs')).realpathSync(process.argv[1])) {
  process.exitCode = await main(process.argv)
}
