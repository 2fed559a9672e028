// The controller's CA (controller/tls/ca.ts): keys private, certificates that verify
// against the CA (node and `openssl verify` agree), SANs as asked, renewal only when
// the names change, the CA changes or expiry is near.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { ensureCa, ensureCertificate, signHostCertificate, subjectAltNames } from '../../../../controller/tls/ca.js'
import { listenerTls } from '../../../../controller/tls/listener.js'
import { certificateNames } from '../../../../controller/tls/names.js'
import { pino } from 'pino'
import { loadConfig } from '../../../../controller/config.js'

const mode = (f: string) => statSync(f).mode & 0o777

t.test('a CA is made once, private key 0600 in a 0700 dir, and kept', async (t) => {
  const dir = path.join(mkdtempSync(path.join(tmpdir(), 'strato-ca-')), 'tls')
  t.teardown(() => rmSync(path.dirname(dir), { recursive: true, force: true }))
  const ca = await ensureCa(dir)
  t.equal(mode(dir), 0o700, 'CA dir 0700')
  t.equal(mode(ca.keyFile), 0o600, 'CA key 0600')
  const cert = new X509Certificate(readFileSync(ca.certFile))
  t.ok(cert.ca, 'basicConstraints CA:TRUE')
  t.ok(cert.verify(cert.publicKey), 'self-signed')
  t.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1', 'ECDSA P-256')
  const again = await ensureCa(dir)
  t.equal(again.certPem, ca.certPem, 'a second start keeps the CA (clients trust it)')
  rmSync(ca.keyFile)
  await t.rejects(ensureCa(dir), { name: 'FailedPrecondition', message: /incomplete: ca\.pem has no ca-key\.pem/ }, 'a CA without its key is refused, not silently replaced')
})

t.test('a server certificate has the asked SANs, verifies against the CA, and is renewed only when needed', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'strato-ca-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const ca = await ensureCa(dir)
  const req = { commonName: 'strato-controller', dnsNames: ['localhost', 'ctl.example'], ips: ['127.0.0.1', '::1', '10.0.0.5'] }
  const first = await ensureCertificate(ca, dir, 'controller', req)
  t.ok(first.issued)
  t.equal(mode(first.keyFile), 0o600, 'server key 0600')
  const cert = new X509Certificate(readFileSync(first.certFile))
  const caCert = new X509Certificate(readFileSync(ca.certFile))
  t.ok(cert.verify(caCert.publicKey), 'signed by the CA (node)')
  t.ok(cert.checkIssued(caCert), 'issuer is the CA')
  t.notOk(cert.verify(cert.publicKey), 'not self-signed')
  t.notOk(cert.ca, 'not a CA')
  t.match(cert.keyUsage ?? [], ['1.3.6.1.5.5.7.3.1'], 'extendedKeyUsage serverAuth')
  t.same(subjectAltNames(cert), { dnsNames: ['localhost', 'ctl.example'], ips: ['127.0.0.1', '::1', '10.0.0.5'] })
  t.ok(cert.checkHost('ctl.example'), 'checkHost')
  t.ok(cert.checkIP('127.0.0.1') && cert.checkIP('10.0.0.5'), 'checkIP')
  t.notOk(cert.checkIP('10.0.0.6'), 'an address not asked for is not certified')
  const verified = execFileSync('openssl', ['verify', '-CAfile', ca.certFile, '-purpose', 'sslserver', first.certFile], { encoding: 'utf8' })
  t.match(verified, /: OK/, 'openssl verify agrees')

  const same = await ensureCertificate(ca, dir, 'controller', { ...req, dnsNames: ['ctl.example', 'localhost', 'localhost'] })
  t.notOk(same.issued, 'same names (any order): kept')
  t.equal(readFileSync(same.certFile, 'utf8'), readFileSync(first.certFile, 'utf8'))

  const renamed = await ensureCertificate(ca, dir, 'controller', { ...req, ips: [...req.ips, '10.0.0.6'] })
  t.ok(renamed.issued, 'a new address: reissued')
  t.ok(new X509Certificate(readFileSync(renamed.certFile)).checkIP('10.0.0.6'))

  const short = await ensureCertificate(ca, dir, 'short', { ...req, days: 10 })
  t.ok(short.issued)
  t.ok((await ensureCertificate(ca, dir, 'short', { ...req, days: 10 })).issued, 'within 30 days of expiry: renewed on every check')

  const other = await ensureCa(path.join(dir, 'other'))
  t.ok((await ensureCertificate(other, dir, 'controller', { ...req, ips: [...req.ips, '10.0.0.6'] })).issued, 'signed by another CA: reissued')
  writeFileSync(path.join(dir, 'controller-key.pem'), readFileSync(short.keyFile))
  t.ok((await ensureCertificate(other, dir, 'controller', { ...req, ips: [...req.ips, '10.0.0.6'] })).issued, 'a key that does not match: reissued')

  await t.rejects(ensureCertificate(ca, dir, 'bad', { commonName: 'x', dnsNames: ['a b'], ips: [] }), { name: 'InvalidArgument', message: /'a b' is not a DNS name/ })
  await t.rejects(ensureCertificate(ca, dir, 'bad', { commonName: 'x', dnsNames: [], ips: ['300.1.1.1'] }), { name: 'InvalidArgument', message: /not an IP address/ })
})

