// TLS on the controller's gRPC (issue 15): a real controller with its own CA. The CLI with
// OS_CACERT works; without it, or with another CA, it fails saying so; plaintext clients get
// nothing; Debian's grpcio reads reflection and health over TLS against the CA; an agent
// downloads the image of a build over TLS, and an agent that does not trust the CA cannot.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { credentials } from '@grpc/grpc-js'
import t from 'tap'
import { ensureCa } from '../../controller/tls/ca.js'
import { startController } from '../helpers/controller.js'
import { startCloud } from '../helpers/cloud.js'
import { startAgent } from '../helpers/agents.js'
import { call, client, failure, status } from '../helpers/grpc.js'
import { DomainsClient, TokensClient } from '../../proto/gen/strato/identity/v1/identity.js'
import type { CreateServerResponse } from '../../proto/gen/strato/compute/v1/servers.js'
import { failsWith, freshHome, openrcEnv, removeHomes, strato, succeeds } from './cli/cli.js'

const root = path.resolve(import.meta.dirname, '../..')
t.teardown(removeHomes)

t.test('a controller with TLS on: the CLI verifies it, plaintext gets nothing', async (t) => {
  const s = await startController({ tls: { mode: 'on' } })
  t.teardown(() => s.close())
  const tlsDir = path.join(s.dataDir, 'tls')
  t.equal(s.openrc.OS_AUTH_URL, `grpcs://${s.address}`, 'admin-openrc says grpcs://')
  t.equal(s.openrc.OS_CACERT, path.join(tlsDir, 'ca.pem'), 'admin-openrc names the CA (OS_CACERT)')
  t.equal(statSync(path.join(tlsDir, 'ca-key.pem')).mode & 0o777, 0o600, 'CA key 0600')
  t.equal(statSync(path.join(tlsDir, 'controller-key.pem')).mode & 0o777, 0o600, 'listener key 0600')

  const env = openrcEnv(s.openrc, freshHome())
  t.match(await succeeds(t, 'token issue -f value -c project_id', env), /^[0-9a-f]{32}\n$/, 'token issue over TLS with OS_CACERT')
  await succeeds(t, 'image list', env)
  t.match(await succeeds(t, ['catalog', 'list', '-f', 'value'], env), new RegExp(`grpcs://${s.address.replace(/\./g, '\\.')}`), 'the catalog gives grpcs:// URLs')
  const { OS_CACERT, ...noCa } = env
  await succeeds(t, ['token', 'issue', '--os-cacert', OS_CACERT!], { ...noCa, HOME: freshHome() })

  const noCaErr = await failsWith(t, 'token issue', 1, { ...noCa, HOME: freshHome() })
  t.match(noCaErr.stderr, /certificate verify failed for the Strato API at .*OS_CACERT is not set.*set OS_CACERT/, 'no CA: says so')
  const otherCaDir = mkdtempSync(path.join(tmpdir(), 'strato-other-ca-'))
  t.teardown(() => rmSync(otherCaDir, { recursive: true, force: true }))
  const other = await ensureCa(otherCaDir, 'Not Strato')
  const wrong = await failsWith(t, 'token issue', 1, { ...env, HOME: freshHome(), OS_CACERT: other.certFile })
  t.match(wrong.stderr, new RegExp(`certificate verify failed .*OS_CACERT=${other.certFile} is not the CA that signed it.*set OS_CACERT`), 'another CA: says so')
  const plain = await failsWith(t, 'token issue', 1, { ...env, HOME: freshHome(), OS_AUTH_URL: `grpc://${s.address}` })
  t.match(plain.stderr, /cannot reach the Strato API .*If the controller speaks TLS .*use OS_AUTH_URL=grpcs:\/\//, 'grpc:// against a TLS listener: told to use grpcs://')
  t.notMatch(plain.stderr + noCaErr.stderr + wrong.stderr, new RegExp(s.openrc.OS_PASSWORD!), 'no password in any message')

  // A plaintext gRPC client: no call succeeds, not even unauthenticated ones.
  const insecure = client(DomainsClient, s.address, credentials.createInsecure())
  const err = await failure(call(insecure, 'getDomain', { id: 'default' }, s.adminToken))
  t.equal(err.code, status.UNAVAILABLE, `a plaintext client is refused (${err.details})`)
  insecure.close()
  // The helper's own clients trust the CA: an authenticated call over TLS works.
  t.match(await call(s.clients.domains, 'getDomain', { id: 'default' }, s.adminToken), { name: 'Default' })

  // Reflection and health over TLS, from a client that is not ours (Debian's grpcio, C core).
  // Asynchronously: the controller answers from this very process.
  const probe = (ca: string) => promisify(execFile)('/usr/bin/python3', [path.join(root, 'test/fixtures/grpc_probe.py'), root, s.address, 'v1', ca], { env: { ...process.env, ...s.openrc }, encoding: 'utf8', timeout: 60_000 })
    .then((r) => ({ status: 0, stdout: r.stdout, stderr: r.stderr }), (e: { code?: number; stdout?: string; stderr?: string }) => ({ status: e.code ?? 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }))
  const r = await probe(s.openrc.OS_CACERT!)
  t.equal(r.status, 0, `grpc_probe over TLS (stderr: ${r.stderr.trim().slice(-300)})`)
  if (r.status === 0) {
    const out = JSON.parse(r.stdout) as { services: string[]; health: string; token_length: number; wrong_password: string }
    t.ok(out.services.includes('grpc.reflection.v1.ServerReflection') && out.services.includes('strato.identity.v1.Tokens'), 'reflection lists the services')
    t.equal(out.health, 'SERVING')
    t.ok(out.token_length > 0, 'IssueToken through reflection-learned types')
    t.equal(out.wrong_password, 'UNAUTHENTICATED')
  }
  const bad = await probe(other.certFile)
  t.not(bad.status, 0, 'grpcio with another CA gets nothing')
})

t.test('an operator-provided certificate wins over generation', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'strato-op-tls-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const ca = await ensureCa(path.join(dir, 'ca'), 'Operator CA')
  const { ensureCertificate } = await import('../../controller/tls/ca.js')
  const leaf = await ensureCertificate(ca, path.join(dir, 'ca'), 'api', { commonName: 'api', dnsNames: ['localhost'], ips: ['127.0.0.1'] })
  const s = await startController({ tls: { mode: 'on', certFile: leaf.certFile, keyFile: leaf.keyFile, caFile: ca.certFile } })
  t.teardown(() => s.close())
  t.equal(s.openrc.OS_CACERT, ca.certFile, "openrc names the operator's CA")
  t.throws(() => statSync(path.join(s.dataDir, 'tls', 'ca.pem')), 'no CA generated when the operator gives a certificate')
  const tokens = client(TokensClient, s.address, credentials.createSsl(readFileSync(ca.certFile)))
  t.teardown(() => tokens.close())
  t.match(await call(tokens, 'validateToken', { token: s.adminToken }, s.adminToken), { user: { name: 'admin' } }, 'clients trusting the operator CA get through')
})

