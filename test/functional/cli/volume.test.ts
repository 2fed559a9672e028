// The `strato` CLI's block storage commands in process against a small cloud (real controller and
// nats-server, agents node1 and node2 whose volume role runs the fake volume driver): volume,
// volume snapshot and volume type, with openstackclient's columns, -f formats and errors; per-type quotas.
import t from 'tap'
import { eventually } from '../../helpers/agents.js'
import { startCloud, type TestCloud } from '../../helpers/cloud.js'
import type { TestContext } from '../../helpers/tap.js'
import { adminAndDemo, failsWith, fields, header, removeHomes, rows, strato, succeeds } from './cli.js'

let cloud: TestCloud
let env: Record<string, string>
let demo: Record<string, string>

t.before(async () => {
  cloud = await startCloud()
  ;({ env, demo } = await adminAndDemo(cloud.s.openrc))
})
t.teardown(async () => {
  await cloud?.close()
  removeHomes()
})

const ok = (t: TestContext, line: string | string[], e = demo) => succeeds(t, line, e)
const fails = (t: TestContext, line: string | string[], code: number, e = demo) => failsWith(t, line, code, e)
const status = async (ref: string, noun = 'volume') => (await strato([...noun.split(' '), 'show', ref, '-f', 'value', '-c', 'status'], demo)).stdout.trim()
const until = (ref: string, want: string, noun = 'volume') => eventually(async () => (await status(ref, noun)) === want, 10_000, `${noun} ${ref} to be ${want}`)

