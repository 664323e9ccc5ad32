// The order test files start in. The workers share the files, so the run lasts at least as long as its
// longest file, and longer when that file starts last. Vitest orders by the durations it cached in an earlier
// run; a fresh clone (and CI) has none, and falls back to file size, which says little. The files that start
// bridge processes are the long ones (and the 1,000-member file): they go first, in vitest's order among themselves.
import { BaseSequencer, type TestSpecification } from 'vitest/node'

// core/members links a 1,000-member group on both databases (about three minutes).
const LONG = /\/test\/(e2e|hygiene)\/|\/test\/core\/members\.test\.ts$/

export class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files)
    return [...sorted.filter(f => LONG.test(f.moduleId)), ...sorted.filter(f => !LONG.test(f.moduleId))]
  }
}
