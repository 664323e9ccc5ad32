#!/usr/bin/env bash
# Regenerates the console's screenshots in docs/ (console-*.png): runs the console's browser test, which drives
# the real bridge and Debian's Chromium through sign-in, held messages, a relink and a phone-sized screen, and
# saves each main view as it passes it.
set -euo pipefail
cd "$(dirname "$0")/.."
RELAY_BRIDGE_SCREENSHOTS=1 npx vitest run test/console/browser.test.ts
ls -l docs/console-*.png
