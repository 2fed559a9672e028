// `strato image create --volume` in process against a small cloud (real controller and nats-server, an
// agent whose volume role keeps files of the native engine): the volume's data becomes the image,
// shown as openstackclient shows Cinder's answer; the volume is available again and the image active;
// options that make no sense with --volume, and a volume in use without --force, are refused clearly.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { eventually, startAgent, type TestAgent } from '../../helpers/agents.js'
import { startCloud, type TestCloud } from '../../helpers/cloud.js'
import type { TestContext } from '../../helpers/tap.js'
import { FileVolumeDriver } from '../../../agent/volume/file.js'
import { adminAndDemo, failsWith, fields, removeHomes, strato, succeeds } from './cli.js'

let cloud: TestCloud
let agent: TestAgent<FileVolumeDriver>
let demo: Record<string, string>
const dir = mkdtempSync(path.join(tmpdir(), 'strato-cli-upload-'))

t.before(async () => {
  cloud = await startCloud({ hosts: [] })
  agent = await startAgent(cloud.nats.url, 'node1', { powerSyncIntervalMs: 200, ...(cloud.s.caFile ? { caFile: cloud.s.caFile } : {}), volumeDriver: new FileVolumeDriver({ dir: path.join(dir, 'volumes'), host: 'node1' }) })
  await eventually(async () => (await cloud.s.controller.hosts.discover(), (await cloud.s.controller.db.selectFrom('volume_backends').selectAll().execute()).length === 1), 10_000, 'the volume backend')
  ;({ demo } = await adminAndDemo(cloud.s.openrc))
})
t.teardown(async () => {
  await agent?.stop()
  await cloud?.close()
  removeHomes()
  rmSync(dir, { recursive: true, force: true })
})

const ok = (t: TestContext, line: string | string[]) => succeeds(t, line, demo)
const show = async (noun: string, ref: string, column: string) => (await strato([noun, 'show', ref, '-f', 'value', '-c', column], demo)).stdout.trim()

t.test('image create --volume: the volume uploading, then available; the image active', async (t) => {
  await ok(t, 'volume create --size 1 --image cirros disk1')
  await eventually(async () => (await show('volume', 'disk1', 'status')) === 'available', 20_000, 'disk1 available')
  const f = fields(await ok(t, 'image create --volume disk1 --disk-format qcow2 disk1-image'))
  t.same(Object.keys(f), ['container_format', 'disk_format', 'display_description', 'id', 'image_id', 'image_name', 'protected', 'size', 'status', 'updated_at', 'visibility', 'volume_type'], 'openstackclient\'s fields of Cinder\'s answer')
  t.match(f, { image_name: 'disk1-image', disk_format: 'qcow2', container_format: 'bare', status: 'uploading', size: '1', volume_type: '__DEFAULT__', visibility: 'private' })
  await eventually(async () => (await show('image', 'disk1-image', 'status')) === 'active', 30_000, 'the image active')
  await eventually(async () => (await show('volume', 'disk1', 'status')) === 'available', 20_000, 'disk1 available again')
  t.equal(await show('image', 'disk1-image', 'id'), f.image_id, 'the image the answer named')
})

t.test('refusals: options that do not go with --volume, --force without it, an unknown volume', async (t) => {
  let r = await failsWith(t, 'image create --volume disk1 --file /etc/hostname x', 2, demo)
  t.match(r.stderr, /--file cannot be used with --volume/)
  r = await failsWith(t, 'image create --force x', 2, demo)
  t.match(r.stderr, /--force is only meaningful with --volume/)
  r = await failsWith(t, 'image create --volume nosuch x', 1, demo)
  t.match(r.stderr, /nosuch/)
  r = await failsWith(t, 'image create --volume disk1 --disk-format vmdk x', 1, demo)
  t.match(r.stderr, /disk_format must be raw or qcow2/)
  t.equal((await strato(['image', 'list', '-f', 'value', '-c', 'Name'], demo)).stdout.split('\n').filter((n) => n === 'x').length, 0, 'no image made')
})