t.test('an agent downloads a build\'s image over TLS; one that does not trust the CA cannot', async (t) => {
  const cloud = await startCloud({ hosts: ['node1'], controller: { tls: { mode: 'on' } } })
  t.teardown(() => cloud.close())
  const create = (az: string) => call<CreateServerResponse>(cloud.c.servers, 'createServer', { name: `tls-${az.replace(/\W/g, '')}`, flavorRef: 'm1.nano', imageRef: 'cirros', networks: [{ uuid: cloud.network.id }], availabilityZone: az }, cloud.s.adminToken)
  const ok = (await create('nova:node1')).servers[0]!
  const active = await cloud.waitFor(ok.id, (x) => x.status === 'ACTIVE' || x.status === 'ERROR', undefined, 20_000)
  t.equal(active.status, 'ACTIVE', `built on node1 over TLS (fault: ${active.fault?.message ?? ''})`)

  // A second host that trusts nothing but the system's roots (controller address announced as grpcs://).
  const stranger = await startAgent(cloud.nats.url, 'node2', { caFile: null, powerSyncIntervalMs: 200 })
  t.teardown(() => stranger.stop())
  await cloud.s.controller.hosts.discover()
  const refused = (await create('nova:node2')).servers[0]!
  const failed = await cloud.waitFor(refused.id, (x) => x.status === 'ACTIVE' || x.status === 'ERROR', undefined, 30_000)
  t.equal(failed.status, 'ERROR', 'the build fails: the agent did not download from an unverified controller')
  t.match(failed.fault?.message ?? '', /certificate does not verify against the system's roots \(STRATO_AGENT_CA_FILE is not set\)/, 'the fault says why (admin view)')
})
