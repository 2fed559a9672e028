/** Starts a real nats-server (JetStream on) on a free loopback port for one test suite. */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { freePort, waitForPort } from './ports.js'

export interface NatsServer {
  url: string
  port: number
  storeDir: string
  proc: ChildProcess
  stop(): Promise<void>
  /** Stops and starts again on the same port and store (for restart tests). */
  restart(): Promise<void>
}

export async function startNats(): Promise<NatsServer> {
  const port = await freePort()
  const storeDir = mkdtempSync(path.join(tmpdir(), 'strato-nats-'))
  const launch = async (): Promise<ChildProcess> => {
    const proc = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', storeDir], { stdio: 'ignore' })
    await Promise.race([
      waitForPort(port),
      new Promise((_, reject) => proc.once('exit', (code) => reject(new Error(`nats-server exited with ${code}; is it installed (npm run setup)?`)))),
      new Promise((_, reject) => proc.once('error', (err) => reject(new Error(`cannot run nats-server: ${err.message}; run npm run setup`)))),
    ])
    return proc
  }
  const kill = (p: ChildProcess) =>
    new Promise<void>((resolve) => {
      if (p.exitCode !== null || p.signalCode !== null) return resolve()
      p.once('exit', () => resolve())
      p.kill('SIGTERM')
    })
  const server: NatsServer = {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    proc: await launch(),
    async stop() {
      await kill(server.proc)
      rmSync(storeDir, { recursive: true, force: true })
    },
    async restart() {
      await kill(server.proc)
      server.proc = await launch()
    },
  }
  return server
}
