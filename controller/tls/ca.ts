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
/** A leaf certificate this close to expiry is renewed. */
const RENEW_BEFORE_MS = 30 * 24 * 3600 * 1000

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
 * naming other SANs than asked, or within 30 days of expiry; else left alone.
 */
export async function ensureCertificate(ca: CertificateAuthority, dir: string, name: string, req: CertificateRequest): Promise<IssuedCertificate> {
  const dnsNames = unique(req.dnsNames)
  const ips = unique(req.ips)
  for (const ip of ips) if (!isIP(ip)) throw new InvalidArgument(`certificate for ${name}: '${ip}' is not an IP address`, { field: 'ips' })
  for (const dns of dnsNames) if (!/^[A-Za-z0-9*]([A-Za-z0-9-.]*[A-Za-z0-9])?$/.test(dns)) throw new InvalidArgument(`certificate for ${name}: '${dns}' is not a DNS name`, { field: 'dnsNames' })
  if (!dnsNames.length && !ips.length) throw new InvalidArgument(`certificate for ${name}: no DNS name or IP address to certify`, { field: 'dnsNames' })
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const certFile = path.join(dir, `${name}.pem`)
  const keyFile = path.join(dir, `${name}-key.pem`)
  if (stillGood(ca, certFile, keyFile, dnsNames, ips)) return { certFile, keyFile, issued: false }

  const usage = req.usage ?? 'server'
  const eku = usage === 'both' ? 'serverAuth,clientAuth' : usage === 'client' ? 'clientAuth' : 'serverAuth'
  const san = [...dnsNames.map((d) => `DNS:${d}`), ...ips.map((i) => `IP:${i}`)].join(',')
  const scratch = mkdtempSync(path.join(dir, '.issue-'))
  try {
    const newKey = path.join(scratch, 'key.pem')
    const newCert = path.join(scratch, 'cert.pem')
    writePrivateFile(newKey, newKeyPem())
    // OpenSSL 3's `req -x509 -CA`: a certificate for a new key, signed by the CA, in one step (no CSR file, no serial file).
    await openssl([
      'req', '-x509', '-new', '-key', newKey, '-CA', ca.certFile, '-CAkey', ca.keyFile, '-sha256',
      '-days', String(req.days ?? 365), '-subj', `/CN=${dnEscape(req.commonName)}`, '-set_serial', serial(),
      '-addext', 'basicConstraints=critical,CA:FALSE',
      '-addext', 'keyUsage=critical,digitalSignature',
      '-addext', `extendedKeyUsage=${eku}`,
      '-addext', `subjectAltName=${san}`,
      '-out', newCert,
    ], `issue the certificate for ${name}`)
    // Key first: a crash between the two renames leaves a mismatch, which the next run reissues.
    renameSync(newKey, keyFile)
    renameSync(newCert, certFile)
  } finally {
    rmSync(scratch, { recursive: true, force: true })
  }
  return { certFile, keyFile, issued: true }
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
    if (Date.parse(cert.validTo) - Date.now() < RENEW_BEFORE_MS) return false
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
