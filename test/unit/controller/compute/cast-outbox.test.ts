// The cast outbox (controller/compute/cast-outbox.ts) on a real in-memory database and a recording
// transport: a pending cast the bus did not take is sent again by resend(), with the request id of
// the API call behind it, and marked sent; one the bus refuses stays pending; sent ones are not resent.
// On PostgreSQL (cast-outbox.pg.test.ts): a send claims its cast by a lease, not by a row lock held
// while the bus takes it.
import t from 'tap'
import { sql } from 'kysely'
import { openDatabase, type Db } from '../../../../controller/store/db.js'
import { CAST_LEASE_MS, CastOutbox, castIdFor, castLease } from '../../../../controller/compute/cast-outbox.js'
import type { AgentTransport, CastAction } from '../../../../controller/compute/transport.js'
import type { ServerTable } from '../../../../controller/store/schema.js'
import { Unavailable } from '../../../../proto/errors.js'
import { testDatabaseUrl, testingOnPostgres } from '../../../helpers/postgres.js'

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
    uuid, name: uuid, hostname: uuid, description: '', project_id: 'p', user_id: 'u', flavor_id: '1', flavor_name: 'm1', vcpus: 1, ram: 64, disk: 1, ephemeral: 0, swap: 0,
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

/** A transport whose casts wait at a gate until the test opens it (a publish NATS is slow to take). */
class GatedTransport extends RecordingTransport {
  entered = 0
  private open!: () => void
  private gate = new Promise<void>((resolve) => (this.open = resolve))
  release(): void {
    this.open()
  }
  override async cast(host: string, action: CastAction, id: string, requestId?: string): Promise<string> {
    this.entered++
    await this.gate
    return super.cast(host, action, id, requestId)
  }
}

const onPostgres = () => (testingOnPostgres() ? false : 'claims are for several controllers on PostgreSQL')

t.test('PostgreSQL: a send holds no row lock while the bus takes the cast, and a second sender passes its lease by', { skip: onPostgres() }, async (t) => {
  const uuid = '00000000-0000-4000-8000-0000000000d1'
  const cast = castIdFor('reboot', uuid)
  await db.insertInto('servers').values(serverRow(uuid, { task_state: 'rebooting', pending_cast_id: cast, pending_request_id: 'req-d' })).execute()
  const slow = new GatedTransport()
  const first = new CastOutbox(db, 60_000, silent, slow)
  const other = new RecordingTransport()
  const second = new CastOutbox(db, 60_000, silent, other)

  const sending = first.send({ uuid, host: 'node1', action: 'reboot', castId: cast, requestId: 'req-d' })
  while (slow.entered === 0) await new Promise((r) => setImmediate(r))
  // Another transaction can lock the row at once (NOWAIT fails with 55P03 while a lock is held).
  const locked = await db.transaction().execute((trx) => sql<{ uuid: string }>`SELECT uuid FROM servers WHERE uuid = ${uuid} FOR UPDATE NOWAIT`.execute(trx))
  t.same(locked.rows.map((r) => r.uuid), [uuid], 'the row is not locked while the cast is being published')
  const leased = await db.selectFrom('servers').select(['cast_claim_id', 'cast_claimed_at', 'cast_sent_at']).where('uuid', '=', uuid).executeTakeFirstOrThrow()
  t.equal(leased.cast_claim_id, cast, 'the send holds a lease on its cast')
  t.equal(leased.cast_sent_at, null)
  await second.resend()
  await second.send({ uuid, host: 'node1', action: 'reboot', castId: cast, requestId: 'req-d' })
  t.same(other.casts, [], 'another sender (resend or API) passes the leased cast by')

  slow.release()
  await sending
  t.equal(slow.casts.length, 1, 'the claimer published it')
  const sent = await db.selectFrom('servers').select(['cast_claim_id', 'cast_claimed_at', 'cast_sent_at']).where('uuid', '=', uuid).executeTakeFirstOrThrow()
  t.ok(sent.cast_sent_at, 'marked sent')
  t.same([sent.cast_claim_id, sent.cast_claimed_at], [null, null], 'the lease ended with the send')
  await second.resend()
  t.same(other.casts, [], 'a sent cast is not sent again')
})

