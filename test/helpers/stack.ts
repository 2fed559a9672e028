/**
 * `npm start` run by a test as a user runs it: in its own process group (a
 * group SIGINT is what a terminal's Ctrl-C sends), with its own STRATO_HOME,
 * free ports and agent host name. A launcher registers one teardown that
 * stops the stacks a failed test left running and removes their agents'
 * security-group chains (agents leave them in place).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import type { Test } from 'tap'
import { IptablesFirewall } from '../../agent/net/firewall.js'
import { freePort } from './ports.js'

const root = path.resolve(import.meta.dirname, '../..')

export interface Stack {
  proc: ChildProcess
  home: string
  grpcPort: number
  natsPort: number
  /** Its agent's host name (STRATO_AGENT_HOST). */
  agentHost: string
  /** Everything it printed so far, stdout and stderr. */
  output: () => string
}

export interface StackLauncher {
  /** Starts `npm start` on `home` and waits for 'Strato is up' (its output is in the error when it exits or is too slow). */
  start(home: string, o?: { timeoutMs?: number }): Promise<Stack>
}

/** Stacks named `<name>-<pid>-<n>`, stopped at the end of `t` whatever happened. */
export function stackLauncher(t: Test, name: string): StackLauncher {
  const running = new Set<ChildProcess>()
  const agentHosts: string[] = []
  t.teardown(async () => {
    for (const proc of running) {
      if (proc.exitCode !== null || proc.signalCode !== null) continue
      const gone = new Promise((r) => proc.once('exit', r))
      process.kill(-proc.pid!, 'SIGINT')
      await Promise.race([gone, new Promise((r) => setTimeout(r, 15_000))])
    }
    for (const host of agentHosts) await new IptablesFirewall({ host }).clear().catch(() => undefined)
  })
  return {
    async start(home, o = {}) {
      const agentHost = `${name}-${process.pid}-${agentHosts.length + 1}`
      agentHosts.push(agentHost)
      const grpcPort = await freePort()
      const natsPort = await freePort()
      let out = ''
      const proc = spawn('npm', ['start'], {
        cwd: root,
        detached: true,
        env: { ...process.env, STRATO_AGENT_HOST: agentHost, STRATO_HOME: home, STRATO_OPENRC: path.join(home, 'admin-openrc'), STRATO_GRPC_PORT: String(grpcPort), STRATO_NATS_PORT: String(natsPort), STRATO_REST_PORT: String(await freePort()) },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      running.add(proc)
      proc.stdout!.on('data', (d) => (out += d))
      proc.stderr!.on('data', (d) => (out += d))
      const deadline = Date.now() + (o.timeoutMs ?? 120_000)
      while (!out.includes('Strato is up')) {
        if (proc.exitCode !== null) throw new Error(`npm start exited with ${proc.exitCode}:\n${out}`)
        if (Date.now() > deadline) throw new Error(`npm start did not come up:\n${out}`)
        await new Promise((r) => setTimeout(r, 100))
      }
      return { proc, home, grpcPort, natsPort, agentHost, output: () => out }
    },
  }
}

/**
 * Ctrl-C: SIGINT to the whole process group. Resolves true when the stack stopped
 * cleanly: npm exits 0 or, as npm does, re-raises SIGINT after its child exited,
 * and the runner logged its clean stop.
 */
export function ctrlC(s: Stack): Promise<boolean> {
  return new Promise((resolve) => {
    s.proc.once('exit', (code, signal) => resolve((code === 0 || signal === 'SIGINT') && s.output().includes('stack stopped')))
    process.kill(-s.proc.pid!, 'SIGINT')
  })
}
