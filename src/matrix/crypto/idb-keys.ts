// IndexedDB keys as canonical text: the same key always gives the same text (row ids are an HMAC of it),
// and the text gives the key back. A key is a number, a string, a Date, binary, or an array of keys.

type Tagged = ['n', string] | ['s', string] | ['d', number] | ['b', string] | ['a', ...Tagged[]]

function tag(key: unknown): Tagged {
  if (typeof key === 'number') return ['n', String(key)] // String keeps Infinity, which JSON would not
  if (typeof key === 'string') return ['s', key]
  if (key instanceof Date) return ['d', key.getTime()]
  if (Array.isArray(key)) return ['a', ...key.map(tag)]
  if (key instanceof ArrayBuffer) return ['b', Buffer.from(key).toString('base64')]
  if (ArrayBuffer.isView(key)) return ['b', Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('base64')]
  throw new Error(`Not an IndexedDB key: ${typeof key}.`)
}

function untag(t: Tagged): unknown {
  switch (t[0]) {
    case 'n': return Number(t[1])
    case 's': return t[1]
    case 'd': return new Date(t[1])
    case 'a': return (t.slice(1) as Tagged[]).map(untag)
    // IndexedDB hands binary keys out as ArrayBuffers.
    case 'b': { const b = Buffer.from(t[1], 'base64'); return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) }
  }
}

export const encodeKey = (key: unknown): string => JSON.stringify(tag(key))
export const decodeKey = (text: string): unknown => untag(JSON.parse(text) as Tagged)
