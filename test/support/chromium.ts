// The real browser the console's tests drive: Chromium from Debian's packages, through playwright-core (which
// downloads no browser of its own). Without it those tests fail with a sentence, never skip unseen.
import { existsSync } from 'node:fs'
import type { Browser } from 'playwright-core'

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser']

export const NO_CHROMIUM = 'The console\'s browser tests need Chromium from Debian\'s packages and it is not installed: run ' +
  '`apt-get install -y chromium` (.ci/run installs it when missing), or set RELAY_BRIDGE_CHROMIUM to a Chromium binary.'

export function chromiumPath(env: NodeJS.ProcessEnv = process.env): string {
  const found = [env.RELAY_BRIDGE_CHROMIUM, ...CANDIDATES].find(p => p && existsSync(p))
  if (!found) throw new Error(NO_CHROMIUM)
  return found
}

export async function launchChromium(): Promise<Browser> {
  const executablePath = chromiumPath()
  const { chromium } = await import('playwright-core')
  // As root Chromium refuses its sandbox; playwright then passes --no-sandbox (chromiumSandbox is off by default).
  return chromium.launch({ executablePath, args: ['--disable-gpu', '--disable-dev-shm-usage'] })
}
