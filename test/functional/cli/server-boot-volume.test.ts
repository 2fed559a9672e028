// `strato server create` booting from volumes, as openstackclient 6.0 does it, in process against a
// small cloud (real controller and nats-server, one agent on the fake hypervisor and fake volume
// driver): --volume (the volume stays when the server is deleted), --boot-from-volume with --image
// (a new volume, deleted with the server), --block-device and the deprecated --block-device-mapping
// for data volumes; server show's image "N/A (booted from volume)" and volumes_attached; usage
// errors and the API's refusals as messages, nothing made.
import t from 'tap'
import { eventually } from '../../helpers/agents.js'
import { startCloud, type TestCloud } from '../../helpers/cloud.js'
import type { TestContext } from '../../helpers/tap.js'
import { adminAndDemo, failsWith, removeHomes, strato, succeeds } from './cli.js'

let cloud: TestCloud
let demo: Record<string, string>

t.before(async () => {
  cloud = await startCloud({ hosts: ['node1'] })
  ;({ demo } = await adminAndDemo(cloud.s.openrc))
  await eventually(async () => (await cloud.s.controller.db.selectFrom('volume_backends').selectAll().execute()).length === 1, 10_000, 'a volume backend')
})
t.teardown(async () => {
  await cloud?.close()
  removeHomes()
})

const ok = (t: TestContext, line: string | string[]) => succeeds(t, line, demo)
const fails = (t: TestContext, line: string | string[], code: number) => failsWith(t, line, code, demo)
const status = async (ref: string) => (await strato(['volume', 'show', ref, '-f', 'value', '-c', 'status'], demo)).stdout.trim()
const until = (ref: string, want: string) => eventually(async () => (await status(ref)) === want, 15_000, `volume ${ref} to be ${want}`)
const gone = (ref: string) => eventually(async () => (await strato(['volume', 'show', ref], demo)).code !== 0, 15_000, `volume ${ref} deleted`)
const volumeIds = async () => (await strato(['volume', 'list', '-f', 'value', '-c', 'ID'], demo)).stdout.split('\n').filter(Boolean).sort()

t.test('--volume: boots from an existing bootable volume; the server shows N/A (booted from volume); deleted, the volume stays', async (t) => {
  const volume = (await ok(t, 'volume create --size 1 --image cirros -f value -c id root1')).trim()
  await until('root1', 'available')
  const shown = JSON.parse(await ok(t, 'server create --flavor 1 --volume root1 --nic none --wait -f json bfv1')) as Record<string, string>
  t.equal(shown.image, 'N/A (booted from volume)', 'openstackclient\'s words for no image')
  t.equal(shown.volumes_attached, `id='${volume}'`)
  await until('root1', 'in-use')
  t.same(JSON.parse(await ok(t, 'server volume list bfv1 -f json')), [{ ID: volume, Device: '/dev/vda', 'Server ID': shown.id, 'Volume ID': volume }], 'on /dev/vda')
  await ok(t, 'server delete --wait bfv1')
  await until('root1', 'available')
  await ok(t, 'volume delete root1')
  await gone(volume)
})

t.test('--boot-from-volume with --image and data volumes (--block-device, --block-device-mapping): all made, attached, and deleted with the server but the one kept', async (t) => {
  const before = await volumeIds()
  const keep = (await ok(t, 'volume create --size 1 -f value -c id keep')).trim()
  await until('keep', 'available')
  const shown = JSON.parse(await ok(t, [
    'server', 'create', '--flavor', '1', '--image', 'cirros', '--boot-from-volume', '1', '--nic', 'none',
    '--block-device', 'source_type=blank,destination_type=volume,volume_size=2,device_name=/dev/vdc',
    '--block-device-mapping', 'vdd=keep:volume::false',
    '--wait', '-f', 'json', 'bfv2',
  ])) as Record<string, string>
  t.equal(shown.image, 'N/A (booted from volume)')
  const attached = shown.volumes_attached!.split('\n')
  t.equal(attached.length, 3, 'root, blank data volume and the kept one')
  const devices = JSON.parse(await ok(t, 'server volume list bfv2 -f json')) as Array<Record<string, string>>
  t.same(devices.map((d) => d.Device).sort(), ['/dev/vda', '/dev/vdc', '/dev/vdd'])
  const made = devices.filter((d) => d['Volume ID'] !== keep).map((d) => d['Volume ID']!)
  const root = devices.find((d) => d.Device === '/dev/vda')!['Volume ID']!
  t.same(JSON.parse(await ok(t, `volume show ${root} -f json -c bootable -c size -c status`)), { bootable: 'true', size: 1, status: 'in-use' }, 'the root volume: from the image, 1 GiB')
  await ok(t, 'server delete --wait bfv2')
  for (const id of made) await gone(id)
  await until('keep', 'available')
  await ok(t, 'volume delete keep')
  await gone(keep)
  t.same(await volumeIds(), before, 'nothing else left')
})

t.test('usage errors and the API\'s refusals are messages; nothing is made', async (t) => {
  const before = await volumeIds()
  t.match((await fails(t, 'server create --flavor 1 --nic none bad', 2)).stderr, /an image \(--image\) or bootable volume \(--volume, --snapshot, --block-device with boot_index=0\) is required/)
  t.match((await fails(t, 'server create --flavor 1 --boot-from-volume 1 --nic none bad', 2)).stderr, /--boot-from-volume is only allowed with --image/)
  t.match((await fails(t, 'server create --flavor 1 --image cirros --volume x --nic none bad', 2)).stderr, /--volume: not allowed with argument --image/)
  t.match((await fails(t, 'server create --flavor 1 --image cirros --boot-from-volume 0 --nic none bad', 2)).stderr, /--boot-from-volume must be an integer ≥ 1/)
  t.match((await fails(t, 'server create --flavor 1 --image cirros --block-device source_type=blank,colour=red --nic none bad', 2)).stderr, /--block-device 'source_type=blank,colour=red': expected/)
  t.match((await fails(t, 'server create --flavor 1 --image cirros --block-device source_type=blank,destination_type=volume --nic none bad', 1)).stderr, /volume_size is required for source_type blank/)
  t.match((await fails(t, 'server create --flavor 1 --block-device source_type=image,uuid=cirros,destination_type=volume,boot_index=0,volume_size=1,volume_type=gold --nic none bad', 1)).stderr, /volume type 'gold' not found/)
  t.same(await volumeIds(), before, 'no volume made')
  t.equal((await strato(['server', 'list', '-f', 'value', '-c', 'ID'], demo)).stdout.trim(), '', 'no server made')
})
