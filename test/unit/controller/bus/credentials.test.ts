// controller/bus/credentials.ts without a server (the functional tests run its output against a real
// nats-server): JWTs as nats-server 2.9 reads them (header, signature by the issuer, claims), the
// operator kept across calls, `.creds` text in the format the NATS tools write, and an agent's
// permissions naming only its own host (a dotted host name as one subject token).
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { nkeys } from '@nats-io/transport-node'
import t from 'tap'
import { agentPermissions, decodeJwt, ensureOperator, ensureRoutePassword, mintAgentCreds, natsServerConfig, ROUTE_USER } from '../../../../controller/bus/credentials.js'

const dir = mkdtempSync(path.join(tmpdir(), 'strato-creds-unit-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

t.test('JWTs: ed25519-nkey header, signed by their issuer, nats claims of version 2', async (t) => {
  const op = ensureOperator(path.join(dir, 'keys'))
  for (const [jwt, type, issuer] of [[op.operatorJwt, 'operator', undefined], [op.accountJwt, 'account', undefined], [op.systemAccountJwt, 'account', undefined]] as const) {
    const [head, body, sig] = jwt.split('.') as [string, string, string]
    t.same(JSON.parse(Buffer.from(head, 'base64url').toString()), { typ: 'JWT', alg: 'ed25519-nkey' })
    const claims = decodeJwt(jwt)
    t.match(claims, { nats: { type, version: 2 } })
    t.match(claims.jti, /^[A-Z2-7]{52}$/, 'jti: base32 of a 256-bit hash')
    t.ok(nkeys.fromPublic(claims.iss as string).verify(new TextEncoder().encode(`${head}.${body}`), Buffer.from(sig, 'base64url')), `${type} JWT signed by ${issuer ?? 'the operator'}`)
  }
  t.equal(decodeJwt(op.operatorJwt).nats.system_account, op.systemAccount)
  t.match(decodeJwt(op.accountJwt).nats.limits, { disk_storage: -1, mem_storage: -1 }, 'JetStream enabled for the STRATO account')
  const again = ensureOperator(path.join(dir, 'keys'))
  t.equal(again.account, op.account, 'the keys are kept: a second call has the same account')
  t.equal(statSync(path.join(dir, 'keys')).mode & 0o777, 0o700)
  for (const f of ['operator.nk', 'system-account.nk', 'strato-account.nk']) t.equal(statSync(path.join(dir, 'keys', f)).mode & 0o777, 0o600, `${f} is 0600`)
  const conf = natsServerConfig(op, { host: '127.0.0.1', port: 4222, storeDir: '/var/lib/x' })
  t.match(conf, /resolver: MEMORY/)
  t.match(conf, new RegExp(`system_account: "${op.systemAccount}"`))
})

t.test("an agent's credentials: a user of the STRATO account with its own host's subjects only", async (t) => {
  const op = ensureOperator(path.join(dir, 'keys'))
  const creds = mintAgentCreds(op, 'node1.example.org')
  const m = /-----BEGIN NATS USER JWT-----\n(.+)\n------END NATS USER JWT------[\s\S]*-----BEGIN USER NKEY SEED-----\n(SU[A-Z2-7]+)\n------END USER NKEY SEED------/.exec(creds)
  t.ok(m, '.creds format')
  const claims = decodeJwt(m![1]!)
  t.equal(claims.iss, op.account, 'issued by the STRATO account')
  t.equal(claims.sub, nkeys.fromSeed(new TextEncoder().encode(m![2]!)).getPublicKey(), 'for the seed in the file')
  t.same(claims.nats.pub.allow, agentPermissions('node1.example.org').pub)
  t.same(claims.nats.pub.allow, [
    'strato.events.*.node1_example_org', 'strato.conductor.node1_example_org',
    '$JS.API.CONSUMER.INFO.STRATO_CASTS.agent-node1_example_org', '$JS.API.CONSUMER.MSG.NEXT.STRATO_CASTS.agent-node1_example_org',
    '$JS.ACK.STRATO_CASTS.agent-node1_example_org.>',
  ])
  t.match(claims.nats, { type: 'user', resp: { max: 1 } })
  t.same(claims.nats.sub.allow, ['_INBOX_node1_example_org.>', 'strato.agent.node1_example_org.rpc', 'strato.firewall.changed', 'strato.dhcp.changed', 'strato.router.changed'])
})

t.test('a cluster node: named, JetStream clustered, routes authenticated (and mutually TLS when clients are)', async (t) => {
  const op = ensureOperator(path.join(dir, 'keys'))
  const password = ensureRoutePassword(op)
  t.match(password, /^[0-9a-f]{48}$/, 'a random route password')
  t.equal(ensureRoutePassword(op), password, 'kept: every node and every restart agree')
  t.equal(statSync(path.join(dir, 'keys', 'cluster-route.secret')).mode & 0o777, 0o600)
  const cluster = { name: 'strato', serverName: 'n1', host: '127.0.0.1', port: 6222, peers: ['127.0.0.1:6223', '127.0.0.1:6224'], routePassword: password }
  const plain = natsServerConfig(op, { host: '127.0.0.1', port: 4222, storeDir: '/var/lib/n1', cluster })
  t.match(plain, /server_name: "n1"/)
  t.match(plain, /cluster \{\n  name: "strato"\n  host: "127.0.0.1"\n  port: 6222/)
  t.match(plain, new RegExp(`authorization \\{ user: "${ROUTE_USER}", password: "${password}"`), 'routes must authenticate')
  t.match(plain, new RegExp(`"nats-route://${ROUTE_USER}:${password}@127.0.0.1:6223"`), 'and do, to each peer')
  t.notMatch(plain, /127.0.0.1:6222"/, 'no route to itself')
  t.notMatch(plain, /ca_file/, 'plaintext clients: plaintext routes')
  t.throws(() => natsServerConfig(op, { host: '127.0.0.1', port: 4222, storeDir: '/x', tls: { certFile: '/c.pem', keyFile: '/k.pem' }, cluster }), { name: 'InvalidArgument', message: /cluster node n1: TLS routes need the CA/ })
  const tls = natsServerConfig(op, { host: '127.0.0.1', port: 4222, storeDir: '/x', tls: { certFile: '/c.pem', keyFile: '/k.pem' }, cluster: { ...cluster, caFile: '/ca.pem' } })
  t.match(tls, /cluster \{[\s\S]*  tls \{\n    cert_file: "\/c.pem"\n    key_file: "\/k.pem"\n    ca_file: "\/ca.pem"/, 'TLS clients: TLS routes, checked against the CA')
})
