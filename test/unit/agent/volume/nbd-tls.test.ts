// A host's NBD certificate on the agent's side (agent/volume/nbd-tls.ts): the CSR names the host; what the
// controller returns is installed only when it is signed by the cloud CA, for the key made here and for
// CN=<host> (else nothing is written); and a kept certificate is judged for renewal by CA, key, name,
// addresses and expiry; the agent's own check renews one within 30 days of expiry or past 2/3 of its
// lifetime. Signing is the controller's real signHostCertificate (openssl).
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { ensureCa, ensureCertificate, signCertificateRequest, signHostCertificate } from '../../../../controller/tls/ca.js'
import { hostCertificateProblem, hostCertificateRequest, installHostCertificate, renewalDue, renewHostCertificate, type HostNbdTls } from '../../../../agent/volume/nbd-tls.js'

const dir = mkdtempSync(path.join(tmpdir(), 'strato-nbd-tls-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const gid = process.getgid?.() ?? 0

const target = (name: string, host = 'node2'): HostNbdTls => ({ host, dir: path.join(dir, name, 'server'), clientDir: path.join(dir, name, 'client'), qemuGid: gid, addresses: ['10.0.0.2'] })

t.test('the CSR names the host; a certificate of the CA for that key and name is installed, and then good', async (t) => {
  const ca = await ensureCa(path.join(dir, 'ca'))
  const key = await hostCertificateRequest('node2')
  t.match(execFileSync('openssl', ['req', '-noout', '-subject', '-nameopt', 'RFC2253'], { input: key.csrPem, encoding: 'utf8' }), /^subject=CN=node2$/m)
  const o = target('good')
  t.match(hostCertificateProblem(o, ca.certPem), /lacks its certificate, key or CA/, 'nothing yet: to issue')
  installHostCertificate(o, ca.certPem, await signHostCertificate(ca, 'node2', key.csrPem, o.addresses), key)
  t.equal(hostCertificateProblem(o, ca.certPem), undefined, 'installed: good')
  t.same([statSync(o.dir).mode & 0o777, statSync(path.join(o.dir, 'server-key.pem')).mode & 0o777], [0o700, 0o600], 'the export side is private')
  t.same([statSync(o.clientDir!).mode & 0o777, statSync(path.join(o.clientDir!, 'client-key.pem')).mode & 0o777], [0o710, 0o640], "the client side: QEMU's group reads")
  t.match(hostCertificateProblem({ ...o, addresses: ['10.0.0.3'] }, ca.certPem), /certifies 10\.0\.0\.2, not 10\.0\.0\.3/, 'another address: to issue again')
  t.match(hostCertificateProblem({ ...o, host: 'node3' }, ca.certPem), /names 'CN=node2', not 'CN=node3'/, 'another name: to issue again')
  const other = await ensureCa(path.join(dir, 'other-ca'))
  t.match(hostCertificateProblem(o, other.certPem), /is not the cloud's CA/, 'another CA: to issue again')
})

t.test('a certificate near expiry is renewed', async (t) => {
  const ca = await ensureCa(path.join(dir, 'ca'))
  const key = await hostCertificateRequest('node2')
  const o = target('short')
  // What a certificate issued 355 days ago looks like: 10 days left.
  installHostCertificate(o, ca.certPem, await signCertificateRequest(ca, key.csrPem, { commonName: 'node2', dnsNames: ['node2'], ips: ['10.0.0.2'], usage: 'both', days: 10 }), key)
  t.match(hostCertificateProblem(o, ca.certPem), /expires at/)
  // The running agent's check (at its start, then daily): due, so renewed with a new key, signed by the controller.
  t.match(renewalDue(o), /expires at/, "the agent's check finds it due")
  const oldKey = readFileSync(path.join(o.dir, 'server-key.pem'), 'utf8')
  const asked: string[] = []
  const sign = async (csrPem: string, addresses: string[]) => {
    asked.push(csrPem)
    return { certPem: await signHostCertificate(ca, 'node2', csrPem, addresses), caPem: ca.certPem }
  }
  t.match(await renewHostCertificate(o, sign), /expires at/, 'renewed, saying why')
  t.equal(hostCertificateProblem(o, ca.certPem), undefined, 'the new one is good (CA, key, name, addresses, a year ahead)')
  t.not(readFileSync(path.join(o.dir, 'server-key.pem'), 'utf8'), oldKey, 'for a new key made here')
  t.same([statSync(path.join(o.dir, 'server-key.pem')).mode & 0o777, statSync(path.join(o.clientDir!, 'client-key.pem')).mode & 0o777], [0o600, 0o640], 'its keys as private as at join')
  t.equal(renewalDue(o), undefined, 'not due any more')
  t.equal(await renewHostCertificate(o, sign), undefined, 'so the next check asks nothing')
  t.equal(asked.length, 1, '(the controller was asked once)')
  t.match(renewalDue(o, Date.now() + 250 * 24 * 3600 * 1000), /past 2\/3 of its lifetime/, 'due past 2/3 of its lifetime, with more than 30 days left')
  t.equal(renewalDue(target('none')), undefined, 'a host issued no certificate has none to renew')
})

t.test('what the controller returns is refused unless it is for the key made here, CN=<host>, of the CA: nothing written', async (t) => {
  const ca = await ensureCa(path.join(dir, 'ca'))
  const key = await hostCertificateRequest('node2')
  const otherKey = await hostCertificateRequest('node2')
  const o = target('refused')
  const forOtherKey = await signHostCertificate(ca, 'node2', otherKey.csrPem, o.addresses)
  t.throws(() => installHostCertificate(o, ca.certPem, forOtherKey, key), { name: 'Internal', message: /not for the key made here/ })
  // The key made here, certified under another name.
  writeFileSync(path.join(dir, 'key.pem'), key.keyPem)
  const node3Csr = execFileSync('openssl', ['req', '-new', '-key', path.join(dir, 'key.pem'), '-subj', '/CN=node3'], { encoding: 'utf8' })
  const forNode3 = await signHostCertificate(ca, 'node3', node3Csr, o.addresses)
  t.throws(() => installHostCertificate(o, ca.certPem, forNode3, key), { message: /names 'CN=node3', not 'CN=node2'/ })
  const stranger = await ensureCertificate(await ensureCa(path.join(dir, 'other-ca')), path.join(dir, 'issued'), 'x', { commonName: 'node2', dnsNames: ['node2'], ips: [] })
  t.throws(() => installHostCertificate(o, ca.certPem, readFileSync(stranger.certFile, 'utf8'), key), { message: /not signed by the cloud CA/ })
  t.notOk(existsSync(o.dir) || existsSync(o.clientDir!), 'nothing written')
})

