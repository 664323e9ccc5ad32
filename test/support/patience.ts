// How long a test waits for something that should happen. Waits end as soon as their condition holds, so a
// generous limit costs nothing when the code works; it only decides how long a broken test takes to say
// what it was waiting for. Minutes, not seconds: on a two-core machine that is busy with something else,
// a bridge process can take tens of seconds to start. RELAY_BRIDGE_TEST_PATIENCE_MS overrides it.
export const PATIENCE_MS = Number(process.env.RELAY_BRIDGE_TEST_PATIENCE_MS ?? 120_000)
