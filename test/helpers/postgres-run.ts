/**
 * One PostgreSQL cluster per tap run, shared by the run's suites that ask for
 * PostgreSQL: the first of them starts it in `<tmp>/strato-pg-run-<runner>`
 * (the tap runner's pid and start time: pids are reused), the others wait for
 * it and use it; tap's `after` script (postgres-run-end.ts) stops and removes
 * it when the run ends. A run that was killed before its `after` leaves its
 * cluster behind: the next run's first PostgreSQL suite stops and removes it.
 * Only what this module's callers started is ever used or stopped.
 *
 * This module stays light (no pg, no store): tap loads it for every run.
 */
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { stopCluster } from '../../cli/stack/postgres.js'

const RUN_DIR_RE = /^strato-pg-run-(\d+)-(\d+)$/

/** A process's start time (clock ticks since boot), or undefined when it is gone. */
function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Field 22; the fields after the command name (in parentheses, which may hold spaces) start at field 3.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
  } catch {
    return undefined
  }
}

/** The run directory of the tap runner `pid` (this process's parent for test files and the `after` script). */
export function runDirOf(pid: number): string | undefined {
  const start = startTimeOf(pid)
  return start === undefined ? undefined : path.join(tmpdir(), `strato-pg-run-${pid}-${start}`)
}

/** The run directory shared by this tap run's test files; undefined outside tap. */
export function tapRunDir(): string | undefined {
  if (process.env.TAP !== '1' || !process.env.TAP_CHILD_ID) return undefined
  return runDirOf(process.ppid)
}

/** CPU seconds a process used, with its children's (those it waited for: a postmaster's ended backends). */
function cpuSecondsOf(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  // utime, stime, cutime, cstime: fields 14–17, in clock ticks (100 a second on Linux).
  return f.slice(11, 15).reduce((a, x) => a + Number(x), 0) / 100
}

/** The CPU seconds the cluster in `dir` used so far: the postmaster, its ended backends and its live processes. */
function clusterCpuSeconds(dir: string): number | undefined {
  try {
    const postmaster = Number(readFileSync(path.join(dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0])
    let total = cpuSecondsOf(postmaster)
    for (const p of readdirSync('/proc')) {
      if (!/^\d+$/.test(p)) continue
      try {
        if (readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ')[1] === String(postmaster)) total += cpuSecondsOf(Number(p))
      } catch {
        // gone meanwhile
      }
    }
    return total
  } catch {
    return undefined
  }
}

/** Stops the cluster of a run directory (if one runs there) and removes the directory; returns the CPU seconds the cluster used. */
export function endRun(dir: string): number | undefined {
  const cluster = path.join(dir, 'cluster')
  let cpu: number | undefined
  if (existsSync(path.join(cluster, 'data', 'postmaster.pid'))) {
    cpu = clusterCpuSeconds(cluster)
    stopCluster(cluster, 'immediate')
  }
  rmSync(dir, { recursive: true, force: true })
  return cpu
}

/** Ends the clusters of runs whose runner is gone (killed before its `after` script ran). */
export function endStaleRuns(): void {
  for (const name of readdirSync(tmpdir())) {
    const m = RUN_DIR_RE.exec(name)
    if (m && startTimeOf(Number(m[1])) !== m[2]) endRun(path.join(tmpdir(), name))
  }
}
