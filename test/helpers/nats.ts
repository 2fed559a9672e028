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
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { connect, credsAuthenticator, type NodeConnectionOptions } from '@nats-io/transport-node'
import { jetstreamManager } from '@nats-io/jetstream'
import { ensureOperator, ensureRoutePassword, mintAgentCreds, mintControllerCreds, mintUser, writeCreds, writeNatsServerConfig, type NatsOperator, type Permissions } from '../../controller/bus/credentials.js'
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
  const launch = () => launchNatsServer(args, port, listen)
  const url = `${tls ? 'tls' : 'nats'}://${listen}:${port}`
  const creds = operator ? testCreds(operator, authDir) : undefined
  if (creds) registry.set(url, creds)
  const server: NatsServer = {
    url,
    ...(tls ? { caFile: tls.caFile } : {}),
    port,
    storeDir,
    operator,
    ...creds,
    proc: await launch(),
    connectOptions(as = {}) {
      if (!operator) return { servers: url }
      return connectOptionsFor(operator, [url], tls?.caFile, as)
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

/** Starts nats-server with `args` and resolves once it listens on host:port (rejects when it exits first). */
async function launchNatsServer(args: string[], port: number, host: string): Promise<ChildProcess> {
  const proc = spawn('nats-server', args, { stdio: 'ignore' })
  await Promise.race([
    waitForPort(port, host),
    new Promise((_, reject) => proc.once('exit', (code) => reject(new Error(`nats-server exited with ${code}; is it installed (npm run setup)?`)))),
    new Promise((_, reject) => proc.once('error', (err) => reject(new Error(`cannot run nats-server: ${err.message}; run npm run setup`)))),
  ])
  return proc
}

/** Ends `p` with `signal` and resolves once it has exited. */
function kill(p: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  return new Promise<void>((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve()
    p.once('exit', () => resolve())
    p.kill(signal)
  })
}

/** The controller's credentials, and agents' minted on first use, under `authDir`. */
function testCreds(operator: NatsOperator, authDir: string): NatsCreds {
  const minted = new Map<string, string>()
  return {
    controllerCreds: writeCreds(path.join(authDir, 'controller.creds'), mintControllerCreds(operator)),
    agentCreds(host) {
      let file = minted.get(host)
      if (!file) minted.set(host, (file = writeCreds(path.join(authDir, `agent-${host}.creds`), mintAgentCreds(operator, host))))
      return file
    },
  }
}

function connectOptionsFor(operator: NatsOperator, servers: string[], caFile: string | undefined, as: { agent?: string; user?: Permissions }): NodeConnectionOptions {
  const c = as.user ? mintUser(operator, 'test-user', as.user) : as.agent ? mintAgentCreds(operator, as.agent) : mintControllerCreds(operator)
  return { servers, authenticator: credsAuthenticator(new TextEncoder().encode(c)), ...(as.agent ? { inboxPrefix: agentInboxPrefix(as.agent) } : {}), ...(caFile ? { tls: { caFile } } : {}) }
}

/** One node of a test NATS cluster. */
export interface NatsClusterNode {
  /** Its server_name (JetStream's peer name): `n1`, `n2`, … */
  name: string
  url: string
  port: number
  /** Where it listens for its peers' routes. */
  routePort: number
  storeDir: string
  proc: ChildProcess
  running(): boolean
  /** SIGKILL: no goodbye to the peers or the clients, whatever JetStream had not synced is the store's problem. */
  kill9(): Promise<void>
  /** Starts it again on the same ports and store (after kill9). */
  start(): Promise<void>
}

export interface NatsCluster extends NatsCreds {
  /** Every node's URL, comma-separated: what STRATO_NATS_URL is given. */
  url: string
  nodes: NatsClusterNode[]
  caFile?: string
  operator: NatsOperator
  /** The node whose server_name is `name`. */
  node(name: string): NatsClusterNode
  /** Options for a test's own connection (to every node), with the controller's rights or an agent's. */
  connectOptions(as?: { agent?: string; user?: Permissions }): NodeConnectionOptions
  stop(): Promise<void>
}

/**
 * A NATS cluster of `size` nodes (3 by default) on free loopback ports, set
 * up as the stack sets one up (cli/stack/nats-auth.ts): one operator and its
 * accounts for all nodes, authenticated routes, TLS on clients and routes
 * when `tlsCaDir` is given, JetStream on every node with its own store.
 * Resolves once JetStream has a meta leader (it answers account info). Its
 * `url` is registered with `natsCredsFor`, so the daemon helpers find the
 * credentials as for a single server.
 */
export async function startNatsCluster(o: { size?: number; tlsCaDir?: string } = {}): Promise<NatsCluster> {
  const size = o.size ?? 3
  const listen = '127.0.0.1'
  const dir = mkdtempSync(path.join(tmpdir(), 'strato-nats-cluster-'))
  const operator = ensureOperator(path.join(dir, 'keys'))
  const routePassword = ensureRoutePassword(operator)
  let tls: { certFile: string; keyFile: string; caFile: string } | undefined
  if (o.tlsCaDir) {
    const ca = await ensureCa(o.tlsCaDir)
    // One certificate for every node (all on loopback), for server and client use: routes check it both ways.
    const cert = await ensureCertificate(ca, dir, 'nats-cluster', { commonName: 'strato-nats', ...certificateNames({ listen }), usage: 'both' })
    tls = { certFile: cert.certFile, keyFile: cert.keyFile, caFile: ca.certFile }
  }
  const ports = await Promise.all(Array.from({ length: size }, async () => ({ port: await freePort(), routePort: await freePort() })))
  const nodes = ports.map(({ port, routePort }, i): NatsClusterNode => {
    const name = `n${i + 1}`
    const storeDir = path.join(dir, name)
    mkdirSync(storeDir, { mode: 0o700 })
    const cluster = { name: 'strato-test', serverName: name, host: listen, port: routePort, peers: ports.filter((_, j) => j !== i).map((p) => `${listen}:${p.routePort}`), routePassword, ...(tls ? { caFile: tls.caFile } : {}) }
    const conf = writeNatsServerConfig(operator, path.join(dir, `${name}.conf`), { host: listen, port, storeDir, cluster, ...(tls ? { tls } : {}) })
    const node: NatsClusterNode = {
      name, port, routePort, storeDir,
      url: `${tls ? 'tls' : 'nats'}://${listen}:${port}`,
      proc: undefined as unknown as ChildProcess,
      running: () => node.proc.exitCode === null && node.proc.signalCode === null,
      kill9: () => kill(node.proc, 'SIGKILL'),
      async start() {
        node.proc = await launchNatsServer(['-c', conf], port, listen)
      },
    }
    return node
  })
  const url = nodes.map((n) => n.url).join(',')
  const creds = testCreds(operator, dir)
  registry.set(url, creds)
  const cluster: NatsCluster = {
    url, nodes, operator, ...creds,
    ...(tls ? { caFile: tls.caFile } : {}),
    node(name) {
      const n = nodes.find((x) => x.name === name)
      if (!n) throw new Error(`the test cluster has no node '${name}' (it has ${nodes.map((x) => x.name).join(', ')})`)
      return n
    },
    connectOptions: (as = {}) => connectOptionsFor(operator, nodes.map((n) => n.url), tls?.caFile, as),
    async stop() {
      await Promise.all(nodes.map((n) => (n.proc ? kill(n.proc) : undefined)))
      registry.delete(url)
      rmSync(dir, { recursive: true, force: true })
    },
  }
  try {
    await Promise.all(nodes.map((n) => n.start()))
    await jetStreamReady(cluster.connectOptions())
  } catch (err) {
    await cluster.stop()
    throw err
  }
  return cluster
}

/** Resolves once JetStream answers through a connection with `opts` (a new cluster has elected its meta leader). */
export async function jetStreamReady(opts: NodeConnectionOptions, timeoutMs = 60_000): Promise<void> {
  const nc = await connect({ ...opts, maxReconnectAttempts: -1 })
  try {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      try {
        await (await jetstreamManager(nc)).getAccountInfo()
        return
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`JetStream did not answer within ${timeoutMs} ms: ${(err as Error).message}`)
        await new Promise((r) => setTimeout(r, 250))
      }
    }
  } finally {
    await nc.close()
  }
}

/** Stops nats-server but keeps its store (JetStream state survives, as on a real restart). */
export async function killNats(nats: NatsServer): Promise<void> {
  await kill(nats.proc, 'SIGKILL')
}