t.test('PostgreSQL: a failed send gives its lease back; a lease that ran out, or one on an older cast, holds nothing up', { skip: onPostgres() }, async (t) => {
  const uuid = '00000000-0000-4000-8000-0000000000d2'
  const older = castIdFor('stop', uuid)
  const cast = castIdFor('start', uuid)
  await db.insertInto('servers').values(serverRow(uuid, { task_state: 'powering-on', pending_cast_id: cast, pending_request_id: 'req-e' })).execute()
  const transport = new RecordingTransport()
  const outbox = new CastOutbox(db, 60_000, silent, transport)
  const lease = () => db.selectFrom('servers').select(['cast_claim_id', 'cast_claimed_at', 'cast_sent_at']).where('uuid', '=', uuid).executeTakeFirstOrThrow()

  transport.down = true
  await outbox.send({ uuid, host: 'node1', action: 'start', castId: cast, requestId: 'req-e' })
  t.same(await lease(), { cast_claim_id: null, cast_claimed_at: null, cast_sent_at: null }, 'the bus refused it: no lease left behind, still unsent')

  // A controller died while sending this cast: its lease holds the row until it runs out.
  await db.updateTable('servers').set({ cast_claim_id: cast, cast_claimed_at: new Date().toISOString() }).where('uuid', '=', uuid).execute()
  transport.down = false
  await outbox.resend()
  t.same(transport.casts, [], 'a live lease of another sender is passed by')
  await db.updateTable('servers').set({ cast_claimed_at: new Date(Date.now() - CAST_LEASE_MS - 1_000).toISOString() }).where('uuid', '=', uuid).execute()
  await outbox.resend()
  t.same(transport.casts.map((c) => c.id), [cast], 'once the lease ran out, the resend sends it')

  // The row moved on to a newer cast while a send of the older one was in flight: the older lease does not hold the newer cast.
  const newer = castIdFor('stop', uuid)
  await db.updateTable('servers').set({ pending_cast_id: newer, cast_sent_at: null, cast_claim_id: older, cast_claimed_at: new Date().toISOString() }).where('uuid', '=', uuid).execute()
  await outbox.send({ uuid, host: 'node1', action: 'stop', castId: newer, requestId: 'req-f' })
  t.same(transport.casts.map((c) => c.id), [cast, newer], 'the newer cast goes out at once')
  t.ok((await lease()).cast_sent_at, 'and is marked sent')
})

t.test('the sends of one tick are marked sent in one statement, each while its cast is still pending; a create\'s held lease ends with its send', async (t) => {
  const [a, b, moved] = ['e1', 'e2', 'e3'].map((s) => `00000000-0000-4000-8000-0000000000${s}`) as [string, string, string]
  const ts = new Date().toISOString()
  const build = (u: string) => castIdFor('build', u)
  const stale = castIdFor('stop', moved)
  await db.insertInto('servers').values([
    // As a create records them: the row carries its build cast's lease, the create sends it as held.
    serverRow(a, { vm_state: 'building', task_state: 'scheduling', pending_cast_id: build(a), ...castLease(build(a), ts) }),
    serverRow(b, { vm_state: 'building', task_state: 'scheduling', pending_cast_id: build(b), ...castLease(build(b), ts) }),
  ]).execute()
  if (testingOnPostgres()) {
    const other = new RecordingTransport()
    await new CastOutbox(db, 60_000, silent, other).resend()
    t.same(other.casts, [], 'another controller\'s resend passes a create\'s held casts by')
  }
  // This row moved on to a newer cast while an older one was on its way.
  await db.insertInto('servers').values(serverRow(moved, { task_state: 'powering-on', pending_cast_id: castIdFor('start', moved), ...castLease(stale, ts) })).execute()
  const transport = new RecordingTransport()
  const outbox = new CastOutbox(db, 60_000, silent, transport)
  await Promise.all([
    outbox.send({ uuid: a, host: 'node1', action: 'build', castId: build(a), requestId: 'req-g' }, true, 'held'),
    outbox.send({ uuid: b, host: 'node1', action: 'build', castId: build(b), requestId: 'req-g' }, true, 'held'),
    outbox.send({ uuid: moved, host: 'node1', action: 'stop', castId: stale, requestId: 'req-h' }, true, 'held'),
  ])
  t.same(transport.casts.map((c) => c.id).sort(), [build(a), build(b), stale].sort(), 'held sends go out without a claim')
  const rows = new Map((await db.selectFrom('servers').select(['uuid', 'cast_sent_at', 'cast_claim_id', 'cast_claimed_at']).where('uuid', 'in', [a, b, moved]).execute()).map((r) => [r.uuid, r]))
  t.ok(rows.get(a)!.cast_sent_at, 'marked sent')
  t.equal(rows.get(a)!.cast_sent_at, rows.get(b)!.cast_sent_at, 'both in one statement (one time stamp)')
  t.same([a, b].map((u) => [rows.get(u)!.cast_claim_id, rows.get(u)!.cast_claimed_at]), [[null, null], [null, null]], 'and their leases ended in it')
  t.same(rows.get(moved), { uuid: moved, cast_sent_at: null, cast_claim_id: stale, cast_claimed_at: ts }, 'a row whose pending cast is another is left as it was')
})
