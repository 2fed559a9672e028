/**
 * `strato-agent join`: a new host joins the cloud with a join token
 * (kubeadm join). It pins the cloud's CA by the hash printed with the token
 * (the controller presents its CA in its TLS chain; nothing is trusted until
 * that CA's public key matches), makes its own NATS user key and NBD key
 * (neither leaves the host), presents the token once (Hosts/JoinHost) with
 * the NBD key's CSR, and writes what it was given — its bus credentials, the
 * CA, where the controller and NATS are — into its state directory, mode
 * 0600, and its NBD certificate where QEMU reads it (volume/nbd-tls.ts). The agent then starts from
 * there, announces itself and waits to be mapped (`strato host discover`).
 */
import { mkdirSync } from 'node:fs'
import { hostname } from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js'
import { nkeys } from '@nats-io/transport-node'
import { InvalidArgument, Unauthenticated } from '../proto/errors.js'
import { fromGrpcError } from '../proto/grpc-errors.js'
import { formatCreds } from '../proto/nats-creds.js'
import { caCertHash, isCaCertHash } from '../proto/ca-hash.js'
import { writePrivateFile } from '../proto/private-file.js'
import { HostsClient, type JoinHostResponse } from '../proto/gen/strato/compute/v1/hosts.js'
import { JOIN_STATE_FILE, type JoinState } from './join-state.js'
import { hostCertificateRequest, installHostCertificate, type HostNbdTls } from './volume/nbd-tls.js'

export interface JoinOptions {
  /** `grpcs://host:port` (or `grpc://` for a plaintext controller on loopback). */
  controller: string
  token: string
  /** `sha256:<hex>`; required with grpcs unless `unsafeSkipCaVerification`. */
  caCertHash?: string
  unsafeSkipCaVerification?: boolean
  host: string
  stateDir: string
  timeoutMs?: number
  /** Where the host's NBD certificate goes (a key made here, a CSR sent with the token); absent: none is asked for. */
  nbd?: HostNbdTls
}

/** `strato-agent join` arguments, as kubeadm join takes them (plus where to keep the state). */
export function parseJoinArgs(args: string[]): Omit<JoinOptions, 'stateDir' | 'host'> & { host: string; stateDir?: string; noStart: boolean } {
  const values: Record<string, string> = {}
  const flags = new Set<string>()
  const valued = ['--controller', '--token', '--ca-cert-hash', '--host', '--state-dir']
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    const [name, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined]
    if (valued.includes(name)) {
      const v = inline ?? args[++i]
      if (v === undefined) throw new InvalidArgument(`${name} needs a value`, { field: name })
      values[name] = v
    } else if (name === '--no-start' || name === '--unsafe-skip-ca-verification') {
      flags.add(name)
    } else {
      throw new InvalidArgument(`unknown argument '${a}' (usage: strato-agent join --controller grpcs://HOST:PORT --token ID.SECRET --ca-cert-hash sha256:HEX [--host NAME] [--state-dir DIR] [--no-start])`, { field: 'argv' })
    }
  }
  if (!values['--controller']) throw new InvalidArgument('--controller grpcs://HOST:PORT is required (the join command printed by strato host join-token create has it)', { field: 'controller' })
  return {
    controller: values['--controller'],
    token: values['--token'] ?? '',
    ...(values['--ca-cert-hash'] !== undefined ? { caCertHash: values['--ca-cert-hash'] } : {}),
    unsafeSkipCaVerification: flags.has('--unsafe-skip-ca-verification'),
    host: values['--host'] ?? hostname(),
    ...(values['--state-dir'] ? { stateDir: path.resolve(values['--state-dir']) } : {}),
    noStart: flags.has('--no-start'),
  }
}

/** Splits `grpcs://h:p` → TLS and `h:p`. */
export function parseController(url: string): { tls: boolean; address: string } {
  const m = /^(grpcs?):\/\/([^/]+)\/?$/.exec(url)
  if (!m) throw new InvalidArgument(`--controller must be grpcs://HOST:PORT (or grpc://HOST:PORT for a plaintext controller), got '${url}'`, { field: 'controller' })
  return { tls: m[1] === 'grpcs', address: m[2]! }
}

/**
 * The CA certificate (PEM) among those the controller presents whose public
 * key hashes to `pin`. The connection is not trusted for anything else.
 */
