/**
 * NATS identities (decentralized JWT auth, "operator mode"): an operator, a
 * system account and the STRATO account (JetStream enabled) are made once and
 * their signing seeds kept under one directory (files 0600, directory 0700);
 * nats-server is told the operator and both account JWTs through a config
 * fragment (`resolver: MEMORY` with a preload), so users — the controller, and
 * one agent per host — are minted later with no reload of nats-server: a user
 * JWT signed by the STRATO account's key is valid as soon as it exists.
 *
 * JWTs are encoded here (nats-server 2.9 claims, `ed25519-nkey` signatures):
 * `@nats-io/jwt` is not a dependency. Keys come from nkeys as re-exported by
 * the NATS client.
 *
 * Agent permissions (see `agentPermissions`) are what an agent for host H
 * needs and nothing more: its own events, its own conductor subject, its own
 * durable cast consumer, its own inbox, its own rpc subject, and the change
 * notices every agent receives.
 */
import { createHash, randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { nkeys } from '@nats-io/transport-node'
import { InvalidArgument } from '../../proto/errors.js'
import { formatCreds } from '../../proto/nats-creds.js'
import { writePrivateFile } from '../../proto/private-file.js'
import {
  CAST_STREAM, DHCP_CHANGED_SUBJECT, FIREWALL_CHANGED_SUBJECT, ROUTER_CHANGED_SUBJECT, agentInboxPrefix, agentRpcSubject, castConsumer, conductorSubject, hostToken,
} from '../../proto/subjects.js'

type KeyPair = ReturnType<typeof nkeys.createOperator>

/** Publish/subscribe allow lists, as in a user JWT's `pub`/`sub`. */
export interface Permissions {
  pub: string[]
  sub: string[]
  /** Whether the user may answer requests it received (one reply each, `allow_responses`). */
  responses: boolean
}

/** The keys and JWTs of one installation (what `ensureOperator` keeps on disk). */
export interface NatsOperator {
  dir: string
  operatorJwt: string
  systemAccount: string
  systemAccountJwt: string
  /** The STRATO account's public key (every daemon's user lives in it). */
  account: string
  accountJwt: string
  /** Signs user JWTs of the STRATO account. */
  accountKey: KeyPair
}

const b64url = (b: Uint8Array | string) => Buffer.from(b).toString('base64url')
const b32 = (b: Uint8Array) => {
  // RFC 4648 base32 without padding, as nats' jti.
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
  let bits = 0, value = 0, out = ''
  for (const byte of b) {
    value = (value << 8) | byte
    bits += 8
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31]
  return out
}

/**
 * Encodes and signs one JWT as nats-server 2.9 reads it (jwt v2): header
 * `{"typ":"JWT","alg":"ed25519-nkey"}`, `jti` = base32 of the SHA-512/256 of
 * the claims with an empty jti (as the Go library computes it; the server
 * does not check it, tools show it), `nats.version: 2`.
 */
export function encodeJwt(issuer: KeyPair, subject: string, name: string, nats: Record<string, unknown>): string {
  const claims: Record<string, unknown> = { jti: '', iat: Math.floor(Date.now() / 1000), iss: issuer.getPublicKey(), name, sub: subject, nats: { ...nats, version: 2 } }
  claims.jti = b32(createHash('sha512-256').update(JSON.stringify(claims)).digest())
  const head = b64url(JSON.stringify({ typ: 'JWT', alg: 'ed25519-nkey' }))
  const body = b64url(JSON.stringify(claims))
  const sig = issuer.sign(new TextEncoder().encode(`${head}.${body}`))
  return `${head}.${body}.${b64url(sig)}`
}

/** The claims of a JWT (not verified: for tests and tools). */
export function decodeJwt(jwt: string): Record<string, any> {
  const [, body] = jwt.split('.')
  return JSON.parse(Buffer.from(body ?? '', 'base64url').toString('utf8')) as Record<string, any>
}

/** `.creds` files: one format for the controller's minting and the agent's join (proto/nats-creds.ts). */
export { formatCreds } from '../../proto/nats-creds.js'

function seedOf(kp: KeyPair): string {
  return new TextDecoder().decode(kp.getSeed())
}

function loadOrCreate(dir: string, file: string, create: () => KeyPair): KeyPair {
  const p = path.join(dir, file)
  if (existsSync(p)) return nkeys.fromSeed(new TextEncoder().encode(readFileSync(p, 'utf8').trim()))
  const kp = create()
  writePrivateFile(p, seedOf(kp))
  return kp
}

/** JetStream unlimited (a 0 would disable it for the account) and no other account limit. */
const ACCOUNT_LIMITS = {
  subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1,
  mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1,
}

/**
 * Makes (first call) or loads (later calls) the operator, the system account
 * and the STRATO account under `dir` (0700; seeds 0600). Their JWTs are
 * re-signed at each call — they carry no state besides the keys.
 */
export function ensureOperator(dir: string): NatsOperator {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  chmodSync(dir, 0o700)
  const operator = loadOrCreate(dir, 'operator.nk', () => nkeys.createOperator())
  const system = loadOrCreate(dir, 'system-account.nk', () => nkeys.createAccount())
  const account = loadOrCreate(dir, 'strato-account.nk', () => nkeys.createAccount())
  const systemAccount = system.getPublicKey()
  const op = operator.getPublicKey()
  return {
    dir,
    operatorJwt: encodeJwt(operator, op, 'strato', { type: 'operator', system_account: systemAccount }),
    systemAccount,
    systemAccountJwt: encodeJwt(operator, systemAccount, 'SYS', { type: 'account', limits: { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 } }),
    account: account.getPublicKey(),
    accountJwt: encodeJwt(operator, account.getPublicKey(), 'STRATO', { type: 'account', limits: ACCOUNT_LIMITS, default_permissions: { pub: {}, sub: {} } }),
    accountKey: account,
  }
}

export interface NatsServerOptions {
  host: string
  port: number
  storeDir: string
  /** Serve TLS only, with this certificate (from the controller's CA). */
  tls?: { certFile: string; keyFile: string }
  /** This server as one node of a NATS cluster (routes to its peers, JetStream clustered). */
  cluster?: NatsClusterNode
}

/**
 * One node of a NATS cluster. Routes authenticate with the cluster's route
 * password (`ensureRoutePassword`); when clients speak TLS the routes do
 * too, mutually: each node's certificate (from the cloud's CA, made for
 * server and client use) is checked against `caFile` on both ends.
 */
export interface NatsClusterNode {
  /** The cluster's name, the same on every node. */
  name: string
  /** This node's name, unique in the cluster (JetStream's peer name). */
  serverName: string
  /** Where this node listens for routes. */
  host: string
  port: number
  /** The other nodes' route addresses, `host:port`. */
  peers: string[]
  routePassword: string
  /** Needed with `tls`: the CA the peers' certificates are from. */
  caFile?: string
}

/** The user name routes authenticate with. */
export const ROUTE_USER = 'strato-route'

/**
 * The password of the cluster's routes, made once and kept beside the
 * operator keys (`cluster-route.secret`, 0600): every node's config is written
 * from the same directory, so they agree, and a restart keeps it.
 */
export function ensureRoutePassword(op: NatsOperator): string {
  const file = path.join(op.dir, 'cluster-route.secret')
  if (!existsSync(file)) writePrivateFile(file, randomBytes(24).toString('hex'))
  return readFileSync(file, 'utf8').trim()
}

/**
 * The nats-server configuration that enables this operator's auth (and
 * JetStream in `storeDir`). One function, so a `tls {}` block has one place
 * to go. No `authorization`/`accounts` block: in operator mode every client
 * needs a user JWT signed by a preloaded account, anonymous ones are refused.
 */
export function natsServerConfig(op: NatsOperator, o: NatsServerOptions): string {
  return [
    `# Written by Strato (controller/bus/credentials.ts); rewritten at each start.`,
    `host: ${JSON.stringify(o.host)}`,
    `port: ${o.port}`,
    `jetstream { store_dir: ${JSON.stringify(o.storeDir)} }`,
    `operator: ${JSON.stringify(op.operatorJwt)}`,
    `system_account: ${JSON.stringify(op.systemAccount)}`,
    `resolver: MEMORY`,
    `resolver_preload: {`,
    `  ${op.systemAccount}: ${JSON.stringify(op.systemAccountJwt)}`,
    `  ${op.account}: ${JSON.stringify(op.accountJwt)}`,
    `}`,
    // Clients must speak TLS (nats-server then refuses plaintext connections).
    ...(o.tls ? [`tls {`, `  cert_file: ${JSON.stringify(o.tls.certFile)}`, `  key_file: ${JSON.stringify(o.tls.keyFile)}`, `  timeout: 5`, `}`] : []),
    ...(o.cluster ? clusterBlock(o.cluster, o.tls) : []),
    '',
  ].join('\n')
}

function clusterBlock(c: NatsClusterNode, tls: NatsServerOptions['tls']): string[] {
  if (tls && !c.caFile) throw new InvalidArgument(`cluster node ${c.serverName}: TLS routes need the CA the peers' certificates are from (caFile)`, { field: 'cluster.caFile' })
  const secret = encodeURIComponent(c.routePassword)
  return [
    `server_name: ${JSON.stringify(c.serverName)}`,
    `cluster {`,
    `  name: ${JSON.stringify(c.name)}`,
    `  host: ${JSON.stringify(c.host)}`,
    `  port: ${c.port}`,
    `  authorization { user: ${JSON.stringify(ROUTE_USER)}, password: ${JSON.stringify(c.routePassword)}, timeout: 5 }`,
    `  routes: [`,
    ...c.peers.map((p) => `    ${JSON.stringify(`nats-route://${ROUTE_USER}:${secret}@${p}`)}`),
    `  ]`,
    // Routes verify each other both ways: the certificate must be made for server and client use.
    ...(tls ? [`  tls {`, `    cert_file: ${JSON.stringify(tls.certFile)}`, `    key_file: ${JSON.stringify(tls.keyFile)}`, `    ca_file: ${JSON.stringify(c.caFile)}`, `    timeout: 5`, `  }`] : []),
    `}`,
  ]
}

/** Writes `natsServerConfig` to `file` (0600: it names the accounts) and returns its path. */
export function writeNatsServerConfig(op: NatsOperator, file: string, o: NatsServerOptions): string {
  writePrivateFile(file, natsServerConfig(op, o))
  return file
}

/**
 * What the agent of `host` may do on the bus. `$JS.API.CONSUMER.INFO` and
 * `.MSG.NEXT` of its own durable consumer are what nats.js's `consumers.get`
 * + `consume` send; acks (and `working()` progress) go to `$JS.ACK.<stream>.<consumer>.>`.
 * Events are published through JetStream (the stream captures core
 * publishes) and the PubAck comes back on the agent's own inbox.
 */
export function agentPermissions(host: string): Permissions {
  const h = hostToken(host)
  const consumer = castConsumer(host)
  return {
    pub: [
      `strato.events.*.${h}`,
      conductorSubject(host),
      `$JS.API.CONSUMER.INFO.${CAST_STREAM}.${consumer}`,
      `$JS.API.CONSUMER.MSG.NEXT.${CAST_STREAM}.${consumer}`,
      `$JS.ACK.${CAST_STREAM}.${consumer}.>`,
    ],
    sub: [`${agentInboxPrefix(host)}.>`, agentRpcSubject(host), FIREWALL_CHANGED_SUBJECT, DHCP_CHANGED_SUBJECT, ROUTER_CHANGED_SUBJECT],
    responses: true,
  }
}

/** The controller: everything in the STRATO account (streams, casts, the conductor, events). */
export const CONTROLLER_PERMISSIONS: Permissions = { pub: ['>'], sub: ['>'], responses: false }

/**
 * Signs a user JWT of the STRATO account for `publicKey` with `perms`. A
 * joining host makes its own key and sends only the public half.
 * @throws InvalidArgument when `publicKey` is not a NATS user public key.
 */
export function mintUserJwt(op: NatsOperator, publicKey: string, name: string, perms: Permissions): string {
  let valid = false
  try {
    valid = publicKey.startsWith('U') && nkeys.fromPublic(publicKey).getPublicKey() === publicKey
  } catch {
    valid = false
  }
  if (!valid) throw new InvalidArgument(`'${publicKey.slice(0, 64)}' is not a NATS user public key (56 characters starting with U, as nkeys makes them)`, { field: 'nats_public_key' })
  const nats: Record<string, unknown> = {
    type: 'user', subs: -1, data: -1, payload: -1,
    pub: { allow: perms.pub }, sub: { allow: perms.sub },
    ...(perms.responses ? { resp: { max: 1, ttl: 0 } } : {}),
  }
  return encodeJwt(op.accountKey, publicKey, name, nats)
}

/** Mints a user of the STRATO account with `perms` (key made here); returns the `.creds` text. */
export function mintUser(op: NatsOperator, name: string, perms: Permissions): string {
  const user = nkeys.createUser()
  return formatCreds(mintUserJwt(op, user.getPublicKey(), name, perms), seedOf(user))
}

/** The user JWT of `host`'s agent for the key the host made itself (host join). */
export function mintAgentJwt(op: NatsOperator, host: string, publicKey: string): string {
  return mintUserJwt(op, publicKey, `agent-${hostToken(host)}`, agentPermissions(host))
}

/** Credentials of the agent of `host` (its own subjects only; see `agentPermissions`). */
export function mintAgentCreds(op: NatsOperator, host: string): string {
  return mintUser(op, `agent-${hostToken(host)}`, agentPermissions(host))
}

export function mintControllerCreds(op: NatsOperator): string {
  return mintUser(op, 'strato-controller', CONTROLLER_PERMISSIONS)
}

/** Writes creds to `file`, mode 0600. */
export function writeCreds(file: string, creds: string): string {
  writePrivateFile(file, creds, { dirMode: 0o700 })
  return file
}
