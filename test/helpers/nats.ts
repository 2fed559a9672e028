/**
 * Starts a real nats-server (JetStream on) on a free loopback port for one
 * test suite — with decentralized JWT auth by default, as the stack runs it
 * (controller/bus/credentials.ts): no anonymous connection is accepted, and
 * the suite gets the controller's credentials and mints an agent's for any
 * host. The helpers that start daemons (controller.ts, agents.ts,
 * agent-process.ts, controller-process.ts) find the credentials of the
 * server whose URL they are given through `natsCredsFor`, so suites only
 * pass `nats.url` around.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { credsAuthenticator, type NodeConnectionOptions } from '@nats-io/transport-node'
import { ensureOperator, mintAgentCreds, mintControllerCreds, mintUser, writeCreds, writeNatsServerConfig, type NatsOperator, type Permissions } from '../../controller/bus/credentials.js'
import { ensureCa, ensureCertificate } from '../../controller/tls/ca.js'
import { certificateNames } from '../../controller/tls/names.js'
import { agentInboxPrefix } from '../../proto/subjects.js'
import { freePort, waitForPort } from './ports.js'

export interface NatsCreds {
  /** The controller's `.creds` file (full rights in the STRATO account). */
  controllerCreds: string
  /** The `.creds` file of `host`'s agent (minted on first use, mode 0600). */
  agentCreds(host: string): string
}

export interface NatsServer extends Partial<NatsCreds> {
  url: string
  port: number
  storeDir: string
  proc: ChildProcess
  /** The CA its TLS certificate is from (tls:// URL), when it serves TLS. */
  caFile?: string
  /** The operator and accounts, when auth is on. */
  operator?: NatsOperator
  /** Options for a test's own connection: the controller's rights, or `host`'s agent's (with its inbox prefix). */
  connectOptions(as?: { agent?: string; user?: Permissions }): NodeConnectionOptions
  stop(): Promise<void>
  /** Stops and starts again on the same port and store (for restart tests). */
  restart(): Promise<void>
}

const registry = new Map<string, NatsCreds>()

/** The credentials of the test nats-server at `url` (undefined: it runs without auth). */
export function natsCredsFor(url: string): NatsCreds | undefined {
  return registry.get(url)
}

/**
 * `host`: the address it listens on (a test's veth, for a host in another
 * namespace); `tlsCaDir`: serve TLS only, with a certificate from the CA in
 * that directory (a controller's `<dataDir>/tls`), at `tls://` URLs.
 */
export async function startNats(o: { auth?: boolean; host?: string; tlsCaDir?: string } = {}): Promise<NatsServer> {
  const listen = o.host ?? '127.0.0.1'
  const auth = o.auth ?? true
  const port = await freePort()
  const storeDir = mkdtempSync(path.join(tmpdir(), 'strato-nats-'))
  const authDir = mkdtempSync(path.join(tmpdir(), 'strato-nats-auth-'))
  const operator = auth ? ensureOperator(path.join(authDir, 'keys')) : undefined
  let tls: { certFile: string; keyFile: string; caFile: string } | undefined
  if (o.tlsCaDir) {
    const ca = await ensureCa(o.tlsCaDir)
    const cert = await ensureCertificate(ca, authDir, 'nats-server', { commonName: 'strato-nats', ...certificateNames({ listen }), usage: 'server' })
    tls = { certFile: cert.certFile, keyFile: cert.keyFile, caFile: ca.certFile }
  }
  if (tls && !operator) throw new Error('startNats: TLS is only set up with auth')
  const confFile = operator ? writeNatsServerConfig(operator, path.join(authDir, 'nats.conf'), { host: listen, port, storeDir, ...(tls ? { tls } : {}) }) : ''
  const args = operator ? ['-c', confFile] : ['-js', '-a', listen, '-p', String(port), '-sd', storeDir]
  const launch = async (): Promise<ChildProcess> => {
    const proc = spawn('nats-server', args, { stdio: 'ignore' })
    await Promise.race([
      waitForPort(port, listen),
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
  const url = `${tls ? 'tls' : 'nats'}://${listen}:${port}`
  let creds: NatsCreds | undefined
  if (operator) {
    const minted = new Map<string, string>()
    creds = {
      controllerCreds: writeCreds(path.join(authDir, 'controller.creds'), mintControllerCreds(operator)),
      agentCreds(host) {
        let file = minted.get(host)
        if (!file) minted.set(host, (file = writeCreds(path.join(authDir, `agent-${host}.creds`), mintAgentCreds(operator, host))))
        return file
      },
    }
    registry.set(url, creds)
  }
  const server: NatsServer = {
    url,
    ...(tls ? { caFile: tls.caFile } : {}),
    port,
    storeDir,
    operator,
    ...creds,
    proc: await launch(),
    connectOptions(as = {}) {
      if (!operator || !creds) return { servers: url }
      const c = as.user ? mintUser(operator, 'test-user', as.user) : as.agent ? mintAgentCreds(operator, as.agent) : mintControllerCreds(operator)
      return { servers: url, authenticator: credsAuthenticator(new TextEncoder().encode(c)), ...(as.agent ? { inboxPrefix: agentInboxPrefix(as.agent) } : {}), ...(tls ? { tls: { caFile: tls.caFile } } : {}) }
    },
    async stop() {
      await kill(server.proc)
      registry.delete(url)
      rmSync(storeDir, { recursive: true, force: true })
      rmSync(authDir, { recursive: true, force: true })
    },
    async restart() {
      await kill(server.proc)
      server.proc = await launch()
    },
  }
  return server
}

/** Stops nats-server but keeps its store (JetStream state survives, as on a real restart). */
export async function killNats(nats: NatsServer): Promise<void> {
  if (nats.proc.exitCode !== null || nats.proc.signalCode !== null) return
  const done = new Promise<void>((res) => nats.proc.once('exit', () => res()))
  nats.proc.kill('SIGKILL')
  await done
}
