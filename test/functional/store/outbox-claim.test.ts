// Once-only work across controllers: two controllers on one PostgreSQL database (of the tap run's
// shared cluster: only nats-server is killed here, test/helpers/controller-pair.ts) and one nats-server.
// Servers are created through both while nats-server is down, so their build casts wait on their rows;
// once it is back, both controllers resend at the same moment (as their timers do, sooner or later).
// A plain NATS subscription on the host's cast subject sees every publication — JetStream's duplicate
// window would hide a second one from the stream, not from the wire — and each cast is published once.
// Automatic discovery run by both at once maps each waiting host once.
import t from 'tap'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { inProcessPair, type ControllerPair } from '../../helpers/controller-pair.js'
import type { TestController } from '../../helpers/controller.js'
import { killNats, startNats, type NatsServer } from '../../helpers/nats.js'
import { eventually } from '../../helpers/agents.js'
import { provision, type CloudClients, type Provisioned } from '../../helpers/cloud.js'
import { call } from '../../helpers/grpc.js'
import { fakeHost } from '../compute/fake-hosts.js'
import { castSubject } from '../../../proto/subjects.js'
import { Cast } from '../../../proto/gen/strato/agent/v1/agent.js'
import type { ConfigOverrides } from '../../../controller/config.js'
import type { CreateServerResponse } from '../../../proto/gen/strato/compute/v1/servers.js'

const HOST = 'claim1'

let pair: ControllerPair<TestController>
let nats: NatsServer
let a: TestController
let b: TestController
let ca: CloudClients
let cb: CloudClients
let cloud: Provisioned
let watcher: NatsConnection
/** Every cast published on HOST's subject: cast id → how many times. */
const published = new Map<string, number>()
let beating: NodeJS.Timeout | undefined

const overrides = (): ConfigOverrides => ({
  natsUrl: nats.url,
  // No agent behind HOST: the test beats for it. The resend timers are far off: the test resends, both at once.
  hosts: { heartbeatIntervalMs: 500, missedHeartbeats: 600 },
  servers: { castRetryMs: 3_600_000, agentCallTimeoutMs: 5_000 },
})

t.before(async () => {
  nats = await startNats()
  pair = await inProcessPair('strato_claim', overrides())
  ;({ a, b, ca, cb } = pair)
  // Announced straight to the registry (no agent, so no cast consumer yet: a cast tried while NATS is down is not half-sent).
  await a.controller.hosts.announce(fakeHost(HOST))
  await a.controller.hosts.discover()
  const beat = () => Promise.all([a, b].map((c) => c.controller.hosts.heartbeat(HOST).catch(() => {})))
  await beat()
  beating = setInterval(() => void beat(), 500)
  cloud = await provision(ca, a.adminToken)
  watcher = await connect({ ...nats.connectOptions(), maxReconnectAttempts: -1, reconnectTimeWait: 250 })
  watcher.subscribe(castSubject(HOST), {
    callback: (err, m) => {
      if (err) return
      const id = Cast.decode(m.data).id ?? ''
      published.set(id, (published.get(id) ?? 0) + 1)
    },
  })
  await watcher.flush()
})
t.teardown(async () => {
  clearInterval(beating)
  await watcher?.close()
  await pair?.close()
  await nats?.stop()
})

const unsent = () => a.controller.db.selectFrom('servers').select(['uuid', 'pending_cast_id']).where('pending_cast_id', '!=', '').where('cast_sent_at', 'is', null).where('deleted', '=', 0).execute()

t.test('casts queued while NATS is down are published once, though both controllers resend them', async (t) => {
  await killNats(nats)
  const made = await Promise.all(Array.from({ length: 8 }, async (_, i) => {
    const [c, tok] = i % 2 ? [cb, b.adminToken] : [ca, a.adminToken]
    return (await call<CreateServerResponse>(c.servers, 'createServer', { name: `claim-${i}`, flavorRef: cloud.flavor.id, imageRef: cloud.image.id, networks: [{ uuid: cloud.network.id }] }, tok)).servers[0]!.id
  }))
  const waiting = await unsent()
  t.same(waiting.map((r) => r.uuid).sort(), [...made].sort(), 'every build cast waits on its row, unsent')
  t.same([...published.keys()], [], 'nothing was published while NATS was down')

  await nats.restart()
  // Both controllers and the watcher are connected again (a flush is answered once a connection is back).
  for (const nc of [a.controller.nats!, b.controller.nats!, watcher]) await eventually(() => nc.flush().then(() => true, () => false), 60_000, 'NATS connections to be back')
  await eventually(async () => {
    await Promise.all([a.controller.servers.resend(), b.controller.servers.resend()])
    return (await unsent()).length === 0
  }, 120_000, 'every cast to be marked sent')
  // What was published has reached the watcher once its connection has had a round trip after the last resend.
  await watcher.flush()
  const casts = waiting.map((r) => r.pending_cast_id).sort()
  t.same([...published.keys()].sort(), casts, 'every queued cast was published')
  t.same([...published.entries()].filter(([, n]) => n !== 1), [], 'no cast was published twice (one controller claimed each)')
})

t.test('automatic discovery run by both controllers at once maps each waiting host once', async (t) => {
  for (const h of ['claim-d1', 'claim-d2', 'claim-d3']) await a.controller.hosts.announce(fakeHost(h))
  const [ra, rb] = await Promise.all([a.controller.hosts.discover(), b.controller.hosts.discover()])
  const mapped = [...ra.mapped, ...rb.mapped].map((h) => h.host).sort()
  t.same(mapped, ['claim-d1', 'claim-d2', 'claim-d3'], 'each host reported mapped by exactly one controller')
  t.same((await a.controller.hosts.list({ unmappedOnly: true })).map((h) => h.host), [], 'none left waiting')
})
