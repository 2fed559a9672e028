// Join tokens for new hosts (kubeadm-style), through gRPC and the CLI against a real controller:
// admins make, list and delete them; JoinHost admits a host once per token, before expiry, never for
// a name the cloud knows, and refuses forged, used, expired or other-host tokens without changing anything.
// The credential issuer here records what it was asked (the bus's real one is exercised by the
// host-join test with a second agent in a network namespace).
import t from 'tap'
import { startController, type TestController } from '../../helpers/controller.js'
import { call, client, failure, status } from '../../helpers/grpc.js'
import { HostsClient, type JoinHostResponse, type JoinToken, type ListJoinTokensResponse } from '../../../proto/gen/strato/compute/v1/hosts.js'
import { failsWith, freshHome, openrcEnv, removeHomes, strato, succeeds } from '../cli/cli.js'

let s: TestController
let hosts: HostsClient
const issued: Array<{ host: string; publicKey: string }> = []
const PUBLIC_KEY = 'UAHJKZ3ZNUDXZPRBC5QGAXDV2KVX4M4DMKK2OYUMB5LOMFE7QPUWRUHH'

t.before(async () => {
  s = await startController()
  hosts = client(HostsClient, s.address)
  s.controller.joinIssuer = {
    async busCredentials(host, publicKey) {
      issued.push({ host, publicKey })
      return { natsUrls: ['nats://192.0.2.1:4222'], userJwt: `jwt-for-${host}` }
    },
    hostCertificate: async () => '',
    caPem: () => '',
    controllerAddress: () => s.address,
  }
  const p = await call<{ id: string }>(s.clients.projects, 'createProject', { name: 'demo', domainId: 'default' }, s.adminToken)
  const u = await call<{ id: string }>(s.clients.users, 'createUser', { name: 'demo', domainId: 'default', password: 'demo-password', defaultProjectId: p.id }, s.adminToken)
  const roles = await call<{ roles: Array<{ id: string; name: string }> }>(s.clients.roles, 'listRoles', {}, s.adminToken)
  await call(s.clients.roles, 'grantRole', { roleId: roles.roles.find((r) => r.name === 'member')!.id, userId: u.id, projectId: p.id }, s.adminToken)
})
t.teardown(async () => {
  await s?.close()
  removeHomes()
})

const create = (req: object = {}) => call<JoinToken>(hosts, 'createJoinToken', req, s.adminToken)
const joinHost = (token: string, host: string) => call<JoinHostResponse>(hosts, 'joinHost', { token, host, natsPublicKey: PUBLIC_KEY })
const listTokens = async () => (await call<ListJoinTokensResponse>(hosts, 'listJoinTokens', {}, s.adminToken)).joinTokens

t.test('a token admits one new host, once, and the join needs no x-auth-token', async (t) => {
  const tok = await create({ description: 'rack 2' })
  t.match(tok.token, /^[a-z0-9]{6}\.[a-z0-9]{16}$/)
  t.equal(tok.token.split('.')[0], tok.id)
  t.equal(tok.controllerAddress, s.address)
  t.ok(tok.expiresAt.getTime() - Date.now() > 3_500_000 && tok.expiresAt.getTime() - Date.now() <= 3_600_000, 'default lifetime 1 h')
  const r = await joinHost(tok.token, 'node-joined-1')
  t.same(r.natsUrls, ['nats://192.0.2.1:4222'])
  t.equal(r.natsUserJwt, 'jwt-for-node-joined-1')
  t.same(issued.at(-1), { host: 'node-joined-1', publicKey: PUBLIC_KEY })
  const again = await failure(joinHost(tok.token, 'node-joined-2'))
  t.equal(again.code, status.UNAUTHENTICATED)
  t.match(again.details, /already used/)
  const listed = (await listTokens()).find((x) => x.id === tok.id)!
  t.equal(listed.usedByHost, 'node-joined-1')
  t.equal(listed.token, '', 'the secret is never listed')
})

