// The agent's cast worker on a real nats-server: a cast whose result cannot be stored (the event
// stream does not answer) is delivered again, and then only its result is stored — the work is not
// done a second time. Before, a NATS node's death between the work and its report made the agent
// start, stop or delete a guest twice (the chaos test saw it).
import t from 'tap'
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
import { Cast, CastResult } from '../../../proto/gen/strato/agent/v1/agent.js'

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
