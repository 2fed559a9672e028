// The agent's cast worker on a real nats-server: a cast whose result cannot be stored (the event
// stream does not answer) is delivered again, and then only its result is stored — the work is not
// done a second time. Before, a NATS node's death between the work and its report made the agent
// start, stop or delete a guest twice (the chaos test saw it). Volume work runs only while the
// controller says its row still waits for the cast: a stale one is acked and skipped (logged with
// why), a controller that does not answer postpones it, and one from before volume work was checked
// (it refuses the question) has it run as before.
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { Writable } from 'node:stream'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { AckPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType, type JetStreamManager } from '@nats-io/jetstream'
import { pino } from 'pino'
import { startNats, type NatsServer } from '../../helpers/nats.js'
import { eventually } from '../../helpers/agents.js'
import { CastWorker } from '../../../agent/cast-worker.js'
import type { ComputeManager } from '../../../agent/compute-manager.js'
import { CAST_STREAM, CAST_SUBJECTS, EVENT_STREAM, EVENT_SUBJECTS, castIdFor, castResultSubject, castSubject } from '../../../proto/subjects.js'
import { castAction } from '../../../proto/server-actions.js'
import { Cast, CastResult, ConductorReply, ConductorRequest } from '../../../proto/gen/strato/agent/v1/agent.js'
import { ConductorClient } from '../../../agent/conductor-client.js'
import { VolumeManager } from '../../../agent/volume/manager.js'
import { FakeVolumeDriver } from '../../../agent/volume/fake.js'
import { conductorSubject } from '../../../proto/subjects.js'
import { volumeCastId } from '../../../proto/volume-work.js'
import { errorHeaders } from '../../../proto/nats-errors.js'
import { InvalidArgument } from '../../../proto/errors.js'

const HOST = 'worker1'
const UUID = '00000000-0000-4000-8000-0000000000c5'

let nats: NatsServer
let nc: NatsConnection
let jsm: JetStreamManager
t.before(async () => {
  nats = await startNats({ auth: false })
  nc = await connect({ servers: nats.url })
  jsm = await jetstreamManager(nc)
})
t.teardown(async () => {
  await nc?.close()
  await nats?.stop()
})

t.test('a cast done but not reported is reported when it comes again, not done again', async (t) => {
  // The cast queue only: results have no stream to go to yet (a publish there is refused: no responders).
  await jsm.streams.add({ name: CAST_STREAM, subjects: [CAST_SUBJECTS], retention: RetentionPolicy.Workqueue, storage: StorageType.Memory })
  await jsm.consumers.add(CAST_STREAM, { durable_name: 'w', ack_policy: AckPolicy.Explicit, ack_wait: 30_000_000_000, filter_subject: castSubject(HOST) })
  const reboots: string[] = []
  const manager = { reboot: async (uuid: string) => (reboots.push(uuid), 1) } as unknown as ComputeManager
  const lines: string[] = []
  const log = pino({ level: 'info' }, new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) }))
  const worker = new CastWorker(jetstream(nc), manager, undefined, { host: HOST, maxConcurrentCasts: 2, running: () => true }, log)
  t.teardown(() => worker.stop())
  const id = castIdFor('reboot', UUID, 'n1')
  await jetstream(nc).publish(castSubject(HOST), Cast.encode(Cast.fromPartial({ id, sentAt: new Date(), ...castAction('reboot', UUID) })).finish(), { msgID: id })
  await worker.consume(CAST_STREAM, 'w')

  await eventually(() => lines.filter((l) => l.includes('cast result not stored')).length >= 2, 60_000, 'the cast to come again after its result was refused, and its result to be refused again')
  t.same(reboots, [UUID], 'the guest was rebooted once')

  // The event stream answers again: the next delivery stores the result, and the cast is acked (gone from the queue).
  await jsm.streams.add({ name: EVENT_STREAM, subjects: [EVENT_SUBJECTS], storage: StorageType.Memory })
  await eventually(async () => (await jsm.streams.info(CAST_STREAM)).state.messages === 0, 60_000, 'the cast to be acked')
  const stored = await jsm.streams.getMessage(EVENT_STREAM, { last_by_subj: castResultSubject(HOST) })
  const result = CastResult.decode(stored!.data)
  t.match(result, { castId: id, ok: true, instanceUuid: UUID, action: 'reboot', powerState: 1 }, 'its result is stored')
  t.same(reboots, [UUID], 'and the guest was still rebooted only once')
})