t.test('volume create/show/list/set/delete with openstackclient\'s fields and columns', async (t) => {
  const f = fields(await ok(t, 'volume create --size 2 --description first --property tier=gold data1'))
  t.same(Object.keys(f), [
    'attachments', 'availability_zone', 'bootable', 'consistencygroup_id', 'created_at', 'description', 'encrypted', 'id', 'migration_status', 'multiattach',
    'name', 'os-vol-tenant-attr:tenant_id', 'properties', 'replication_status', 'size', 'snapshot_id', 'source_volid', 'status', 'type', 'updated_at', 'user_id',
  ], "Cinder v3's volume fields, sorted; no host for members")
  t.match(f, { name: 'data1', size: '2', status: 'creating', bootable: 'false', type: '__DEFAULT__', description: 'first', properties: "tier='gold'", attachments: '' })
  await until('data1', 'available')

  const list = await ok(t, 'volume list')
  t.equal(header(list), '| ID                                   | Name  | Status    | Size | Attached to |')
  t.match(rows(list), [[/^[0-9a-f-]{36}$/, 'data1', 'available', '2', '']])
  const long = await ok(t, 'volume list --long')
  t.match(header(long), /\| ID +\| Name +\| Status +\| Size \| Type +\| Bootable \| Attached to \| Properties +\|/)
  t.same(JSON.parse(await ok(t, 'volume list -f json')).map((v: Record<string, unknown>) => Object.keys(v)), [['ID', 'Name', 'Status', 'Size', 'Attached to']])
  t.match(await ok(t, 'volume list -f csv'), /^"ID","Name","Status","Size","Attached to"\n"[0-9a-f-]{36}","data1","available",2,""\n$/)
  t.equal((await ok(t, 'volume show data1 -f value -c size')).trim(), '2')
  t.match(fields(await succeeds(t, 'volume show data1', env)), { 'os-vol-host-attr:host': /^node[12]@fake#fake$/ }, "admins see the backend host as Cinder's host@backend#pool")

  await ok(t, 'volume set --name data2 --property tier=silver --size 3 --non-bootable data1')
  await until('data2', 'available')
  const after = JSON.parse(await ok(t, 'volume show data2 -f json')) as Record<string, unknown>
  t.match(after, { name: 'data2', size: 3, properties: { tier: 'silver' }, bootable: 'false' })
  await ok(t, 'volume unset --property tier data2')
  t.same((JSON.parse(await ok(t, 'volume show data2 -f json')) as Record<string, unknown>).properties, {})

  t.match((await fails(t, 'volume set --size 2 data2', 1)).stderr, /new_size must be larger than the volume's size, 3 GiB; got 2/)
  t.match((await fails(t, 'volume set --state error data2', 1)).stderr, /ResetVolumeState requires one of: cloud_admin/)
  await ok(t, 'volume delete data2')
  await eventually(async () => (await strato('volume show data2', demo)).code === 1, 10_000, 'data2 gone')
  t.match((await fails(t, 'volume show data2', 1)).stderr, /^No volume with a name or ID of 'data2' exists\.\n$/)
})

t.test('snapshots, a volume from a snapshot and from an image, delete --cascade', async (t) => {
  await ok(t, 'volume create --size 1 src')
  await until('src', 'available')
  const s = fields(await ok(t, 'volume snapshot create --volume src --description nightly snap1'))
  t.same(Object.keys(s), ['created_at', 'description', 'id', 'name', 'os-extended-snapshot-attributes:project_id', 'properties', 'size', 'status', 'updated_at', 'volume_id'])
  t.match(s, { name: 'snap1', size: '1', description: 'nightly' })
  await until('snap1', 'available', 'volume snapshot')
  t.equal(header(await ok(t, 'volume snapshot list')), '| ID                                   | Name  | Description | Status    | Size |')
  t.match(header(await ok(t, 'volume snapshot list --long')), /Created At .*\| Volume .*\| Properties/)

  const restored = fields(await ok(t, 'volume create --snapshot snap1 restored'))
  t.match(restored, { snapshot_id: s.id, size: '1' })
  const boot = fields(await ok(t, 'volume create --image cirros --size 1 boot'))
  t.equal(boot.bootable, 'true')
  await until('boot', 'available')
  t.match(JSON.parse(await ok(t, 'volume show boot -f json')), { volume_image_metadata: { image_name: 'cirros', disk_format: 'qcow2' } })

  const refused = await fails(t, 'volume delete src', 1)
  t.match(refused.stderr, /^Failed to delete volume with name or ID 'src': volume [0-9a-f-]{36} has 1 snapshot .*delete with cascade\n$/)
  await until('restored', 'available')
  await ok(t, 'volume delete --cascade src restored boot')
  for (const v of ['src', 'restored', 'boot']) await eventually(async () => (await strato(['volume', 'show', v], demo)).code === 1, 10_000, `${v} gone`)
  t.equal((await strato('volume snapshot show snap1', demo)).code, 1, 'the snapshot went with its volume')
})

t.test('volume types: admins create, set and delete; everyone lists', async (t) => {
  const f = fields(await succeeds(t, 'volume type create --description fast --property volume_backend_name=fake ssd', env))
  t.same(Object.keys(f), ['description', 'id', 'is_public', 'name', 'properties'])
  t.match(f, { name: 'ssd', is_public: 'True', properties: "volume_backend_name='fake'" })
  await succeeds(t, 'volume type set --property multiattach=<is>True ssd', env)
  t.match(JSON.parse(await succeeds(t, 'volume type show ssd -f json', env)), { properties: { volume_backend_name: 'fake', multiattach: '<is>True' } })
  t.equal(header(await ok(t, 'volume type list')), '| ID                                   | Name        | Is Public |')
  t.match(rows(await ok(t, 'volume type list')).map((r) => r[1]).sort(), ['__DEFAULT__', 'ssd'])
  t.match((await fails(t, 'volume type create mine', 1)).stderr, /CreateVolumeType requires one of: cloud_admin/)
  const v = fields(await ok(t, 'volume create --size 1 --type ssd typed'))
  t.equal(v.type, 'ssd')
  t.equal(v.multiattach, 'True')
  await until('typed', 'available')
  await ok(t, 'volume delete typed')
  await eventually(async () => (await strato('volume show typed', demo)).code === 1, 10_000, 'typed gone')
  await succeeds(t, 'volume type delete ssd', env)
})

t.test('bad input: clear one-line errors', async (t) => {
  t.match((await fails(t, 'volume create novolsize', 2)).stderr, /--size is required unless --image, --snapshot or --source is given/)
  t.match((await fails(t, 'volume create --size 0 zero', 1)).stderr, /size must be a whole number of GiB ≥ 1, got 0/)
  t.match((await fails(t, 'volume create --size 1 --type nope x', 1)).stderr, /volume type 'nope' not found/)
  t.match((await fails(t, 'volume create --size 5000 huge', 1)).stderr, /quota exceeded for gigabytes: 0 of 1000 in use, 5000 more requested/)
  t.equal((await strato('volume list -f value', demo)).stdout, '', 'nothing was made')
})

t.test('per-type quotas: quota set --volume-type, shown by quota show, held by volume create', async (t) => {
  await succeeds(t, 'volume type create silver', env)
  await succeeds(t, 'quota set --volume-type silver --volumes 1 --gigabytes 2 demo', env)
  const shown = await succeeds(t, 'quota show demo -f value', env)
  t.match(shown, /^volumes_silver 1$/m, 'as openstackclient shows Cinder\'s per-type quotas')
  t.match(shown, /^gigabytes_silver 2$/m)
  t.match(shown, /^snapshots_silver -1$/m, 'unset: unlimited')
  t.match(shown, /^volumes 10$/m, 'the total is untouched')
  await ok(t, 'volume create --size 1 --type silver s1')
  t.match((await fails(t, 'volume create --size 1 --type silver s2', 1)).stderr, /quota exceeded for volumes_silver: 1 of 1 in use, 1 more requested/)
  t.match(await succeeds(t, 'quota show demo --usage -f value', env), /^volumes_silver 1 1$/m, '--usage counts the type\'s volumes')
  t.match((await fails(t, 'quota set --volume-type silver --instances 3 demo', 2, env)).stderr, /--instances is not a per-type quota; with --volume-type give only --volumes, --gigabytes or --snapshots/)
  t.match((await fails(t, 'quota set --volume-type nosuch --volumes 1 demo', 1, env)).stderr, /unknown quota resource 'volumes_nosuch': there is no 'nosuch'/)
  t.notMatch(await succeeds(t, 'quota show demo -f value', env), /nosuch/, 'nothing was set')
  await until('s1', 'available')
  await ok(t, 'volume delete s1')
  await eventually(async () => (await strato('volume show s1', demo)).code === 1, 10_000, 's1 gone')
  await succeeds(t, 'volume type delete silver', env)
})
