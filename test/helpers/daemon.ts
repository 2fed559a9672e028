/**
 * A Strato daemon (`agent/main.ts`, `controller/main.ts`) run as its own
 * process from the checkout, its JSON log appended to a file across restarts:
 * start it, wait until it logs that it runs, and wait for its exit.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream, readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { built } from './build.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

/** The log level daemons get: STRATO_TEST_LOG when set, else info (the tests read the info lines). */
const LEVEL = process.env.STRATO_TEST_LOG && process.env.STRATO_TEST_LOG !== 'silent' ? process.env.STRATO_TEST_LOG : 'info'

/** STRATO_TEST_CPU_PROF=<dir>: every daemon writes a CPU profile (`--cpu-prof`) into it when it exits (for the benches' profiles). */
const CPU_PROF = process.env.STRATO_TEST_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.STRATO_TEST_CPU_PROF}`] : []

export function startDaemon(entry: string, env: Record<string, string>, logFile: string): ChildProcess {
  const out = createWriteStream(logFile, { flags: 'a' })
  const proc = spawn(process.execPath, [...CPU_PROF, built(entry)], {
    cwd: ROOT,
    env: { ...process.env, STRATO_LOG_LEVEL: LEVEL, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  proc.stdout!.pipe(out)
  proc.stderr!.pipe(out)
  return proc
}

/** Everything the daemon logged so far ('' before its first line). */
export function readLog(logFile: string): string {
  try {
    return readFileSync(logFile, 'utf8')
  } catch {
    return ''
  }
}

/**
 * Waits until `msg` stands in the log `times` times (once per start, so a
 * restart waits for its own line); a daemon that exits or is too slow fails
 * the wait with the end of its log, and a slow one is killed.
 */
export async function waitForLog(proc: ChildProcess, logFile: string, msg: string, times: number, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (readLog(logFile).split('\n').filter((l) => l.includes(`"msg":"${msg}"`)).length < times) {
    if (proc.exitCode !== null) throw new Error(`${what} exited with ${proc.exitCode}:\n${readLog(logFile).slice(-3000)}`)
    if (Date.now() > deadline) {
      proc.kill('SIGKILL')
      throw new Error(`${what} did not start within ${timeoutMs} ms:\n${readLog(logFile).slice(-3000)}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** Resolves with the exit code once the process has exited (at once if it has). */
export function exited(p: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve(p.exitCode)
    p.once('exit', (code) => resolve(code))
  })
}

export const running = (p: ChildProcess) => p.exitCode === null && p.signalCode === null
