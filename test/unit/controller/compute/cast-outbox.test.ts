// The cast outbox (controller/compute/cast-outbox.ts) on a real in-memory database and a recording
// transport: a pending cast the bus did not take is sent again by resend(), with the request id of
// the API call behind it, and marked sent; one the bus refuses stays pending; sent ones are not resent.
import t from 'tap'
import { openDatabase, type Db } from '../../../../controller/store/db.js'
import { CastOutbox, castIdFor } from '../../../../controller/compute/cast-outbox.js'
import type { AgentTransport, CastAction } from '../../../../controller/compute/transport.js'
import type { ServerTable } from '../../../../controller/store/schema.js'
import { Unavailable } from '../../../../proto/errors.js'
import { testDatabaseUrl } from '../../../helpers/postgres.js'

const silent = { info: () => {}, warn: () => {}, debug: () => {} }

class RecordingTransport implements AgentTransport {
  casts: Array<{ host: string; action: CastAction; id: string; requestId: string | undefined }> = []
  down = false
  async cast(host: string, action: CastAction, id: string, requestId?: string): Promise<string> {
    if (this.down) throw new Unavailable('NATS is away')
    this.casts.push({ host, action, id, requestId })
    return id
  }
  async call(): Promise<never> {
    throw new Unavailable('not in this test')
  }
}

function serverRow(uuid: string, o: Partial<ServerTable>): ServerTable {
  const ts = new Date().toISOString()
  return {
    uuid, name: uuid, description: '', project_id: 'p', user_id: 'u', flavor_id: '1', flavor_name: 'm1', vcpus: 1, ram: 64, disk: 1, ephemeral: 0, swap: 0,
    image_id: 'i', image_name: 'cirros', key_name: '', key_data: '', user_data: '', config_drive: 'True', metadata: '{}', security_groups: '[]', requested_az: '',
    host: 'node1', node_uuid: null, availability_zone: 'nova', instance_name: `instance-${uuid}`, vm_state: 'active', task_state: '', power_state: 1,
    pending_cast_id: '', pending_request_id: '', cast_sent_at: null, own_ports: '[]', reservation_id: 'r-1', launch_index: 0,
    fault_code: '', fault_message: '', fault_at: null, created_at: ts, updated_at: ts, launched_at: null, terminated_at: null, deleted: 0, server_group_id: '', view_revision: 1, ...o,
  }
}

let db: Db
t.before(async () => {
  db = await openDatabase(await testDatabaseUrl())
})
t.teardown(() => db.destroy())

t.test('resend(): pending casts go out with their request id, once', async (t) => {
  const a = '00000000-0000-4000-8000-00000000000a'
  const b = '00000000-0000-4000-8000-00000000000b'
  const sent = '00000000-0000-4000-8000-00000000000c'
  const rebootA = castIdFor('reboot', a)
  await db.insertInto('servers').values([
    serverRow(a, { task_state: 'rebooting', pending_cast_id: rebootA, pending_request_id: 'req-a' }),
    serverRow(b, { vm_state: 'building', task_state: 'networking', pending_cast_id: castIdFor('build', b), pending_request_id: '' }),
    serverRow(sent, { task_state: 'powering-off', pending_cast_id: castIdFor('stop', sent), pending_request_id: 'req-c', cast_sent_at: new Date().toISOString() }),
  ]).execute()
  const transport = new RecordingTransport()
  const outbox = new CastOutbox(db, 60_000, silent, transport)

  transport.down = true
  await outbox.resend()
  t.same(transport.casts, [], 'the bus refused them')
  t.equal((await db.selectFrom('servers').select('cast_sent_at').where('uuid', '=', a).executeTakeFirstOrThrow()).cast_sent_at, null, 'still pending')

  transport.down = false
  await outbox.resend()
  const byId = Object.fromEntries(transport.casts.map((c) => [c.id, c]))
  t.same(byId[rebootA], { host: 'node1', action: { reboot: { instanceUuid: a, hard: false } }, id: rebootA, requestId: 'req-a' }, 'the reboot goes out with the request id of the call behind it')
  t.same(byId[`build.${b}`], { host: 'node1', action: { build: { instanceUuid: b } }, id: `build.${b}`, requestId: undefined }, 'a cast with no known request id goes without one')
  t.equal(transport.casts.length, 2, 'the cast JetStream already took is not sent again')
  const rows = await db.selectFrom('servers').select(['uuid', 'cast_sent_at']).where('uuid', 'in', [a, b]).execute()
  t.ok(rows.every((r) => r.cast_sent_at), 'both are marked sent')

  await outbox.resend()
  t.equal(transport.casts.length, 2, 'nothing is pending any more')
})
