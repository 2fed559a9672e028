/**
 * Debian's python-openstackclient for the REST suites, run two ways:
 * `process: true` runs `/usr/bin/openstack` as its own process, as users run
 * it; otherwise the command goes to one long-lived Python per test file
 * (test/helpers/osc_server.py) that imported the client once and runs
 * `OpenStackShell().run(argv)` per command: the same client code and HTTP
 * path without the ~1 s of CPU each interpreter start-up costs. Each command
 * gets a fresh shell, its own environment, its own captured stdout/stderr and
 * its exit code; what the client keeps between calls is reset after each.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

export const OPENSTACK = '/usr/bin/openstack'
const PYTHON = '/usr/bin/python3'
const SERVER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'osc_server.py')

/** Whether Debian's python3-openstackclient is installed. */
export const hasOpenstack = (): boolean => existsSync(OPENSTACK)

export interface OscResult {
  /** The exit code `openstack` returned (1 when it was killed or could not run). */
  code: number
  stdout: string
  stderr: string
}

export interface OscOptions {
  /** The whole environment of the command (default: this process's). */
  env?: Record<string, string | undefined>
  cwd?: string
  /** @default 120000 */
  timeoutMs?: number
  /** Run `/usr/bin/openstack` as a process of its own. @default false */
  process?: boolean
}

export interface OpenstackClient {
  /** `openstack <args>`; resolves with the exit code and output whatever the outcome. */
  run(args: string[], opts?: OscOptions): Promise<OscResult>
  /** Stops the shared interpreters; commands after it start a new one. */
  close(): Promise<void>
}

function runProcess(args: string[], env: Record<string, string | undefined>, cwd: string, timeoutMs: number): Promise<OscResult> {
  return new Promise((resolve) => {
    execFile(OPENSTACK, args, { env, cwd, timeout: timeoutMs, maxBuffer: 1 << 26 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0
      resolve({ code, stdout, stderr: err && err.killed ? `${stderr}\nopenstack killed after ${timeoutMs} ms` : stderr })
    })
  })
}

/** One osc_server.py: requests go one at a time, in order. */
class ShellServer {
  private readonly proc: ChildProcess
  private readonly answers: AsyncIterator<string>
  private readonly ready: Promise<void>
  private tail: Promise<unknown> = Promise.resolve()
  private stderr = ''
  dead = false

  constructor(env: Record<string, string | undefined>, cwd: string) {
    this.proc = spawn(PYTHON, [SERVER], { env, cwd, stdio: ['pipe', 'ignore', 'pipe', 'pipe'] })
    this.proc.stderr!.on('data', (d: Buffer) => { this.stderr = (this.stderr + d.toString()).slice(-4000) })
    this.proc.on('exit', () => { this.dead = true })
    this.proc.on('error', () => { this.dead = true })
    this.answers = createInterface({ input: this.proc.stdio[3] as NodeJS.ReadableStream })[Symbol.asyncIterator]()
    this.ready = this.next(60_000).then((line) => {
      if (!JSON.parse(line).ready) throw new Error(`osc_server.py did not start: ${line}`)
    })
    this.ready.catch(() => {}) // reported by the first run()
  }

  private async next(timeoutMs: number): Promise<string> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs)
    })
    try {
      const r = await Promise.race([this.answers.next(), timeout])
      if (r.done) throw new Error(`osc_server.py exited (${this.proc.exitCode ?? this.proc.signalCode}): ${this.stderr}`)
      return r.value
    } finally {
      clearTimeout(timer)
    }
  }

  run(argv: string[], env: Record<string, string | undefined>, cwd: string, timeoutMs: number): Promise<OscResult> {
    const result = this.tail.then(async (): Promise<OscResult> => {
      try {
        await this.ready
        if (this.dead) throw new Error(`osc_server.py exited: ${this.stderr}`)
        this.proc.stdin!.write(`${JSON.stringify({ argv, env, cwd })}\n`)
        const a = JSON.parse(await this.next(timeoutMs)) as OscResult
        return { code: a.code, stdout: a.stdout, stderr: a.stderr }
      } catch (e) {
        // A command that hangs or an interpreter that died: this server is done, the next command starts another.
        this.kill()
        return { code: 1, stdout: '', stderr: `openstack ${argv.join(' ')}: ${(e as Error).message}` }
      }
    })
    this.tail = result
    return result
  }

  kill(): void {
    this.dead = true
    this.proc.kill('SIGKILL')
  }

  async close(): Promise<void> {
    await this.tail
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return
    const exited = new Promise((r) => this.proc.once('exit', r))
    this.proc.stdin!.end()
    const timer = setTimeout(() => this.kill(), 10_000)
    await exited
    clearTimeout(timer)
  }
}

/**
 * The openstack client for one test file; call `close()` in its teardown.
 * One interpreter per (cwd, HOME), since the client reads both at import
 * (the clouds.yaml search path).
 */
export function openstackClient(): OpenstackClient {
  const servers = new Map<string, ShellServer>()
  return {
    run(args, opts = {}) {
      const env = opts.env ?? { ...process.env }
      const cwd = opts.cwd ?? process.cwd()
      const timeoutMs = opts.timeoutMs ?? 120_000
      if (opts.process) return runProcess(args, env, cwd, timeoutMs)
      const key = JSON.stringify([cwd, env.HOME ?? ''])
      let s = servers.get(key)
      if (!s || s.dead) servers.set(key, (s = new ShellServer(env, cwd)))
      return s.run(args, env, cwd, timeoutMs)
    },
    async close() {
      await Promise.all([...servers.values()].map((s) => s.close()))
      servers.clear()
    },
  }
}
