/**
 * Runs the standalone C self-test of the engine (native/tests/selftest.c),
 * plain and, when clang is available, under AddressSanitizer + UBSan.
 */
import t from 'tap'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { run, tempDir } from '../../fixtures/images.js'

for (const name of ['selftest', 'selftest-asan']) {
  const bin = join(process.cwd(), 'native', 'build', name)
  t.test(name, { skip: existsSync(bin) ? false : `${bin} not built` }, async (t) => {
    const tmp = tempDir('strato-selftest-')
    t.teardown(tmp.cleanup)
    const r = run(bin, [tmp.dir])
    t.equal(r.code, 0, r.stderr)
    t.match(r.stdout, /\d+ checks, 0 failures/)
  })
}