export async function fetchPinnedCa(address: string, pin: string | undefined, timeoutMs = 10_000): Promise<string> {
  const i = address.lastIndexOf(':')
  const host = address.slice(0, i).replace(/^\[|\]$/g, '')
  const port = Number(address.slice(i + 1))
  const chain = await new Promise<tls.DetailedPeerCertificate>((resolve, reject) => {
    const s = tls.connect({ host, port, rejectUnauthorized: false, ALPNProtocols: ['h2'], servername: /^[\d.:]+$/.test(host) ? undefined : host, timeout: timeoutMs }, () => {
      const c = s.getPeerCertificate(true)
      s.end()
      resolve(c)
    })
    s.once('timeout', () => (s.destroy(), reject(new Unauthenticated(`no TLS answer from the controller at ${address} within ${timeoutMs} ms`))))
    s.once('error', (err) => reject(new Unauthenticated(`cannot reach the controller at ${address} over TLS: ${err.message}`, { cause: err })))
  })
  const pems: string[] = []
  const seen = new Set<string>()
  for (let c: tls.DetailedPeerCertificate | undefined = chain; c?.raw && !seen.has(c.fingerprint256); c = c.issuerCertificate) {
    seen.add(c.fingerprint256)
    pems.push(`-----BEGIN CERTIFICATE-----\n${c.raw.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`)
  }
  if (!pems.length) throw new Unauthenticated(`the controller at ${address} presented no certificate`)
  const root = pems[pems.length - 1]!
  if (pin === undefined) return root
  const match = pems.find((p) => caCertHash(p) === pin)
  if (!match) {
    throw new Unauthenticated(`the controller at ${address} presents no CA with public key hash ${pin} (it presents ${pems.map((p) => caCertHash(p)).join(', ')}): wrong --ca-cert-hash, or not the controller you meant`)
  }
  return match
}

/** Joins; returns what it wrote. Changes nothing on the host when the controller refuses. */
export async function join(o: JoinOptions): Promise<JoinState & { nbdCertificate: boolean }> {
  const { tls: secure, address } = parseController(o.controller)
  if (!o.token) throw new InvalidArgument('--token is required (strato host join-token create makes one)', { field: 'token' })
  let caPem = ''
  if (secure) {
    if (o.caCertHash === undefined && !o.unsafeSkipCaVerification) {
      throw new InvalidArgument('--ca-cert-hash sha256:<hex> is required to trust the controller (it is printed with the join token); --unsafe-skip-ca-verification trusts whatever answers', { field: 'caCertHash' })
    }
    if (o.caCertHash !== undefined && !isCaCertHash(o.caCertHash)) throw new InvalidArgument(`--ca-cert-hash must be sha256:<64 hex digits>, got '${o.caCertHash}'`, { field: 'caCertHash' })
    caPem = await fetchPinnedCa(address, o.caCertHash, o.timeoutMs)
  }
  const user = nkeys.createUser()
  // Made before the token is spent: a host that cannot make its request has used nothing.
  const nbdKey = o.nbd ? await hostCertificateRequest(o.host) : undefined
  const client = new HostsClient(address, secure ? credentials.createSsl(Buffer.from(caPem)) : credentials.createInsecure())
  let r: JoinHostResponse
  try {
    r = await new Promise<JoinHostResponse>((resolve, reject) =>
      client.joinHost({ token: o.token, host: o.host, natsPublicKey: user.getPublicKey(), nbdCsr: nbdKey?.csrPem ?? '', nbdAddresses: o.nbd?.addresses ?? [] }, new Metadata(), { deadline: Date.now() + (o.timeoutMs ?? 10_000) }, (err: ServiceError | null, res: JoinHostResponse) => (err ? reject(fromGrpcError(err)) : resolve(res))),
    )
  } finally {
    client.close()
  }
  mkdirSync(o.stateDir, { recursive: true, mode: 0o700 })
  if (o.nbd && nbdKey && r.nbdCertPem) installHostCertificate(o.nbd, r.caPem || caPem, r.nbdCertPem, nbdKey)
  const state: JoinState = {
    host: o.host,
    controllerAddress: r.controllerAddress || address,
    natsUrls: r.natsUrls ?? [],
    natsCredsFile: 'nats.creds',
    caFile: 'ca.pem',
  }
  writePrivateFile(path.join(o.stateDir, state.natsCredsFile), formatCreds(r.natsUserJwt ?? '', new TextDecoder().decode(user.getSeed())))
  writePrivateFile(path.join(o.stateDir, state.caFile), r.caPem || caPem)
  writePrivateFile(path.join(o.stateDir, JOIN_STATE_FILE), JSON.stringify(state, null, 2) + '\n')
  return { ...state, nbdCertificate: Boolean(o.nbd && r.nbdCertPem) }
}
