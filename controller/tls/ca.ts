/**
 * A small certificate authority kept in one directory, and the certificates it
 * issues: what bootstrap uses for the controller's gRPC listener, and what
 * nats-server's certificate or a joining host's identity can reuse. No
 * transport is imported here.
 *
 * Keys are ECDSA P-256, made by node:crypto and written 0600 in a 0700
 * directory. Node has no X.509 writer, so certificates are signed by the
 * `openssl` CLI (Debian's `openssl`, installed by setup), run with execFile and
 * fixed arguments: no shell, and no hand-written DER to get subtly wrong.
 * Reading and checking certificates (SANs, expiry, signature, key match) uses
 * node's X509Certificate, so deciding whether to renew needs no subprocess.
 */
import { execFile } from 'node:child_process'
import { createPrivateKey, generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { isIP } from 'node:net'
import path from 'node:path'
import { promisify } from 'node:util'
import { FailedPrecondition, InvalidArgument, Unavailable } from '../../proto/errors.js'
import { writePrivateFile } from '../../proto/private-file.js'
import { renewalDue } from '../../proto/cert-renewal.js'

const run = promisify(execFile)

/** A CA on disk: its certificate (PEM, public) and key (PEM, 0600). */
export interface CertificateAuthority {
  certFile: string
  keyFile: string
  /** The certificate, PEM. */
  certPem: string
}

/** Who a certificate is for: subject CN and the names a client may dial it by. */
export interface CertificateRequest {
  commonName: string
  dnsNames: string[]
  ips: string[]
  /** `server` (TLS server auth), `client`, or `both` (a host that serves and dials). @default server */
  usage?: 'server' | 'client' | 'both'
  /** @default 365 */
  days?: number
}

/** A certificate and its key on disk. */
export interface IssuedCertificate {
  certFile: string
  keyFile: string
  /** True when this call (re)issued it; false when the one on disk was still good. */
  issued: boolean
}

/** CA lifetime: ten years, like kubeadm's. */
const CA_DAYS = 3650

function newKeyPem(): string {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
}

async function openssl(args: string[], what: string): Promise<void> {
  try {
    await run('openssl', args, { timeout: 30_000 })
  } catch (err) {
    const e = err as { code?: string; stderr?: string; message: string }
    if (e.code === 'ENOENT') throw new FailedPrecondition(`cannot ${what}: the openssl command is not installed (npm run setup installs it)`, { cause: err })
    throw new Unavailable(`cannot ${what}: openssl failed: ${(e.stderr ?? e.message).trim()}`, { cause: err })
  }
}

/**
 * The CA in `dir` (`ca.pem`, `ca-key.pem`), made when missing. An operator's
 * CA placed there beforehand is used as is. A certificate without its key (or
 * the reverse) is refused rather than silently replaced: clients may trust it.
 */
export async function ensureCa(dir: string, commonName = 'Strato CA'): Promise<CertificateAuthority> {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const certFile = path.join(dir, 'ca.pem')
  const keyFile = path.join(dir, 'ca-key.pem')
  const haveCert = existsSync(certFile)
  const haveKey = existsSync(keyFile)
  if (haveCert !== haveKey) {
    throw new FailedPrecondition(`the CA in ${dir} is incomplete: ${haveCert ? 'ca.pem has no ca-key.pem' : 'ca-key.pem has no ca.pem'}; restore the missing file or remove both to make a new CA (clients must then trust the new ca.pem)`)
  }
  if (!haveCert) {
    writePrivateFile(keyFile, newKeyPem())
    const tmp = `${certFile}.${process.pid}.tmp`
    await openssl([
      'req', '-x509', '-new', '-key', keyFile, '-sha256', '-days', String(CA_DAYS), '-subj', `/CN=${dnEscape(commonName)}`,
      '-set_serial', serial(),
      '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0',
      '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      '-addext', 'subjectKeyIdentifier=hash',
      '-out', tmp,
    ], 'create the CA certificate')
    renameSync(tmp, certFile)
  }
  const certPem = readFileSync(certFile, 'utf8')
  const cert = parse(certPem, certFile)
  if (!cert.ca) throw new FailedPrecondition(`${certFile} is not a CA certificate (basicConstraints CA:TRUE missing)`)
  if (!cert.checkPrivateKey(createPrivateKey(readFileSync(keyFile)))) throw new FailedPrecondition(`${keyFile} is not the key of ${certFile}`)
  return { certFile, keyFile, certPem }
}

/**
 * `<dir>/<name>.pem` and `<name>-key.pem` signed by `ca` for `req`, reissued
 * (with a new key) when missing, not signed by this CA, not matching its key,
 * naming other SANs than asked, or due for renewal (proto/cert-renewal.ts:
 * within 30 days of expiry or past 2/3 of its lifetime); else left alone.
 */
export async function ensureCertificate(ca: CertificateAuthority, dir: string, name: string, req: CertificateRequest): Promise<IssuedCertificate> {
  const dnsNames = unique(req.dnsNames)
  const ips = unique(req.ips)
  checkNames(name, dnsNames, ips)
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const certFile = path.join(dir, `${name}.pem`)
  const keyFile = path.join(dir, `${name}-key.pem`)
  if (stillGood(ca, certFile, keyFile, dnsNames, ips)) return { certFile, keyFile, issued: false }

  const scratch = mkdtempSync(path.join(dir, '.issue-'))
  try {
    const newKey = path.join(scratch, 'key.pem')
    const newCert = path.join(scratch, 'cert.pem')
    writePrivateFile(newKey, newKeyPem())
    // OpenSSL 3's `req -x509 -CA`: a certificate for a new key, signed by the CA, in one step (no CSR file, no serial file).
    await openssl(['req', '-x509', '-new', '-key', newKey, ...leafArgs(ca, { ...req, dnsNames, ips }), '-out', newCert], `issue the certificate for ${name}`)
    // Key first: a crash between the two renames leaves a mismatch, which the next run reissues.
    renameSync(newKey, keyFile)
    renameSync(newCert, certFile)
  } finally {
    rmSync(scratch, { recursive: true, force: true })
  }
  return { certFile, keyFile, issued: true }
}

/**
 * Signs a certificate signing request (PEM) made elsewhere — the key stays
 * with whoever made it (a joining host) — for `req`, with the same
 * extensions {@link ensureCertificate} gives. The request must be
 * self-signed (proof that its maker holds the key) and its subject must be
 * exactly `CN=<req.commonName>`: a request naming anything else is refused,
 * not rewritten. Returns the certificate, PEM.
 * @throws InvalidArgument for a request that is not a CSR, is not signed by its key, or names another subject.
 */
export async function signCertificateRequest(ca: CertificateAuthority, csrPem: string, req: CertificateRequest): Promise<string> {
  if (!/^-----BEGIN CERTIFICATE REQUEST-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE REQUEST-----\s*$/.test(csrPem)) {
    throw new InvalidArgument(`the certificate signing request for '${req.commonName}' is not one PEM CERTIFICATE REQUEST`, { field: 'csr' })
  }
  const dnsNames = checkNames(req.commonName, unique(req.dnsNames), unique(req.ips))
  const scratch = mkdtempSync(path.join(path.dirname(ca.keyFile), '.sign-'))
  try {
    const csrFile = path.join(scratch, 'req.pem')
    const certFile = path.join(scratch, 'cert.pem')
    writePrivateFile(csrFile, csrPem)
    let subject: string
    const invalid = (why: string, cause?: unknown) => new InvalidArgument(`the certificate signing request for '${req.commonName}' is not a valid, self-signed CSR: ${why}`, { field: 'csr', cause })
    try {
      // -verify: the request's signature is made with the key it carries. OpenSSL 3.0 exits 0 when it is
      // not (it only prints "verify failure"), so its verdict is read, not its exit code.
      const r = await run('openssl', ['req', '-in', csrFile, '-noout', '-verify', '-subject', '-nameopt', 'RFC2253'], { timeout: 30_000 })
      if (!/self-signature verify OK/.test(r.stderr)) throw invalid(r.stderr.trim() || 'openssl did not verify its signature')
      subject = r.stdout.trim()
    } catch (err) {
      if (err instanceof InvalidArgument) throw err
      const e = err as { code?: string; stderr?: string; message: string }
      if (e.code === 'ENOENT') throw new FailedPrecondition('cannot sign a certificate request: the openssl command is not installed (npm run setup installs it)', { cause: err })
      throw invalid((e.stderr ?? e.message).trim().split('\n')[0] ?? '', err)
    }
    const want = `CN=${req.commonName}`
    if (subject !== `subject=${want}`) {
      throw new InvalidArgument(`the certificate signing request names '${subject.replace(/^subject=/, '')}', not '${want}': a host gets a certificate for its own name only`, { field: 'csr' })
    }
    await openssl(['req', '-in', csrFile, '-x509', '-copy_extensions', 'none', ...leafArgs(ca, { ...req, dnsNames, ips: unique(req.ips) }), '-out', certFile], `sign the certificate request of ${req.commonName}`)
    return readFileSync(certFile, 'utf8')
  } finally {
    rmSync(scratch, { recursive: true, force: true })
  }
}

/** The most addresses a host may have certified (its storage and management addresses, v4 and v6). */
const MAX_HOST_ADDRESSES = 8

/**
 * A host's certificate for the CSR it made (its NBD identity): CN=<host>, the
 * host name as DNS SAN and `addresses` as IP SANs, for server and client auth
 * — its qemu-storage-daemon serves exports with it and its QEMU presents it
 * to other hosts' exports, whose `tls-authz` admits `CN=<host>`.
 */
export async function signHostCertificate(ca: CertificateAuthority, host: string, csrPem: string, addresses: string[]): Promise<string> {
  if (csrPem.length > 16 * 1024) throw new InvalidArgument(`the certificate signing request for '${host}' is ${csrPem.length} bytes; at most 16 KiB`, { field: 'csr' })
  if (addresses.length > MAX_HOST_ADDRESSES) throw new InvalidArgument(`a host certificate names at most ${MAX_HOST_ADDRESSES} addresses, got ${addresses.length}`, { field: 'nbd_addresses' })
  return signCertificateRequest(ca, csrPem, { commonName: host, dnsNames: [host], ips: addresses, usage: 'both' })
}

/** A leaf's subject, lifetime and extensions, signed by `ca` (OpenSSL 3's `req -x509 -CA`: no serial file). */
function leafArgs(ca: CertificateAuthority, req: CertificateRequest): string[] {
  const usage = req.usage ?? 'server'
  const eku = usage === 'both' ? 'serverAuth,clientAuth' : usage === 'client' ? 'clientAuth' : 'serverAuth'
  const san = [...req.dnsNames.map((d) => `DNS:${d}`), ...req.ips.map((i) => `IP:${i}`)].join(',')
  return [
    '-CA', ca.certFile, '-CAkey', ca.keyFile, '-sha256',
    '-days', String(req.days ?? 365), '-subj', `/CN=${dnEscape(req.commonName)}`, '-set_serial', serial(),
    '-addext', 'basicConstraints=critical,CA:FALSE',
    '-addext', 'keyUsage=critical,digitalSignature',
    '-addext', `extendedKeyUsage=${eku}`,
    '-addext', `subjectAltName=${san}`,
  ]
}

/** The DNS names, checked with the IPs (each well formed, at least one name in all); refused by name. */
function checkNames(name: string, dnsNames: string[], ips: string[]): string[] {
  for (const ip of ips) if (!isIP(ip)) throw new InvalidArgument(`certificate for ${name}: '${ip}' is not an IP address`, { field: 'ips' })
  for (const dns of dnsNames) if (!/^[A-Za-z0-9*]([A-Za-z0-9-.]*[A-Za-z0-9])?$/.test(dns)) throw new InvalidArgument(`certificate for ${name}: '${dns}' is not a DNS name`, { field: 'dnsNames' })
  if (!dnsNames.length && !ips.length) throw new InvalidArgument(`certificate for ${name}: no DNS name or IP address to certify`, { field: 'dnsNames' })
  return dnsNames
}

/** The SANs of a certificate, split: `{ dnsNames, ips }` (what clients may dial it by). */
export function subjectAltNames(cert: X509Certificate): { dnsNames: string[]; ips: string[] } {
  const dnsNames: string[] = []
  const ips: string[] = []
  for (const part of (cert.subjectAltName ?? '').split(', ')) {
    if (part.startsWith('DNS:')) dnsNames.push(part.slice(4))
    else if (part.startsWith('IP Address:')) ips.push(normalizeIp(part.slice(11)))
  }
  return { dnsNames, ips }
}

function stillGood(ca: CertificateAuthority, certFile: string, keyFile: string, dnsNames: string[], ips: string[]): boolean {
  if (!existsSync(certFile) || !existsSync(keyFile)) return false
  try {
    const cert = new X509Certificate(readFileSync(certFile))
    const caCert = new X509Certificate(ca.certPem)
    if (!cert.verify(caCert.publicKey) || !cert.checkIssued(caCert)) return false
    if (!cert.checkPrivateKey(createPrivateKey(readFileSync(keyFile)))) return false
    if (renewalDue(cert)) return false
    const have = subjectAltNames(cert)
    return sameSet(have.dnsNames, dnsNames) && sameSet(have.ips, ips.map(normalizeIp))
  } catch {
    return false // unreadable: reissue
  }
}

function parse(pem: string, file: string): X509Certificate {
  try {
    return new X509Certificate(pem)
  } catch (err) {
    throw new FailedPrecondition(`${file} is not a PEM certificate: ${(err as Error).message}`, { cause: err })
  }
}

/** IPv6 in SANs is printed expanded by OpenSSL; compare canonical forms. */
function normalizeIp(ip: string): string {
  if (isIP(ip) !== 6) return ip
  try {
    return new URL(`http://[${ip}]/`).hostname.slice(1, -1)
  } catch {
    return ip
  }
}

function unique(xs: string[]): string[] {
  return [...new Set(xs.filter(Boolean))]
}

function sameSet(a: string[], b: string[]): boolean {
  const sa = new Set(a)
  const sb = new Set(b)
  return sa.size === sb.size && [...sa].every((x) => sb.has(x))
}

/** A positive random 127-bit serial, as CAs are asked to use (no serial file to keep). */
function serial(): string {
  const b = randomBytes(16)
  b[0]! &= 0x7f
  return `0x${b.toString('hex')}`
}

/** `/` and `\` and `=` are syntax in openssl's -subj; escape them in a name. */
function dnEscape(s: string): string {
  return s.replace(/[\\/=+,]/g, (c) => `\\${c}`)
}
