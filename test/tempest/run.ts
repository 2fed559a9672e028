/**
 * npm run test:tempest — Tempest 33's API tests of identity v3, image v2,
 * network, compute and volume (Cinder v3) against a cloud this script starts (real nats-server,
 * controller, and one libvirt agent; `TEMPEST_DRIVER=fake` for the fake virt
 * driver), less test/tempest/exclude.txt (each line with its reason). Prints
 * the counts and exits non-zero when a test failed. `TEMPEST_REGEX` narrows
 * the run; `TEMPEST_CONCURRENCY` (default 2) sets stestr's workers.
 */
import { startTempestCloud } from './cloud.js'

const regex = process.env.TEMPEST_REGEX ?? '^tempest\\.api\\.(identity\\.|image\\.v2\\.|network\\.|compute\\.|volume\\.)'
const driver = process.env.TEMPEST_DRIVER === 'fake' ? 'fake' : 'libvirt'
const started = Date.now()
const t = await startTempestCloud({ driver })
let failed = 1
try {
  const r = await t.run(regex, { concurrency: Number(process.env.TEMPEST_CONCURRENCY ?? 2) })
  for (const f of r.failures) console.log(`FAILED ${f}`)
  console.log(`tempest ${regex} (${driver} driver, ${((Date.now() - started) / 1000).toFixed(0)} s): ${r.passed} passed, ${r.skipped} skipped, ${r.failed} failed`)
  console.log(`workspace (tempest.conf, logs/tempest.log): ${t.dir}`)
  failed = r.failed
} finally {
  await t.close()
}
process.exit(failed > 0 ? 1 : 0)
