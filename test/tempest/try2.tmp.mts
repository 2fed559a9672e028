import { startTempestCloud } from './cloud.js'
const t = await startTempestCloud({ driver: 'fake' })
const r = await t.run(process.argv[2] ?? 'tempest.api.identity')
console.log(r.output.split('\n').filter(l => /FAILED|Totals|Passed|Skipped|Failed|Details/.test(l)).slice(-150).join('\n'))
console.log(JSON.stringify({ passed: r.passed, skipped: r.skipped, failed: r.failed }))
await t.close()
