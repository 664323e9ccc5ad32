#!/usr/bin/env bash
# The suite under load: three full runs back to back while two busy loops keep both cores occupied, as a
# newcomer's busy laptop or a shared CI machine would. Prints one line per run and a summary; exits non-zero
# if any run had a failed or skipped test. Usage: scripts/test-under-load.sh [runs] (default 3).
# PostgreSQL cases run when RELAY_BRIDGE_TEST_DATABASE_URI is set (or wrap this script in with-postgres.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
OUT="$(mktemp -d "${TMPDIR:-/tmp}/relay-bridge-load.XXXXXX")"
LOOPS=()
cleanup() {
  for pid in "${LOOPS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$OUT"
}
trap cleanup EXIT INT TERM
for _ in 1 2; do
  node -e 'for(;;){}' &
  LOOPS+=("$!")
done
echo "two busy loops running (pids ${LOOPS[*]}); $(nproc) cores; PostgreSQL: $([ -n "${RELAY_BRIDGE_TEST_DATABASE_URI:-}" ] && echo yes || echo no)"
bad=0
summary=()
for i in $(seq 1 "$RUNS"); do
  start=$(date +%s)
  status=0
  npx vitest run --reporter=dot --reporter=json --outputFile="$OUT/run-$i.json" >"$OUT/run-$i.log" 2>&1 || status=$?
  secs=$(( $(date +%s) - start ))
  line=$(node -e '
    const fs = require("node:fs")
    let r
    try { r = JSON.parse(fs.readFileSync(process.argv[1], "utf8")) } catch { console.log("no results (the run did not finish)"); process.exit(1) }
    const skipped = r.numPendingTests + r.numTodoTests
    const failedFiles = r.testResults.filter(f => f.status === "failed").map(f => f.name.replace(process.cwd() + "/", ""))
    // What failed, in a line each (the run directory is removed at the end): the test and the first line of why.
    for (const f of r.testResults) {
      const file = f.name.replace(process.cwd() + "/", "")
      for (const a of f.assertionResults.filter(a => a.status === "failed")) {
        console.error(`  failed: ${file} > ${a.fullName}: ${String(a.failureMessages?.[0] ?? "").split("\n")[0].slice(0, 300)}`)
      }
      if (f.status === "failed" && !f.assertionResults.some(a => a.status === "failed")) console.error(`  failed: ${file}: ${String(f.message ?? "").split("\n")[0].slice(0, 300)}`)
    }
    console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped` + (failedFiles.length ? `; failing: ${failedFiles.join(", ")}` : ""))
    process.exit(r.numFailedTests || skipped || !r.success ? 1 : 0)
  ' "$OUT/run-$i.json") || { bad=1; tail -n 40 "$OUT/run-$i.log"; }
  [ "$status" -eq 0 ] || bad=1
  summary+=("run $i: $line in ${secs} s (exit $status)")
  echo "${summary[-1]}"
done
echo "--- under load (two busy loops on $(nproc) cores), $(node --version):"
printf '%s\n' "${summary[@]}"
exit "$bad"
