// tap's `after` script (package.json): stops and removes the PostgreSQL cluster this
// tap run's suites shared (postgres-run.ts), if any of them started one.
import { endRun, runDirOf } from './postgres-run.js'

const dir = runDirOf(process.ppid)
const cpu = dir ? endRun(dir) : undefined
// What the shared server cost (not in any test process's time): for the README's figures.
if (cpu !== undefined) console.log(`# the run's PostgreSQL cluster used ${cpu.toFixed(1)} CPU-s`)
