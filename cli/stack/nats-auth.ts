/**
 * The stack's NATS identities, made at first start under `<home>/nats/auth/`
 * (directory 0700, every file 0600): the operator and account seeds
 * (`keys/`), the controller's and this host's agent's `.creds`, and the
 * nats-server config that turns auth on (`nats-server.conf`, rewritten at
 * each start from the kept keys). JetStream keeps its store in `<home>/nats/`
 * as before. Later hosts get their credentials from the same operator.
 */
import { existsSync, mkdirSync } from 'node:fs'
import path from 'node:path'
import { ensureOperator, ensureRoutePassword, mintAgentCreds, mintControllerCreds, writeCreds, writeNatsServerConfig } from '../../controller/bus/credentials.js'
import { ensureCa, ensureCertificate } from '../../controller/tls/ca.js'
import { certificateNames } from '../../controller/tls/names.js'

export interface StackNats {
  /** nats-server's config file (`-c`). */
  configFile: string
  /** `tls://host:port`: nats-server speaks TLS only. */
  url: string
  /** The CA its certificate is from (the controller's: one CA for the cloud). */
  caFile: string
  /** The operator and account keys: the controller signs joining hosts' credentials with them. */
  operatorDir: string
  controllerCreds: string
  agentCreds: string
}

/**
 * `caDir` is the controller's TLS directory: nats-server's certificate comes
 * from the same CA as the gRPC listener's, so one OS_CACERT (and the one CA a
 * joining host pins) covers both.
 */
export async function prepareStackNats(o: { natsDir: string; host: string; port: number; agentHost: string; caDir: string }): Promise<StackNats> {
  const { authDir, op, ca, identities } = await stackIdentities(o)
  const cert = await ensureCertificate(ca, authDir, 'nats-server', { commonName: 'strato-nats', ...certificateNames({ listen: o.host }), usage: 'server' })
  return {
    configFile: writeNatsServerConfig(op, path.join(authDir, 'nats-server.conf'), { host: o.host, port: o.port, storeDir: o.natsDir, tls: { certFile: cert.certFile, keyFile: cert.keyFile } }),
    url: `tls://${o.host}:${o.port}`,
    ...identities,
  }
}

/** The operator (made once, kept in `<natsDir>/auth/keys`), the CA, and the controller's and the agent's credentials (kept once minted). */
async function stackIdentities(o: { natsDir: string; agentHost: string; caDir: string }) {
  const authDir = path.join(o.natsDir, 'auth')
  const operatorDir = path.join(authDir, 'keys')
  const op = ensureOperator(operatorDir)
  const keep = (file: string, mint: () => string) => (existsSync(file) ? file : writeCreds(file, mint()))
  const ca = await ensureCa(o.caDir)
  return {
    authDir, op, ca,
    identities: {
      caFile: ca.certFile,
      operatorDir,
      controllerCreds: keep(path.join(authDir, 'controller.creds'), () => mintControllerCreds(op)),
      agentCreds: keep(path.join(authDir, `agent-${o.agentHost}.creds`), () => mintAgentCreds(op, o.agentHost)),
    },
  }
}

/** One node of the stack's NATS cluster. */
export interface StackNatsNode {
  name: string
  configFile: string
  port: number
  url: string
  storeDir: string
}

export interface StackNatsCluster extends Omit<StackNats, 'configFile'> {
  /** Every node's URL, comma-separated (STRATO_NATS_URL for controllers and agents). */
  url: string
  nodes: StackNatsNode[]
}

/**
 * `npm run start:cluster`'s NATS: `size` nodes (n1, n2, …) on ports `port`,
 * `port+1`, … with routes on `routePort`, `routePort+1`, …, each with its
 * own JetStream store under `natsDir/<name>`, one operator and set of
 * credentials for all (as prepareStackNats makes them), TLS on clients and
 * routes with one certificate from the controller's CA (for server and client
 * use: routes check each other both ways), routes authenticated with a kept
 * password.
 */
export async function prepareStackNatsCluster(o: { natsDir: string; host: string; port: number; routePort: number; size: number; agentHost: string; caDir: string }): Promise<StackNatsCluster> {
  const { authDir, op, ca, identities } = await stackIdentities(o)
  const cert = await ensureCertificate(ca, authDir, 'nats-cluster', { commonName: 'strato-nats', ...certificateNames({ listen: o.host }), usage: 'both' })
  const routePassword = ensureRoutePassword(op)
  const routes = Array.from({ length: o.size }, (_, i) => `${o.host}:${o.routePort + i}`)
  const nodes = routes.map((_, i): StackNatsNode => {
    const name = `n${i + 1}`
    const port = o.port + i
    const storeDir = path.join(o.natsDir, name)
    mkdirSync(storeDir, { recursive: true, mode: 0o700 })
    const cluster = { name: 'strato', serverName: name, host: o.host, port: o.routePort + i, peers: routes.filter((_, j) => j !== i), routePassword, caFile: ca.certFile }
    const configFile = writeNatsServerConfig(op, path.join(authDir, `${name}.conf`), { host: o.host, port, storeDir, tls: { certFile: cert.certFile, keyFile: cert.keyFile }, cluster })
    return { name, configFile, port, storeDir, url: `tls://${o.host}:${port}` }
  })
  return {
    url: nodes.map((n) => n.url).join(','),
    nodes,
    ...identities,
  }
}
