/**
 * The bus's payload limit (issue 15): what a server carries to its host
 * (user_data, metadata, key) is bounded at the API by Nova's limits, so the
 * largest build spec the API admits still crosses the bus; and a spec that
 * does not fit (a row from before the limits) fails its build with an error
 * naming the message and its size, not "internal error".
 */
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { startCloud, type TestCloud } from '../../helpers/cloud.js'
import { startAgent } from '../../helpers/agents.js'
import { call, failure, fieldOf, status } from '../../helpers/grpc.js'
import { tenant, type Tenant } from '../network/fixtures.js'
import type { CreateServerResponse } from '../../../proto/gen/strato/compute/v1/servers.js'

let cloud: TestCloud
let demo: Tenant

function sshString(b: Buffer | string): Buffer {
  const data = typeof b === 'string' ? Buffer.from(b) : b
  const len = Buffer.alloc(4)
  len.writeUInt32BE(data.length)
  return Buffer.concat([len, data])
}

/** The largest key import takes: a 16384-bit RSA modulus (random, odd) and a 1024-byte comment. */
function largestKey(): string {
  const n = randomBytes(2048)
  n[0]! |= 0x80
  n[n.length - 1]! |= 1
  const blob = Buffer.concat([sshString('ssh-rsa'), sshString(Buffer.from([1, 0, 1])), sshString(Buffer.concat([Buffer.from([0]), n]))])
  return `ssh-rsa ${blob.toString('base64')} ${'c'.repeat(1024)}`
}

const create = (req: object, token = demo.token) => call<CreateServerResponse>(cloud.c.servers, 'createServer', { flavorRef: 'm1.nano', imageRef: 'cirros', networks: [{ uuid: cloud.network.id }], ...req }, token)

t.before(async () => {
  cloud = await startCloud({ hosts: ['node1'] })
  demo = await tenant(cloud.s, 'demo')
})
t.teardown(() => cloud.close())

t.test('user_data over 65535 bytes once base64 encoded (Nova\'s rule) is refused at the API, saying so', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['52500 bytes, 70000 once encoded (taken before: the limit was on the decoded size)', randomBytes(52_500).toString('base64'), /^user_data is 70000 bytes once base64 encoded; the limit is 65535/],
    ['a little data in 2 MB of line breaks (taken before: line breaks were not counted)', `aGk=${'\n'.repeat(2 << 20)}`, /^user_data is 2097156 bytes once base64 encoded; the limit is 65535/],
  ]
  for (const [what, userData, msg] of cases) {
    const e = await failure(create({ name: 'big', userData }))
    t.equal(e.code, status.INVALID_ARGUMENT, what)
    t.equal(fieldOf(e), 'user_data')
    t.match(e.details, msg, `${what}: says what and how big`)
  }
})

t.test('the largest server the API admits (user_data, 128 metadata items, the largest key) builds: its spec crosses the bus', async (t) => {
  await call(cloud.c.keypairs, 'createKeypair', { name: 'largest', publicKey: largestKey() }, demo.token)
  const metadata = Object.fromEntries(Array.from({ length: 128 }, (_, i) => [`k${String(i).padStart(3, '0')}${'k'.repeat(251)}`, 'v'.repeat(255)]))
  const userData = randomBytes(49_149).toString('base64')
  t.equal(userData.length, 65_532, 'user_data just under the limit')
  const r = await create({ name: 'largest', userData, metadata, keyName: 'largest' })
  const up = await cloud.waitFor(r.servers[0]!.id, (s) => s.status === 'ACTIVE' || s.status === 'ERROR', demo.token, 15_000)
  t.equal(up.status, 'ACTIVE', `built (fault: ${up.fault?.message ?? 'none'})`)
})

t.test('a keypair stored before the import limits is refused at create, naming the key and its size', async (t) => {
  const huge = `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ${'x'.repeat(1 << 20)}`
  await cloud.s.controller.db.insertInto('keypairs').values({ user_id: demo.userId, name: 'legacy', type: 'ssh', public_key: huge, fingerprint: 'f', fingerprint_sha256: 'SHA256:f', created_at: new Date().toISOString() }).execute()
  const e = await failure(create({ name: 'legacy', keyName: 'legacy' }))
  t.equal(e.code, status.INVALID_ARGUMENT)
  t.equal(fieldOf(e), 'key_name')
  t.match(e.details, new RegExp(`keypair 'legacy' is ${Buffer.byteLength(huge)} bytes, over the 16384-byte limit`))
})

t.test('a build spec too big for the bus fails the build with an error naming it and its size', async (t) => {
  // Its agent away, a server waits in BUILD; its row then gets user_data no API call can set (as a row from before the limits).
  const agent = cloud.agents.shift()!
  const hostUuid = agent.agent.config.uuid!
  await agent.stop()
  const r = await create({ name: 'overflow' })
  const id = r.servers[0]!.id
  await cloud.s.controller.db.updateTable('servers').set({ user_data: randomBytes(900_000).toString('base64') }).where('uuid', '=', id).execute()
  cloud.agents.push(await startAgent(cloud.nats.url, 'node1', { uuid: hostUuid, powerSyncIntervalMs: 200, shutdownTimeoutMs: 2_000 }))
  const failed = await cloud.waitFor(id, (s) => s.status === 'ERROR', demo.token, 15_000, 'the oversized build to fail')
  t.match(failed.fault?.message, new RegExp(`the build spec of server ${id} is \\d{7} bytes; the message bus carries at most \\d+ bytes in one message`), 'the fault names the message and its size')
  t.notMatch(failed.fault?.message, /internal error/)
})
