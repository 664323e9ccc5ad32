// The collection asked for once the start is over (src/memory.ts) hands out no `gc` to anything made later.
import { describe, expect, it } from 'vitest'
import { runInNewContext } from 'node:vm'
import { compactHeap } from '../../src/memory.ts'

describe('compacting the heap after the start', () => {
  it('leaves --expose-gc off: neither this context nor one made afterwards has a gc function', () => {
    compactHeap()
    expect(runInNewContext('typeof gc')).toBe('undefined')
    expect(typeof (globalThis as { gc?: unknown }).gc).toBe('undefined')
  })
})