t.test('volume work asks the controller first: stale work is skipped, an unanswered question postpones it, an older controller has it run', async (t) => {
  const host = 'worker2'
  // The cast queue and the event stream of the test before.
  await jsm.consumers.add(CAST_STREAM, { durable_name: 'w2', ack_policy: AckPolicy.Explicit, ack_wait: 30_000_000_000, filter_subject: castSubject(host) })
  // The controller's side of the question, as each kind of controller answers it.
  let controller: 'current' | 'stale' | 'older' | 'away' = 'stale'
  const sub = nc.subscribe(conductorSubject(host), {
    callback: (_err, m) => {
      const q = ConductorRequest.decode(m.data).volumeCast
      if (!q || controller === 'away') return
      if (controller === 'older') m.respond(new Uint8Array(), { headers: errorHeaders(new InvalidArgument(`'${q.castId}' is not an attachment cast id (attach, detach, extend_volume)`, { field: 'cast_id' })) })
      else m.respond(ConductorReply.encode({ volumeCast: controller === 'current' ? { current: true, reason: '' } : { current: false, reason: 'volume x no longer exists' } }).finish())
    },
  })
  t.teardown(() => sub.unsubscribe())
  const conductor = new ConductorClient(() => nc, { host, requestTimeoutMs: 300 })
  const manager = { volumeCastState: (id: string) => conductor.volumeCast(id) } as unknown as ComputeManager
  const lines: string[] = []
  const log = pino({ level: 'info' }, new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) }))
  const backend = new FakeVolumeDriver()
  const volumes = new VolumeManager(backend, { imageOf: async () => '', host, log })
  const worker = new CastWorker(jetstream(nc), manager, volumes, { host, maxConcurrentCasts: 2, running: () => true }, log)
  t.teardown(() => worker.stop())
  await worker.consume(CAST_STREAM, 'w2')
  const acked = () => eventually(async () => {
    const c = await jsm.consumers.info(CAST_STREAM, 'w2')
    return c.num_pending === 0 && c.num_ack_pending === 0
  }, 30_000, "worker2's casts all acked")
  const create = async () => {
    const volumeId = randomUUID()
    const id = volumeCastId('create', volumeId, 'n1')
    await jetstream(nc).publish(castSubject(host), Cast.encode(Cast.fromPartial({ id, sentAt: new Date(), volume: { op: 'create', volumeId, sizeGb: 1 } })).finish(), { msgID: id })
    return { volumeId, id }
  }

  const stale = await create()
  await acked()
  t.notOk(backend.volumes.has(stale.volumeId), 'a create the controller no longer waits for made nothing')
  const skipped = lines.map((l) => JSON.parse(l) as { level: number; cast?: string; reason?: string; msg: string }).find((l) => l.cast === stale.id && /skipped/.test(l.msg))
  t.match(skipped, { level: 30, reason: 'volume x no longer exists', msg: 'volume_create skipped: the controller no longer waits for this cast (volume x no longer exists)' }, 'logged at INFO with the cast id and why')

  controller = 'away'
  const postponed = await create()
  await eventually(() => lines.some((l) => l.includes(postponed.id) && l.includes('cast postponed')), 30_000, 'the create postponed')
  t.notOk(backend.volumes.has(postponed.volumeId), 'not run while the controller does not answer')
  controller = 'current'
  await eventually(() => backend.volumes.has(postponed.volumeId), 30_000, 'the create run once the controller answers')
  await acked()

  controller = 'older'
  const old = await create()
  await acked()
  t.ok(backend.volumes.has(old.volumeId), 'a controller that refuses the question (from before volume work was checked) has it run, as before')
})
