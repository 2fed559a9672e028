/**
 * `npm start` (or `npm run start:cluster`) run by a test as a user runs it: in its own process group (a
 * group SIGINT is what a terminal's Ctrl-C sends), with its own STRATO_HOME,
 * free ports and agent host name. A launcher registers one teardown that
 * stops the stacks a failed test left running and removes their agents'
 * security-group chains (agents leave them in place).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import type { Test } from 'tap'
import { IptablesFirewall } from '../../agent/net/firewall.js'
import { freePort, freePortRun } from './ports.js'

const root = path.resolve(import.meta.dirname, '../..')

export interface Stack {
  proc: ChildProcess
  home: string
  /** The (first) controller's gRPC port; start:cluster's second is 2 above. */
  grpcPort: number
  /** The (first) NATS node's client port; start:cluster's others follow. */
  natsPort: number
  /** Its agent's host name (STRATO_AGENT_HOST). */
  agentHost: string
  /** Everything it printed so far, stdout and stderr. */
  output: () => string
}

export interface StackLauncher {
  /**
   * Starts `npm start` (or, `cluster`, the runner of `npm run start:cluster`) on `home` and waits for its 'is up' line
   * (its output is in the error when it exits or is too slow).
   */
  start(home: string, o?: { timeoutMs?: number; cluster?: boolean }): Promise<Stack>
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
      let grpcPort: number, natsPort: number
      let ports: Record<string, string>
      if (o.cluster) {
        // start:cluster numbers its listeners from base ports: gRPC/REST of 2 controllers, 3 NATS nodes and their routes.
        grpcPort = await freePortRun(4)
        natsPort = await freePortRun(6)
        ports = { STRATO_REST_PORT: String(grpcPort + 1), STRATO_NATS_ROUTE_PORT: String(natsPort + 3), STRATO_POSTGRES_PORT: String(await freePort()) }
      } else {
        grpcPort = await freePort()
        natsPort = await freePort()
        ports = { STRATO_REST_PORT: String(await freePort()) }
      }
      let out = ''
      // start:cluster's runner itself: the script in front of it only runs setup.sh, as npm start's does (and
      // the first setup builds the demo guest, minutes that stack.test.ts already spends).
      const [cmd, args] = o.cluster ? [process.execPath, ['--single-threaded-gc', 'dist/cli/stack/run-cluster.js']] : ['npm', ['start']]
      const proc = spawn(cmd, args, {
        cwd: root,
        detached: true,
        env: { ...process.env, STRATO_AGENT_HOST: agentHost, STRATO_HOME: home,
          // The stack's agent gets its NBD client certificate there, not in the machine's /etc/pki/qemu (other suites' libvirt uses it).
          STRATO_AGENT_NBD_CLIENT_TLS_DIR: path.join(home, 'pki-qemu'), STRATO_OPENRC: path.join(home, 'admin-openrc'), STRATO_GRPC_PORT: String(grpcPort), STRATO_NATS_PORT: String(natsPort), ...ports },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      running.add(proc)
      proc.stdout!.on('data', (d) => (out += d))
      proc.stderr!.on('data', (d) => (out += d))
      const deadline = Date.now() + (o.timeoutMs ?? 120_000)
      while (!out.includes(o.cluster ? 'Strato cluster is up' : 'Strato is up')) {
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
