/**
 * Drives the `strato` CLI for tests: in process through `run()` (fast), or as a
 * real subprocess running what `npx strato` runs (`stratoBin()`).
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { run } from '../../../cli/strato/main.js'
import type { TestContext } from '../../helpers/tap.js'
import { built } from '../../helpers/build.js'

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..')

/** What `npx strato` runs in a checkout (package.json "bin"): the CLI's build in dist/. */
export const stratoBin = (): string => built('cli/strato.ts')

export interface Result {
  code: number
  stdout: string
  stderr: string
}

const homes: string[] = []
/** A fresh HOME, so each suite has its own ~/.cache/strato. Removed by `removeHomes()`. */
export function freshHome(): string {
  const h = mkdtempSync(path.join(tmpdir(), 'strato-cli-home-'))
  homes.push(h)
  return h
}
export function removeHomes(): void {
  for (const h of homes.splice(0)) rmSync(h, { recursive: true, force: true })
}

/** The environment `. admin-openrc` gives, with HOME pointing at `home`. */
export function openrcEnv(openrc: Record<string, string>, home: string): Record<string, string> {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, ...openrc }
}

/**
 * The admin's environment (`. admin-openrc`) and a member's: project demo
 * with user demo (password demo-password) holding the member role, made
 * with the CLI. Each has its own HOME.
 */
export async function adminAndDemo(openrc: Record<string, string>): Promise<{ env: Record<string, string>; demo: Record<string, string> }> {
  const env = openrcEnv(openrc, freshHome())
  const demo = { ...openrcEnv(openrc, freshHome()), OS_USERNAME: 'demo', OS_PASSWORD: 'demo-password', OS_PROJECT_NAME: 'demo' }
  for (const line of ['project create demo', 'user create --project demo --password demo-password demo', 'role add --project demo --user demo member']) {
    const r = await strato(line, env)
    if (r.code !== 0) throw new Error(`strato ${line}: ${r.stderr}`)
  }
  return { env, demo }
}

/** Splits a command line on spaces, keeping '…' quoted words together (enough for tests). */
export function words(line: string): string[] {
  return [...line.matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2]!)
}

export async function strato(line: string | string[], env: Record<string, string | undefined>): Promise<Result> {
  let stdout = ''
  let stderr = ''
  const code = await run(typeof line === 'string' ? words(line) : line, env, { stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s) })
  return { code, stdout, stderr }
}

/** Runs a line that must succeed (exit 0, nothing on stderr); resolves to its stdout. */
export async function succeeds(t: TestContext, line: string | string[], env: Record<string, string | undefined>): Promise<string> {
  const r = await strato(line, env)
  const shown = typeof line === 'string' ? line : line.join(' ')
  t.equal(r.code, 0, `strato ${shown}: exit 0${r.stderr ? ` (stderr: ${r.stderr.trim()})` : ''}`)
  t.equal(r.stderr, '', `strato ${shown}: nothing on stderr`)
  return r.stdout
}

/** Runs a line that must fail cleanly: exit `code`, nothing on stdout, one line on stderr, no stack trace. */
export async function failsWith(t: TestContext, line: string | string[], code: number, env: Record<string, string | undefined>): Promise<Result> {
  const r = await strato(line, env)
  const shown = typeof line === 'string' ? line : line.join(' ')
  t.equal(r.code, code, `strato ${shown}: exit ${code}`)
  t.equal(r.stdout, '', `strato ${shown}: nothing on stdout`)
  t.equal(r.stderr.trim().split('\n').length, 1, `strato ${shown}: one line on stderr`)
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace')
  return r
}

export function spawnStrato(line: string | string[], env: Record<string, string | undefined>): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [stratoBin(), ...(typeof line === 'string' ? words(line) : line)], {
      cwd: repoRoot,
      env: env as NodeJS.ProcessEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }))
  })
}

/** Parses a Field/Value table back into an object. */
/** The header line of a table. */
export const header = (table: string) => table.split('\n')[1]

/** The data rows of a table, as arrays of trimmed cells. */
export const rows = (table: string) => table.split('\n').filter((l) => l.startsWith('| ')).slice(1).map((l) => l.slice(2, -2).split(' | ').map((c) => c.trim()))

export function fields(table: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of table.split('\n')) {
    const m = /^\| (\S+)\s*\| (.*?)\s*\|$/.exec(line)
    if (m && m[1] !== 'Field') out[m[1]!] = m[2]!
  }
  return out
}
