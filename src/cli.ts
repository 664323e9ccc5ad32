#!/usr/bin/env node
// The relay-bridge command line: start (default), generate-registration, migrate, login.
import './warnings.ts' // first: it must be in place before any dependency loads
import { Command, CommanderError } from 'commander'
import { chmod, readFile, stat, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CLI } from './cli-name.ts'
import { ConfigError, defaultOwner, loadConfig, loadConfigSync, missingEssentials, type Config } from './config.ts'
import { doublePuppetPath, ensureStoreKey, ensureTokens, writeRegistration } from './registration.ts'
import { openDatabase } from './db/open.ts'
import { migrate } from './db/migrate.ts'
import { createLogger } from './log.ts'
import { closest } from './suggest.ts'

const EXAMPLE = fileURLToPath(new URL('../config/config.example.yaml', import.meta.url))
const VERSION = (JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version

/** Exit codes: 0 fine, 1 failure, 2 the operator has to edit the configuration (or the command line) first. */
class Exit extends Error {
  readonly code: number
  constructor(code: number, message: string) {
    super(message)
    this.code = code
  }
}

/** A file named on the command line that cannot be read or written, said with the option that named it. */
function fileProblem(err: unknown, path: string, what: string, option: string): Exit | undefined {
  switch ((err as NodeJS.ErrnoException).code) {
    case 'EISDIR':
      return new Exit(2, `${path} is a directory, not a ${what}: give ${option} the path of the file, such as ${option} ${join(path, what === 'registration file' ? 'registration.yaml' : 'config.yaml')}.`)
    case 'ENOENT':
    case 'ENOTDIR':
      return new Exit(2, `The directory ${dirname(path)} does not exist, so the ${what} ${path} can be neither read nor written: create the directory, or give ${option} a path in an existing one.`)
    case 'EACCES':
    case 'EPERM':
      return new Exit(2, `No permission to use the ${what} ${path}: run relay-bridge as the user who owns it, or give ${option} a path that user can write.`)
    case 'EROFS':
      return new Exit(2, `The ${what} ${path} is on a read-only file system: give ${option} a path on a writable one.`)
    default:
      return undefined
  }
}

const CONFIG_FILE = ['configuration file', '-c'] as const

/** First run: no config yet. Write one from the example (readable by its owner only: it will hold the
 * appservice tokens) and say what to fill in. */
async function configOrFirstRun(path: string): Promise<Config> {
  const found = await stat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined
    throw fileProblem(err, path, ...CONFIG_FILE) ?? err
  })
  if (found?.isDirectory()) throw fileProblem(Object.assign(new Error(), { code: 'EISDIR' }), path, ...CONFIG_FILE)!
  if (!found) {
    await writeFile(path, await readFile(EXAMPLE), { mode: 0o600, flag: 'wx' }).catch((err: unknown) => {
      throw fileProblem(err, path, ...CONFIG_FILE) ?? err
    })
    const c = path === 'config.yaml' ? '' : ` -c ${path}`
    throw new Exit(
      2,
      `No configuration found, so I wrote ${path} from the example (readable by you only: it will hold the bridge's tokens). Fill in:\n` +
        '  - homeserver.address and homeserver.domain (your Synapse and its server name)\n' +
        '  - bridge.admin (your own Matrix id, such as @you:your.server: the bridge\'s admin)\n' +
        '  - appservice.address (how Synapse reaches the bridge)\n' +
        '  - signal.daemon_url (your signal-cli daemon)\n' +
        '  - database.uri (or leave it empty for the embedded database)\n' +
        `Then run: ${CLI} generate-registration${c}`,
    )
  }
  return loadConfig(path).catch((err: unknown) => {
    throw fileProblem(err, path, ...CONFIG_FILE) ?? err
  })
}

/** Whether others than the owner may read the file, as an octal mode ("0644"), or undefined. */
async function readableByOthers(path: string): Promise<string | undefined> {
  const mode = (await stat(path)).mode & 0o777
  return mode & 0o077 ? `0${mode.toString(8)}` : undefined
}

