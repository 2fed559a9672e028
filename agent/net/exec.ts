/**
 * Running the host's networking tools (ip, iptables, iptables-restore,
 * dnsmasq, dhcp_release) for agent/net/: no shell, fixed argument lists, a
 * time limit, and one error for every failure — an Internal naming the
 * command line as run, how it ended (exit code, signal, time limit, or why it
 * could not start) and what it wrote to stderr.
 */
import { spawn } from 'node:child_process'
import { Internal } from '../../proto/errors.js'

export interface RunOptions {
  /** Run inside this network namespace (`ip netns exec NAME cmd …`). @default the agent's own */
  netns?: string
  /** Killed (SIGKILL) when it runs longer. @default 10000 */
  timeoutMs?: number
  /** Written to its stdin (e.g. iptables-restore's rules). @default none: stdin is /dev/null */
  input?: string
  /**
   * The command forks a daemon and exits (dnsmasq): done when it exits,
   * without waiting for its output pipes, which the daemon may keep open;
   * it runs in its own session and its stdout is not read.
   */
  daemon?: boolean
  /** What the command is for, said first in the error: `cannot <what>: …`. */
  what?: string
}

/**
 * Runs `cmd args` and returns its stdout.
 * @throws Internal `[cannot <what>: ]<command line> failed (<exit N | killed by SIG | timed out after N ms | could not start: …>): <stderr>`
 */
export function run(cmd: string, args: string[], o: RunOptions = {}): Promise<string> {
  const [file, argv] = o.netns === undefined ? [cmd, args] : ['ip', ['netns', 'exec', o.netns, cmd, ...args]]
  const timeoutMs = o.timeoutMs ?? 10_000
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { stdio: [o.input === undefined ? 'ignore' : 'pipe', o.daemon ? 'ignore' : 'pipe', 'pipe'], detached: o.daemon === true })
    let stdout = ''
    let stderr = ''
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    let settled = false
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, timeoutMs)
    const done = (how: string | undefined, cause?: unknown) => {
      clearTimeout(timer)
      if (settled) return
      settled = true
      if (how === undefined) return resolve(stdout)
      const message = `${o.what ? `cannot ${o.what}: ` : ''}${[file, ...argv].join(' ')} failed (${how}): ${stderr.trim() || 'no message'}`
      reject(new Internal(message, cause === undefined ? {} : { cause }))
    }
    child.once('error', (err) => done(`could not start: ${err.message}`, err))
    child.once(o.daemon ? 'exit' : 'close', (code: number | null, signal: NodeJS.Signals | null) => {
      clearTimeout(timer)
      const how = code === 0 ? undefined : timedOut ? `timed out after ${timeoutMs} ms` : code !== null ? `exit ${code}` : `killed by ${signal}`
      if (!o.daemon) return done(how)
      // A daemon may keep stderr open: stop reading it, after the rest of a failed start's message (briefly).
      const stop = () => {
        child.stderr!.destroy()
        done(how)
      }
      if (how === undefined || child.stderr!.readableEnded) return stop()
      const wait = setTimeout(stop, 500)
      child.stderr!.once('end', () => {
        clearTimeout(wait)
        stop()
      })
    })
    if (child.stdin) {
      // A command that exits without reading its input: its exit status says why, not an EPIPE here.
      child.stdin.on('error', () => undefined)
      child.stdin.end(o.input)
    }
  })
}

/** Runs a command whose failure is an answer (a missing link, rule or chain): true when it exits 0. */
export function succeeds(cmd: string, args: string[], o: RunOptions = {}): Promise<boolean> {
  return run(cmd, args, o).then(() => true, () => false)
}

/** `ip args…` (iproute2), in the agent's namespace (`-n NAME` among the arguments for another). */
export function ip(...args: string[]): Promise<string> {
  return run('ip', args)
}
