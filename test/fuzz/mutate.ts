// Structure-aware mutations of JSON-like values, for the converters' fuzz tests: drop or rename a field,
// put a value of the wrong type (or null) where another belongs, blow a string up, add unknown fields.
import fc from 'fast-check'

type Path = Array<string | number>
export type Mutation =
  | { op: 'drop'; at: number }
  | { op: 'rename'; at: number; to: string }
  | { op: 'replace'; at: number; value: unknown }
  | { op: 'addField'; at: number; key: string; value: unknown }

export const PHONE_NAMES = ['+15550100002', '+1 555 010 0002', '\u202a+15550100002\u202c', '(555) 010-0002', '+49 (0) 30 1234567', '\u200e+44 20 7946 0958']

export const wrongValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom<unknown>(null, undefined, true, 0, -1, -2147483649, 2 ** 53, 1.5, '', [], {}, [null], { x: 1 }, 'x'.repeat(70_000), '\u0000\ud800\u202e'),
  fc.integer(), fc.double(), fc.string({ maxLength: 20 }), fc.constantFrom(...PHONE_NAMES),
  fc.array(fc.integer(), { maxLength: 3 }),
)

/** An unknown field added to some object: what a newer client might send. The input stays valid. */
export const additionArb: fc.Arbitrary<Mutation> =
  fc.record({ op: fc.constant('addField' as const), at: fc.nat(), key: fc.constantFrom('unknownField', 'x-extra', 'futureVersion'), value: wrongValue })

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('drop' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('rename' as const), at: fc.nat(), to: fc.constantFrom('x', 'Message', 'source_uuid', '__proto__', 'constructor') }),
  fc.record({ op: fc.constant('replace' as const), at: fc.nat(), value: wrongValue }),
  additionArb,
)

/** Every path into a value (the root is []). */
export function paths(v: unknown, at: Path = [], out: Path[] = []): Path[] {
  out.push(at)
  if (Array.isArray(v)) v.forEach((x, i) => paths(x, [...at, i], out))
  else if (typeof v === 'object' && v !== null && !Buffer.isBuffer(v) && !(v instanceof Uint8Array)) {
    for (const [k, x] of Object.entries(v)) paths(x, [...at, k], out)
  }
  return out
}

function parentOf(root: unknown, path: Path): Record<string | number, unknown> | undefined {
  let cur: unknown = root
  for (const k of path.slice(0, -1)) cur = (cur as Record<string | number, unknown>)[k]
  return typeof cur === 'object' && cur !== null ? (cur as Record<string | number, unknown>) : undefined
}

/** Applies mutations to a deep copy (structuredClone keeps Uint8Arrays). */
export function mutate<T>(value: T, mutations: Mutation[]): T {
  const root = { root: structuredClone(value) } as { root: unknown }
  for (const m of mutations) {
    const all = paths(root.root).map(p => ['root', ...p])
    const path = all[m.at % all.length]!
    const parent = parentOf(root, path)
    const key = path[path.length - 1]!
    if (!parent) continue
    switch (m.op) {
      case 'drop':
        if (Array.isArray(parent)) parent.splice(Number(key), 1)
        else delete parent[key]
        break
      case 'rename':
        if (!Array.isArray(parent) && key !== 'root') {
          Object.defineProperty(parent, m.to, { value: parent[key], enumerable: true, writable: true, configurable: true })
          delete parent[key]
        }
        break
      // A copy of the value: fast-check hands out one instance of each constant (`{}`, `[]`), and two mutations
      // putting the same one in place could make a value that contains itself.
      case 'replace':
        parent[key] = structuredClone(m.value)
        break
      case 'addField': {
        const target = parent[key]
        if (typeof target === 'object' && target !== null && !Array.isArray(target)) (target as Record<string, unknown>)[m.key] = structuredClone(m.value)
        break
      }
    }
  }
  return root.root as T
}

/** Only unknown fields added (in any object): a converter must give the same answer as for the original. */
export const onlyAdditions = (ms: Mutation[]) => ms.every(m => m.op === 'addField')

/** Checks a rich text's ranges lie inside its text. */
export function rangeProblems(rt: { text: string; styles: Array<{ start: number; length: number }>; links: Array<{ start: number; length: number }>; mentions: Array<{ start: number; length: number }> }): string[] {
  const bad: string[] = []
  for (const [kind, list] of [['style', rt.styles], ['link', rt.links], ['mention', rt.mentions]] as const) {
    for (const r of list) {
      if (!Number.isInteger(r.start) || !Number.isInteger(r.length) || r.start < 0 || r.length <= 0 || r.start + r.length > rt.text.length) {
        bad.push(`${kind} ${JSON.stringify(r)} outside a text of ${rt.text.length}`)
      }
    }
  }
  return bad
}

/** Something that reads as a phone number (after dropping invisible format characters). */
export const looksLikePhone = (s: string): boolean => /\+?\d[\d\s().-]{5,}\d/u.test(s.replace(/\p{Cf}/gu, ''))
