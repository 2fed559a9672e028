/**
 * This host's NBD identity: one key pair, made here (the private key never
 * leaves the host), and the certificate the cloud's CA signs for it —
 * `CN=<host>`, for server and client auth. Its qemu-storage-daemon serves
 * exports with it (nbd-export.ts: `volumeExportTlsDir`), and QEMU under
 * libvirt presents it to other hosts' exports (qemu.conf's
 * `nbd_tls_x509_cert_dir`, /etc/pki/qemu by default), whose `tls-authz`
 * admits exactly `CN=<the hosts they are for>`.
 *
 * Three callers, one path: `strato-agent join` sends the request with the join
 * token (Hosts/JoinHost) and installs what comes back; `npm start` asks its
 * own controller's issuer for the local agent at each start, when the
 * certificate is missing, for other addresses, or near expiry; and the
 * running agent renews its own at its start and daily, within 30 days of
 * expiry or past 2/3 of its lifetime, over its bus identity (the
 * conductor's renewHostCertificate, signed by JoinHost's issuer).
 *
 * Files use QEMU's `tls-creds-x509` layout (ca-cert.pem, server-cert.pem,
 * server-key.pem, client-cert.pem, client-key.pem). The server directory is
 * root's alone (0700, files 0600: qemu-storage-daemon runs as root); the
 * client directory is for QEMU under libvirt, which runs as its own user:
 * files root:<QEMU's group> 0640, in a directory made root:<QEMU's group>
 * 0710 as the guests' directories are (disk/guest-dirs.ts) — QEMU reads
 * them, no other local user does (an existing directory, e.g. the operator's
 * /etc/pki/qemu, keeps its mode). Keys are written before the
 * certificates, each file renamed into place: a QEMU starting meanwhile reads
 * whole files, and a crash between two leaves a mismatch the next check
 * renews.
 */
import { execFile } from 'node:child_process'
import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto'
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { FailedPrecondition, Internal } from '../../proto/errors.js'
import { writePrivateFile } from '../../proto/private-file.js'
import { renewalDue as certificateRenewalDue } from '../../proto/cert-renewal.js'
import type { AgentConfig } from '../config.js'
import { groupId } from '../disk/guest-dirs.js'

const run = promisify(execFile)

/** Where this host's NBD certificate goes, and who may read it. */
export interface HostNbdTls {
  /** The host's name: the certificate's CN. */
  host: string
  /** The NBD server's directory (every file of the layout): the agent's `volumeExportTlsDir`. */
  dir: string
  /** Where QEMU under libvirt reads its NBD client certificate (ca-cert, client-cert, client-key); null: nowhere else. */
  clientDir: string | null
  /** QEMU's group: it reads the client directory's files (needed with `clientDir` only). */
  qemuGid: number | undefined
  /** The host's addresses (its exports' and its own), the certificate's IP SANs. */
  addresses: string[]
}

/** Where `cfg` keeps this host's NBD certificate. @throws FailedPrecondition when QEMU's group does not exist. */
export function hostNbdTls(cfg: AgentConfig): HostNbdTls {
  return {
    host: cfg.host, dir: cfg.volumeExportTlsDir, clientDir: cfg.nbdClientTlsDir || null, qemuGid: cfg.nbdClientTlsDir ? groupId(cfg.qemuGroup) : undefined,
    addresses: [...new Set([cfg.volumeExportAddress, cfg.myIp].filter(Boolean))],
  }
}

/** A key made here and the request to certify it (PEM both). */
export interface HostCertificateRequest {
  keyPem: string
  csrPem: string
}

const CLIENT_FILES = ['client-key.pem', 'ca-cert.pem', 'client-cert.pem']

/** A new P-256 key and its CSR for `CN=<host>` (openssl: Node has no CSR writer). */
export async function hostCertificateRequest(host: string): Promise<HostCertificateRequest> {
  const keyPem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
  const scratch = mkdtempSync(path.join(tmpdir(), 'strato-csr-'))
  try {
    const keyFile = path.join(scratch, 'key.pem')
    writePrivateFile(keyFile, keyPem)
    const { stdout } = await run('openssl', ['req', '-new', '-key', keyFile, '-subj', `/CN=${host}`], { timeout: 30_000 })
    return { keyPem, csrPem: stdout }
  } catch (err) {
    const e = err as { code?: string; stderr?: string; message: string }
    if (e.code === 'ENOENT') throw new FailedPrecondition(`cannot make ${host}'s NBD certificate request: the openssl command is not installed (npm run setup installs it)`, { cause: err })
    throw new Internal(`cannot make ${host}'s NBD certificate request: openssl failed: ${(e.stderr ?? e.message).trim()}`, { cause: err })
  } finally {
    rmSync(scratch, { recursive: true, force: true })
  }
}

/**
 * Why this host's NBD certificate (`o.dir`'s server-cert.pem) is due for
 * renewal (proto/cert-renewal.ts: within 30 days of its expiry, or past 2/3
 * of its lifetime), or undefined when it is not, or when the host has none to renew (a
 * controller with no CA key issued it none).
 */
