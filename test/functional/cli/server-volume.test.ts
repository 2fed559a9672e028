// The `strato` CLI's volume attachment commands in process against a small cloud (real controller
// and nats-server, one agent on the fake hypervisor and fake volume driver): server add volume,
// server volume list (openstackclient's columns), volume show's attachments, server remove volume,
// and the errors a refused attach prints.
import t from 'tap'
import { eventually } from '../../helpers/agents.js'
import { startCloud, type TestCloud } from '../../helpers/cloud.js'
import type { TestContext } from '../../helpers/tap.js'
import { adminAndDemo, failsWith, fields, header, removeHomes, rows, strato, succeeds } from './cli.js'

let cloud: TestCloud
let demo: Record<string, string>

t.before(async () => {
  cloud = await startCloud({ hosts: ['node1'] })
  ;({ demo } = await adminAndDemo(cloud.s.openrc))
})
t.teardown(async () => {
  await cloud?.close()
  removeHomes()
})

const ok = (t: TestContext, line: string | string[]) => succeeds(t, line, demo)
const fails = (t: TestContext, line: string | string[], code: number) => failsWith(t, line, code, demo)
const status = async (ref: string) => (await strato(['volume', 'show', ref, '-f', 'value', '-c', 'status'], demo)).stdout.trim()
const until = (ref: string, want: string) => eventually(async () => (await status(ref)) === want, 10_000, `volume ${ref} to be ${want}`)

t.test('server add volume, server volume list, volume show, server remove volume', async (t) => {
  const server = (await ok(t, 'server create --flavor 1 --image cirros --nic none --wait -f value -c id vm1')).trim()
  const volume = (await ok(t, 'volume create --size 1 -f value -c id data')).trim()
  await until('data', 'available')

  const added = await ok(t, 'server add volume vm1 data')
  t.match(added, new RegExp(`\\| Server ID +\\| ${server} +\\|`), 'a Field/Value table')
  t.same(JSON.parse(await ok(t, 'volume show data -f json -c id')), { id: volume })
  await until('data', 'in-use')
  await ok(t, 'server remove volume vm1 data')
  await until('data', 'available')
  t.same(JSON.parse(await ok(t, 'server add volume vm1 data -f json')), { ID: volume, 'Server ID': server, 'Volume ID': volume, Device: '/dev/vdb' })
  await until('data', 'in-use')

  const list = await ok(t, 'server volume list vm1')
  t.equal(header(list), `| ID${' '.repeat(35)}| Device   | Server ID${' '.repeat(28)}| Volume ID${' '.repeat(28)}|`)
  t.same(rows(list), [[volume, '/dev/vdb', server, volume]])
  t.same(JSON.parse(await ok(t, 'server volume list vm1 -f json')), [{ ID: volume, Device: '/dev/vdb', 'Server ID': server, 'Volume ID': volume }])

  const shown = JSON.parse(await ok(t, 'volume show data -f json')) as { attachments: Array<Record<string, string>> }
  t.match(shown.attachments, [{ server_id: server, volume_id: volume, device: '/dev/vdb', attachment_id: /^[0-9a-f-]{36}$/ }])
  t.match(rows(await ok(t, 'volume list')), [[volume, 'data', 'in-use', '1', `Attached to ${server} on /dev/vdb`]])

  t.equal((await ok(t, 'server show vm1 -f value -c volumes_attached')).trim(), `id='${volume}'`, 'server show: volumes_attached')
  const second = (await ok(t, 'volume create --size 1 -f value -c id logs')).trim()
  await until('logs', 'available')
  t.equal(fields(await ok(t, 'server add volume --device /dev/vdd vm1 logs')).Device, '/dev/vdd')
  await until('logs', 'in-use')
  t.match((await fails(t, 'server add volume vm1 data', 1)).stderr, /volume .* is already attached to server .* as \/dev\/vdb/)
  t.match((await fails(t, 'server add volume --device /dev/sdb vm1 data', 1)).stderr, /device must be \/dev\/vdb to \/dev\/vdz/)

  await ok(t, 'server remove volume vm1 data')
  await until('data', 'available')
  t.same(rows(await ok(t, 'server volume list vm1')), [[second, '/dev/vdd', server, second]])
  await ok(t, 'server remove volume vm1 logs')
  await until('logs', 'available')
  t.match((await fails(t, 'server remove volume vm1 logs', 1)).stderr, /volume .* is not attached to server/)
  t.same(rows(await ok(t, 'server volume list vm1')), [])
  await ok(t, 'server delete --wait vm1')
  await ok(t, 'volume delete data logs')
})
