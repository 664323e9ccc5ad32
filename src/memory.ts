// Memory housekeeping of the running process (docs/performance.md, "Memory").
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

type Gc = (options: { type: 'major'; execution: 'async'; flavor: 'last-resort' }) => void | Promise<void>

/** Asks V8, once the start is over, for the collection it makes when memory runs out: every full collection
 * needed to free all garbage, the heap compacted and its empty pages given back. A start leaves ~12 MB of
 * garbage (module loading, migrations, Baileys' WebAssembly decoded from base64) that V8 would otherwise keep:
 * with a 4 MB young generation an idle bridge allocates too little to bring on a full collection, and its
 * memory reducer only starts after one. Asynchronous: the collection (0.1–0.35 s) runs as a task of its own,
 * not inside the caller. Node has no API for this, so `gc` is taken from a context made while --expose-gc is
 * on, and the flag is turned off again so that no later context gets it. */
export function compactHeap(): void {
  const own = (globalThis as { gc?: Gc }).gc
  let gc = own
  if (!gc) {
    setFlagsFromString('--expose-gc')
    gc = runInNewContext('gc') as Gc
    setFlagsFromString('--no-expose-gc')
  }
  void gc({ type: 'major', execution: 'async', flavor: 'last-resort' })
}
