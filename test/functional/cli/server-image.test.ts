// `strato server image create` (openstackclient's, Nova's createImage) in process against a small
// cloud on the fake driver: the image's `image show` fields, --wait, the default name, --property,
// and clean failures.
import t from 'tap'
import { eventually } from '../../helpers/agents.js'
import { startCloud, type TestCloud } from '../../helpers/cloud.js'
import type { TestContext } from '../../helpers/tap.js'
import { adminAndDemo, failsWith, fields, removeHomes, strato, succeeds } from './cli.js'

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

t.test('server image create --wait: an active image shown with image show\'s fields', async (t) => {
  await ok(t, ['server', 'create', '--flavor', 'm1.nano', '--image', 'cirros', '--nic', `net-id=${cloud.network.id}`, '--wait', 'web1'])
  const out = await ok(t, ['server', 'image', 'create', '--name', 'web1-snap', '--property', 'purpose=backup', '--wait', 'web1'])
  const f = fields(out)
  const shown = fields(await ok(t, ['image', 'show', 'web1-snap']))
  t.same(Object.keys(f), Object.keys(shown), "the columns of openstackclient's image show")
  t.match(f, { name: 'web1-snap', status: 'active', disk_format: 'qcow2', container_format: 'bare', visibility: 'private', checksum: /^[0-9a-f]{32}$/ })
  t.match(f.properties, /image_type='snapshot'/)
  t.match(f.properties, /purpose='backup'/)
  t.match(f.properties, /instance_uuid='[0-9a-f-]{36}'/)
  t.equal(f.id, shown.id)
  // The image is active once its data is uploaded; the server's task clears when the host's result
  // for the snapshot reaches the controller, which may come a moment after.
  const server = await eventually(async () => {
    const f = fields(await ok(t, ['server', 'show', 'web1']))
    return f['OS-EXT-STS:task_state'] === 'None' ? f : undefined
  }, 30_000, "web1's task cleared after the snapshot")
  t.match(server, { status: 'ACTIVE', 'OS-EXT-STS:task_state': 'None', 'OS-EXT-STS:power_state': 'Running' }, 'the server runs on, its task cleared')
})

t.test('without --name the image takes the server\'s name; without --wait it is shown as it is now', async (t) => {
  const out = await ok(t, ['server', 'image', 'create', 'web1', '-f', 'value', '-c', 'name', '-c', 'status'])
  const [name, status] = out.trim().split('\n')
  t.equal(name, 'web1')
  t.match(status, /^(queued|saving|active)$/)
  // The snapshot finishes on its own.
  for (let i = 0; i < 100; i++) {
    const s = (await strato(['server', 'show', 'web1', '-f', 'value', '-c', 'OS-EXT-STS:task_state'], demo)).stdout.trim()
    if (s === 'None') break
    await new Promise((r) => setTimeout(r, 100))
  }
  t.equal((await strato(['image', 'list', '--name', 'web1', '-f', 'value', '-c', 'Status'], demo)).stdout.trim(), 'active')
})

t.test('bad input fails cleanly and changes nothing', async (t) => {
  const before = (await strato(['image', 'list', '-f', 'value', '-c', 'ID'], demo)).stdout
  const missing = await failsWith(t, ['server', 'image', 'create', 'no-such-server'], 1, demo)
  t.match(missing.stderr, /No server with a name or ID of 'no-such-server' exists/)
  const badProp = await failsWith(t, ['server', 'image', 'create', '--property', 'novalue', 'web1'], 2, demo)
  t.match(badProp.stderr, /--property/)
  await ok(t, ['server', 'stop', 'web1'])
  for (let i = 0; i < 100; i++) {
    if ((await strato(['server', 'show', 'web1', '-f', 'value', '-c', 'OS-EXT-STS:task_state'], demo)).stdout.trim() === 'None') break
    await new Promise((r) => setTimeout(r, 100))
  }
  await ok(t, ['server', 'delete', '--wait', 'web1'])
  t.equal((await strato(['image', 'list', '-f', 'value', '-c', 'ID'], demo)).stdout, before, 'no image was made')
})
