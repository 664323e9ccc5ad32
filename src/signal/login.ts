// Linking the bridge as a secondary device of a Signal account (signal-cli.md §5 startLink/finishLink, §11.4).
import { retryCommand, type LoginUi } from '../core/network.ts'
import { UserError } from '../core/errors.ts'
import { SignalRpcError, type SignalClient } from './client.ts'

export const DEVICE_NAME = 'relay-bridge'

export interface LinkedAccount {
  number: string
  aci: string
}

/** Shows the link QR code and waits (with no timeout) until the phone scans it. */
export async function linkDevice(client: SignalClient, ui: LoginUi, signal?: AbortSignal): Promise<LinkedAccount> {
  const again = retryCommand(ui, 'signal')
  let uri: string
  try {
    // No `account`: linking creates one (multi-account mode only).
    ;({ deviceLinkUri: uri } = await client.call<{ deviceLinkUri: string }>('startLink', {}))
  } catch (err) {
    throw new UserError(
      `The Signal daemon could not start a link request (${describe(err)}). Check that signal-cli is running and online, then try \`${again}\` again.`,
    )
  }
  await ui.showQr(
    uri,
    'Open Signal on your phone → Settings → Linked devices → Link new device, and scan this code. It works once and expires after a few minutes.',
  )
  let number: string
  try {
    ;({ number } = await client.call<{ number: string }>('finishLink', { deviceLinkUri: uri, deviceName: DEVICE_NAME }, { timeoutMs: 0, signal }))
  } catch (err) {
    if (err instanceof SignalRpcError && /timed out/i.test(err.rpcMessage)) {
      throw new UserError(`The link code expired before it was scanned. Send \`${again}\` again for a fresh code.`)
    }
    if (err instanceof SignalRpcError && /already exists/i.test(err.rpcMessage)) {
      throw new UserError(
        `The Signal daemon still holds this account from an earlier link. The operator should restart signal-cli so it notices the old link is gone, then try \`${again}\` again.`,
      )
    }
    throw new UserError(`Linking failed (${describe(err)}). Try \`${again}\` again.`)
  }
  const aci = await accountAci(client, number, again)
  return { number, aci }
}

/** The account's own ACI: its stable person id (never the number). */
export async function accountAci(client: SignalClient, number: string, again = '!relay login signal'): Promise<string> {
  const status = await client.call<Array<{ number?: string | null; uuid?: string | null }>>('getUserStatus', {
    account: number,
    recipient: [number],
  })
  const uuid = status.find(s => s.number === number)?.uuid ?? status[0]?.uuid
  if (!uuid) {
    throw new UserError(`The device was linked, but Signal did not tell the bridge the account id. Try \`${again}\` again in a minute.`)
  }
  return uuid.toLowerCase()
}

function describe(err: unknown): string {
  if (err instanceof SignalRpcError) return `error ${err.code}`
  return err instanceof Error ? err.name : 'unknown error'
}