t.test('forged, malformed, expired and other-host tokens are refused and change nothing', async (t) => {
  const tok = await create({ host: 'node-bound' })
  const before = issued.length
  const [id] = tok.token.split('.')
  for (const [token, why] of [
    [`${id}.aaaaaaaaaaaaaaaa`, /unknown token or wrong secret/],
    ['zzzzzz.aaaaaaaaaaaaaaaa', /unknown token or wrong secret/],
    ['not-a-token', /not of the form/],
    ['', /not of the form/],
  ] as const) {
    const e = await failure(joinHost(token, 'node-bound'))
    t.equal(e.code, status.UNAUTHENTICATED, token)
    t.match(e.details, why)
  }
  const other = await failure(joinHost(tok.token, 'node-other'))
  t.equal(other.code, status.UNAUTHENTICATED)
  t.match(other.details, /for host 'node-bound', not 'node-other'/)
  t.equal(issued.length, before, 'no credentials were made')
  t.notOk((await listTokens()).find((x) => x.id === tok.id)!.usedAt, 'still unused')
  await joinHost(tok.token, 'node-bound')

  const short = await create({ ttlSeconds: 1 })
  await new Promise((r) => setTimeout(r, 1_200))
  const expired = await failure(joinHost(short.token, 'node-late'))
  t.equal(expired.code, status.UNAUTHENTICATED)
  t.match(expired.details, /expired at/)
})

t.test('a name the cloud knows cannot join, and the token stays usable', async (t) => {
  const tok = await create()
  const e = await failure(joinHost(tok.token, 'node-joined-1'))
  t.equal(e.code, status.ALREADY_EXISTS)
  t.match(e.details, /host 'node-joined-1' is already joined/)
  t.notOk((await listTokens()).find((x) => x.id === tok.id)!.usedAt)
  const bad = await failure(joinHost(tok.token, 'bad_name'))
  t.equal(bad.code, status.INVALID_ARGUMENT)
  await joinHost(tok.token, 'node-joined-3')
})

t.test('two hosts racing with one token: exactly one joins', async (t) => {
  const tok = await create()
  const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => joinHost(tok.token, `node-race-${i}`)))
  t.equal(results.filter((r) => r.status === 'fulfilled').length, 1)
})

t.test('only cloud admins make, list and delete tokens; lifetimes are bounded', async (t) => {
  const demo = await s.login('demo', 'demo-password', { project: 'demo' })
  for (const m of ['createJoinToken', 'listJoinTokens']) t.equal((await failure(call(hosts, m, {}, demo.token))).code, status.PERMISSION_DENIED, `${m} by a project member`)
  t.equal((await failure(call(hosts, 'listJoinTokens', {}))).code, status.UNAUTHENTICATED)
  const long = await failure(create({ ttlSeconds: 30 * 86400 }))
  t.equal(long.code, status.INVALID_ARGUMENT)
  t.match(long.details, /lifetime must be between 1 s and 604800 s/)
  const tok = await create()
  await call(hosts, 'deleteJoinToken', { id: tok.id }, s.adminToken)
  t.equal((await failure(joinHost(tok.token, 'node-after-delete'))).code, status.UNAUTHENTICATED)
  t.equal((await failure(call(hosts, 'deleteJoinToken', { id: tok.id }, s.adminToken))).code, status.NOT_FOUND)
})

t.test('the CLI: host join-token create prints the join command; list and delete', async (t) => {
  const env = openrcEnv(s.openrc, freshHome())
  const out = await succeeds(t, 'host join-token create --ttl 10m --description lab -f json', env)
  const tok = JSON.parse(out) as Record<string, string>
  t.match(tok.token, /^[a-z0-9]{6}\.[a-z0-9]{16}$/)
  t.equal(tok.join_command, `strato-agent join --controller grpc://${s.address} --token ${tok.token}`)
  const expires = Date.parse(tok.expires_at!)
  t.ok(expires - Date.now() > 590_000 && expires - Date.now() <= 600_000, '--ttl 10m')
  const list = await succeeds(t, 'host join-token list -f value -c ID -c Status', env)
  t.match(list, new RegExp(`^${tok.id} unused$`, 'm'))
  await failsWith(t, 'host join-token create --ttl soon', 2, env)
  await succeeds(t, ['host', 'join-token', 'delete', tok.id!], env)
  t.notMatch(await succeeds(t, 'host join-token list -f value -c ID', env), tok.id!)
  const r = await strato(['host', 'join-token', 'delete', tok.id!], env)
  t.equal(r.code, 1)
})