t.test('certificate names: loopback, the listen and public addresses and more names', async (t) => {
  const { dnsNames, ips } = certificateNames({ listen: '192.0.2.7', publicAddress: 'api.example:8770', names: ['10.9.9.9', 'alt.example'] })
  t.ok(dnsNames.includes('localhost') && dnsNames.includes('api.example') && dnsNames.includes('alt.example'), 'DNS names')
  t.ok(['127.0.0.1', '::1', '192.0.2.7', '10.9.9.9'].every((ip) => ips.includes(ip)), 'IPs')
  const named = certificateNames({ listen: 'Nats.Example' })
  t.ok(named.dnsNames.includes('nats.example'), 'a listen name, lower-cased')
  t.same(named.ips, ['127.0.0.1', '::1'])
  const wild = certificateNames({ listen: '0.0.0.0' })
  t.notOk(wild.ips.includes('0.0.0.0'), 'a wildcard is no SAN: every interface address is')
  t.ok(wild.ips.includes('127.0.0.1'))
})

t.test("the listener's certificate carries those names for its config", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'strato-ca-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const cfg = loadConfig({ dataDir: dir, grpc: { host: '192.0.2.7', port: 1, publicAddress: 'api.example:8770' }, tls: { names: ['10.9.9.9', 'alt.example'] } }, {})
  const served = await listenerTls(cfg, pino({ level: 'silent' }))
  const cert = new X509Certificate(served!.certPem)
  for (const name of ['localhost', 'api.example', 'alt.example']) t.equal(cert.checkHost(name), name, name)
  for (const ip of ['127.0.0.1', '::1', '192.0.2.7', '10.9.9.9']) t.equal(cert.checkIP(ip), ip, ip)
})

t.test("the operator's certificate and key are used as given, and a key that is not the certificate's is refused by name", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'strato-ca-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const ca = await ensureCa(dir)
  const leaf = await ensureCertificate(ca, dir, 'api', { commonName: 'api', dnsNames: ['localhost'], ips: [] })
  const log = pino({ level: 'silent' })
  const good = await listenerTls(loadConfig({ dataDir: dir, tls: { certFile: leaf.certFile, keyFile: leaf.keyFile } }, {}), log)
  t.equal(good?.certPem.toString(), readFileSync(leaf.certFile, 'utf8'))
  t.equal(good?.caFile, null, 'no CA named unless the operator gives one')
  await t.rejects(listenerTls(loadConfig({ dataDir: dir, tls: { certFile: leaf.certFile, keyFile: ca.keyFile } }, {}), log), { name: 'FailedPrecondition', message: /ca-key\.pem is not the key of tls\.certFile .*api\.pem/ })
  t.equal(await listenerTls(loadConfig({ dataDir: dir, tls: { mode: 'off' } }, {}), log), null, 'off: plaintext')
})

t.test("a host's CSR is signed for CN=<host> only: another subject, an extra name part, a forged signature or junk are refused", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'strato-ca-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const ca = await ensureCa(dir)
  const csr = async (subj: string) => {
    writeFileSync(path.join(dir, 'k.pem'), generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }))
    return execFileSync('openssl', ['req', '-new', '-key', path.join(dir, 'k.pem'), '-subj', subj], { encoding: 'utf8' })
  }
  const mine = await csr('/CN=node2')
  const cert = new X509Certificate(await signHostCertificate(ca, 'node2', mine, ['10.0.0.2']))
  t.equal(cert.subject, 'CN=node2')
  t.equal(cert.subjectAltName, 'DNS:node2, IP Address:10.0.0.2')
  t.same(cert.keyUsage, ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'], 'server and client auth')
  t.ok(cert.checkIssued(new X509Certificate(ca.certPem)) && cert.verify(new X509Certificate(ca.certPem).publicKey), 'signed by the CA')
  t.ok(cert.checkPrivateKey(createPrivateKey(readFileSync(path.join(dir, 'k.pem')))), 'for the key that made the request')
  writeFileSync(path.join(dir, 'node2.pem'), cert.toString())
  for (const purpose of ['sslclient', 'sslserver']) t.match(execFileSync('openssl', ['verify', '-CAfile', ca.certFile, '-purpose', purpose, path.join(dir, 'node2.pem')], { encoding: 'utf8' }), /: OK/, `openssl verify -purpose ${purpose}`)

  await t.rejects(signHostCertificate(ca, 'node2', await csr('/CN=node1'), []), { name: 'InvalidArgument', message: "the certificate signing request names 'CN=node1', not 'CN=node2'" })
  await t.rejects(signHostCertificate(ca, 'node2', await csr('/O=strato/CN=node2'), []), { name: 'InvalidArgument', message: /names 'CN=node2,O=strato', not 'CN=node2'/ }, 'exactly CN=<host>')
  // The request's body changed after signing (its name swapped): its signature no longer matches.
  const body = Buffer.from(mine.split('\n').slice(1, -2).join(''), 'base64')
  const at = body.indexOf(Buffer.from('node2'))
  body.write('nodeX', at)
  const forged = `-----BEGIN CERTIFICATE REQUEST-----\n${body.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE REQUEST-----\n`
  await t.rejects(signHostCertificate(ca, 'nodeX', forged, []), { name: 'InvalidArgument', message: /not a valid, self-signed CSR/ }, 'a request not signed by its key')
  await t.rejects(signHostCertificate(ca, 'node2', 'hello', []), { name: 'InvalidArgument', message: /not one PEM CERTIFICATE REQUEST/ })
  await t.rejects(signHostCertificate(ca, 'node2', mine, ['not-an-ip']), { name: 'InvalidArgument', message: /'not-an-ip' is not an IP address/ })
})