export function buildProgram(): Command {
  const program = new Command()
    .name('relay-bridge')
    .description('One Matrix appservice that unites a Signal group and a WhatsApp group in one room')
    .version(VERSION, '-V, --version', 'print the version and exit')
    .option('-c, --config <path>', 'configuration file', 'config.yaml')
    .option('-r, --registration <path>', 'appservice registration file', 'registration.yaml')
    .configureHelp({ showGlobalOptions: true })
    .exitOverride()
  const paths = () => program.opts<{ config: string; registration: string }>()

  // `relay-bridge bogus` would reach the default command as an argument ("too many arguments for 'start'").
  program.hook('preSubcommand', (_program, sub) => {
    const typed = program.args[0]
    if (sub.name() !== 'start' || typed === undefined || typed === 'start' || typed.startsWith('-')) return
    const meant = closest(typed, program.commands.map(c => c.name()))
    program.error(
      `error: unknown command '${typed}'${meant ? ` (did you mean ${meant}?)` : ''}. ` +
        `The commands are ${program.commands.map(c => c.name()).join(', ')}; \`${CLI} --help\` says what each does.`,
      { code: 'commander.unknownCommand', exitCode: 1 },
    )
  })

  program
    .command('start', { isDefault: true })
    .description('run the bridge')
    .action(async () => {
      const { config: configPath } = paths()
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
      const log = createLogger(config.logging.level)
      const mode = await readableByOthers(configPath)
      if (mode) log.warn(`${configPath} holds the bridge's tokens but other users of this machine may read it (mode ${mode}): run chmod 600 ${configPath}.`)
      const { runBridge } = await import('./bridge.ts')
      let code: number
      try {
        code = await runBridge(config, { log })
      } catch (err) {
        // Exit here even though the start failed: a dependency that hangs could keep the process alive.
        process.exit(report(err))
      }
      // Exit here rather than when the event loop empties: a dependency that hangs keeps a socket open.
      process.exit(code)
    })

  program
    .command('generate-registration')
    .description('fill in missing tokens and write the registration file for the homeserver')
    .action(async () => {
      const { config: configPath, registration } = paths()
      const before = await configOrFirstRun(configPath)
      if (before.homeserver.domain === 'example.org') {
        throw new Exit(2,
          `homeserver.domain in ${configPath} is still example.org, the example's value. Set it to your homeserver's server ` +
            'name (the part after the colon in your Matrix id), then run generate-registration again: the registration ' +
            "ties the bridge's users to that name.")
      }
      const { changed } = await ensureTokens(configPath)
      const mode = await readableByOthers(configPath)
      const notes: string[] = []
      if (mode) {
        await chmod(configPath, 0o600).then(
          () => notes.push(`Made ${configPath} readable by you only (it was ${mode}): it holds the bridge's tokens.`),
          () => notes.push(`${configPath} holds the bridge's tokens but other users may read it (mode ${mode}), and I could not change that: run chmod 600 ${configPath}.`),
        )
      }
      const config = await loadConfig(configPath)
      await writeRegistration(registration, config).catch((err: unknown) => {
        throw fileProblem(err, registration, 'registration file', '-r') ?? err
      })
      const dp = config.appservice.double_puppet.as_token ? doublePuppetPath(registration) : undefined
      console.log(
        [...notes, `${changed ? `Wrote new appservice tokens into ${configPath}. ` : ''}Wrote ${registration}${dp ? ` and ${dp} (double puppeting)` : ''}.`].join('\n') + '\n' +
          `Add ${dp ? 'both' : 'it'} to Synapse (homeserver.yaml: app_service_config_files) and restart Synapse.`,
      )
    })

  program
    .command('migrate')
    .description('apply database migrations and exit')
    .action(async () => {
      const config = await configOrFirstRun(paths().config)
      const db = await openDatabase(config.database.uri, config.data_dir, sentence => console.log(sentence))
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
        const { deviceId, deletedOnHomeserver, ghostDevices } = await resetEncryption({ db, botMxid, api, log })
        const ghosts = ghostDevices > 0 ? ` Forgot the own devices of ${ghostDevices} ghost${ghostDevices === 1 ? '' : 's'} too: each gets a new one when it next speaks in an encrypted room.` : ''
        console.log((deviceId
          ? `Forgot the bot's encryption device ${deviceId}${deletedOnHomeserver ? ' and deleted it on the homeserver' : ' (the homeserver kept it: delete it there by hand if you like)'}. ` +
            'The next start makes a new device and identity; people in encrypted rooms will see that the bot\'s identity changed (docs/operators.md §16).'
          : 'The bot had no encryption device yet; the next start with encryption allowed makes one.') + ghosts)
      } finally {
        await db.close()
      }
    })

  program
    .command('login')
    .description('link a relay account in this terminal by scanning a QR code')
    .argument('<network>', 'signal or whatsapp')
    .option('--phone <number>', 'WhatsApp: get a pairing code for this number instead of a QR code')
    .option('--owner <mxid>', 'Matrix user who owns the login (default: bridge.admin from the configuration)')
    .addHelpText('after', () => {
      const { config: configPath } = paths()
      try {
        const owner = defaultOwner(loadConfigSync(configPath))
        return owner
          ? `\nWith ${configPath}, a login made here without --owner belongs to ${owner}.`
          : `\n${configPath} sets no bridge.admin, so give --owner.`
      } catch {
        return `\n(${configPath} could not be read, so the default owner is unknown: give --owner, or -c with your configuration.)`
      }
    })
    .action(async (network: string, opts: { phone?: string; owner?: string }) => {
      if (network !== 'signal' && network !== 'whatsapp') throw new Exit(2, `Say which network to log in to: \`${CLI} login signal\` or \`${CLI} login whatsapp\`.`)
      const config = await configOrFirstRun(paths().config)
      const owner = opts.owner ?? defaultOwner(config)
      if (!owner) throw new Exit(2, `Say who owns this login with --owner @you:${config.homeserver.domain}, or set bridge.admin in ${paths().config}.`)
      const { terminalLogin } = await import('./terminal-login.ts')
      await terminalLogin(config, network, { ...(opts.phone ? { phone: opts.phone } : {}), owner })
    })

  return program
}

/** Prints what went wrong, once, and returns the exit code. */
function report(err: unknown): number {
  if (err instanceof CommanderError) return err.exitCode // commander has printed it
  if (err instanceof Exit || err instanceof ConfigError) {
    console.error(err.message)
    return err instanceof Exit ? err.code : 2
  }
  // Whatever else reaches here is a sentence from our own code; never a bare stack trace.
  console.error(`relay-bridge stopped: ${(err as Error).message}`)
  return 1
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv)
    return 0
  } catch (err) {
    return report(err)
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === (await import('node:fs')).realpathSync(process.argv[1])) {
  process.exitCode = await main(process.argv)
}