export function renewalDue(o: HostNbdTls, now = Date.now()): string | undefined {
  const file = path.join(o.dir, 'server-cert.pem')
  if (!existsSync(file)) return undefined
  let cert: X509Certificate
  try {
    cert = new X509Certificate(readFileSync(file))
  } catch (err) {
    return `${file} cannot be read: ${(err as Error).message}`
  }
  return certificateRenewalDue(cert, now)
}

/**
 * Renews this host's NBD certificate when {@link renewalDue}: a new key made
 * here, its CSR signed by the controller through `sign` (the agent's: the
 * conductor's renewHostCertificate, over the host's own bus identity), and
 * installed as at join (each file written aside, flushed, renamed into
 * place; keys 0600). Returns why it was renewed; undefined when not due.
 */
export async function renewHostCertificate(o: HostNbdTls, sign: (csrPem: string, addresses: string[]) => Promise<{ certPem: string; caPem: string }>): Promise<string | undefined> {
  const why = renewalDue(o)
  if (!why) return undefined
  const key = await hostCertificateRequest(o.host)
  const r = await sign(key.csrPem, o.addresses)
  installHostCertificate(o, r.caPem, r.certPem, key)
  return why
}

/**
 * Writes the certificate issued for `key` into `o.dir` (and `o.clientDir`),
 * after checking that it is what was asked for: signed by `caPem`, for this
 * key, naming `CN=<host>`.
 */
export function installHostCertificate(o: HostNbdTls, caPem: string, certPem: string, key: HostCertificateRequest): void {
  const why = mismatch(o, caPem, certPem, key.keyPem, { fresh: true })
  if (why) throw new Internal(`the NBD certificate the controller issued for '${o.host}' is not usable: ${why}`)
  const content: Record<string, string> = {
    'ca-cert.pem': caPem, 'server-cert.pem': certPem, 'client-cert.pem': certPem, 'server-key.pem': key.keyPem, 'client-key.pem': key.keyPem,
  }
  mkdirSync(o.dir, { recursive: true, mode: 0o700 })
  for (const f of ['server-key.pem', 'client-key.pem', 'ca-cert.pem', 'server-cert.pem', 'client-cert.pem']) writePrivateFile(path.join(o.dir, f), content[f]!)
  if (o.clientDir) {
    if (o.qemuGid === undefined) throw new Internal(`no QEMU group to give ${o.clientDir} to`)
    if (!existsSync(o.clientDir)) qemuDir(o.clientDir, o.qemuGid)
    for (const f of CLIENT_FILES) writePrivateFile(path.join(o.clientDir, f), content[f]!, { mode: 0o640, gid: o.qemuGid })
  }
}

/**
 * Why the certificate in `o.dir` (and `o.clientDir`) needs (re)issuing —
 * missing, not of `caPem`, not for its key, another CN or other addresses,
 * due for renewal — or undefined when it is good.
 */
export function hostCertificateProblem(o: HostNbdTls, caPem: string): string | undefined {
  const read = (dir: string, f: string) => (existsSync(path.join(dir, f)) ? readFileSync(path.join(dir, f), 'utf8') : undefined)
  const dirs = o.clientDir ? [o.dir, o.clientDir] : [o.dir]
  for (const dir of dirs) {
    const [ca, cert, key] = dir === o.dir ? [read(dir, 'ca-cert.pem'), read(dir, 'server-cert.pem'), read(dir, 'server-key.pem')] : [read(dir, 'ca-cert.pem'), read(dir, 'client-cert.pem'), read(dir, 'client-key.pem')]
    if (!ca || !cert || !key) return `${dir} lacks its certificate, key or CA`
    if (ca !== caPem) return `${dir}/ca-cert.pem is not the cloud's CA`
    const why = mismatch(o, caPem, cert, key)
    if (why) return `${dir}: ${why}`
  }
  return undefined
}

/** What is wrong with a certificate for this host; `fresh`: just issued, so its age is not checked. */
function mismatch(o: HostNbdTls, caPem: string, certPem: string, keyPem: string, a: { fresh?: boolean } = {}): string | undefined {
  try {
    const cert = new X509Certificate(certPem)
    const ca = new X509Certificate(caPem)
    if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return 'it is not signed by the cloud CA'
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) return 'it is not for the key made here'
    if (cert.subject !== `CN=${o.host}`) return `it names '${cert.subject.replaceAll('\n', ', ')}', not 'CN=${o.host}'`
    const due = a.fresh ? undefined : certificateRenewalDue(cert)
    if (due) return due
    const ips = (cert.subjectAltName ?? '').split(', ').filter((s) => s.startsWith('IP Address:')).map((s) => s.slice(11))
    if (o.addresses.some((a) => !ips.includes(a))) return `it certifies ${ips.join(', ') || 'no address'}, not ${o.addresses.join(', ')}`
    return undefined
  } catch (err) {
    return `it cannot be read: ${(err as Error).message}`
  }
}

/** root:<QEMU's group> 0710: QEMU opens the files by name; nobody lists the directory. */
function qemuDir(dir: string, gid: number): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 }) // 0700 until its group is QEMU's
  chownSync(dir, 0, gid)
  chmodSync(dir, 0o710)
}
