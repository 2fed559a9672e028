// The real OpenStack clients against Strato's Image v2 REST API: Debian's python3-openstackclient
// (6.0.0) runs the seed's image commands, and openstacksdk uploads and downloads byte for byte.
// Until Keystone's REST API serves tokens, the clients take the admin token and the image
// endpoint directly (--os-auth-type admin_token; the versioned endpoint, as no catalog is read).
import { execFile, execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { startController, type TestController } from '../../helpers/controller.js'
import { openstackClient } from '../../helpers/osc.js'

const run = promisify(execFile)
let s: TestController
let tmp: string
let endpoint: string
const osc = openstackClient()

/** A clean environment: no OS_* variables or clouds.yaml of the machine's. */
const env = () => ({ PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: tmp, LANG: 'C.UTF-8' })

/**
 * `openstack …` with the admin token, in the file's shared client (test/helpers/osc.ts) or as its own
 * /usr/bin/openstack process; rejects with the client's stderr when it exits non-zero.
 */
async function openstackIn(process_: boolean, args: string[]): Promise<string> {
  const r = await osc.run(['--os-auth-type', 'admin_token', '--os-endpoint', `${endpoint}/v2`, '--os-token', s.adminToken, ...args], { env: env(), process: process_ })
  if (r.code !== 0) throw new Error(`openstack ${args.join(' ')} exited with ${r.code}: ${r.stderr}`)
  return r.stdout
}
const openstack = (...args: string[]) => openstackIn(false, args)
const openstackProcess = (...args: string[]) => openstackIn(true, args)
const json = async (...args: string[]) => JSON.parse(await openstack(...args, '-f', 'json'))

t.before(async () => {
  s = await startController()
  endpoint = `${s.controller.rest!.origin}/image`
  tmp = mkdtempSync(path.join(tmpdir(), 'strato-rest-clients-'))
})
t.teardown(async () => {
  await osc.close()
  rmSync(tmp, { recursive: true, force: true })
  await s.close()
})

t.test('openstack image create/list/show/set/save/delete (the seed\'s commands)', async (t) => {
  const raw = path.join(tmp, 'cirros.raw')
  const file = path.join(tmp, 'cirros.qcow2')
  const buf = Buffer.alloc(32 * 1024 * 1024)
  randomBytes(512 * 1024).copy(buf, 1024 * 1024)
  writeFileSync(raw, buf)
  execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, file])
  const bytes = readFileSync(file)
  const md5 = createHash('md5').update(bytes).digest('hex')

  const created = JSON.parse(await openstackProcess('image', 'create', '-f', 'json', '--file', file, '--disk-format', 'qcow2', '--container-format', 'bare', '--public', 'cirros'))
  // The client prints the POST's answer, before the data went up (as with Glance).
  t.match(created, { name: 'cirros', disk_format: 'qcow2', container_format: 'bare', visibility: 'public', status: 'queued', protected: false })
  t.match(created.properties, { 'owner_specified.openstack.object': 'images/cirros' }, 'the client\'s owner_specified properties are kept')

  const list = await json('image', 'list')
  t.same(list, [{ ID: created.id, Name: 'cirros', Status: 'active' }])

  const shown = await json('image', 'show', 'cirros')
  t.match(shown, { id: created.id, status: 'active', checksum: md5, size: bytes.length, virtual_size: 32 * 1024 * 1024, visibility: 'public', disk_format: 'qcow2' })
  t.match(shown.properties, { os_hash_algo: 'sha512', os_hash_value: createHash('sha512').update(bytes).digest('hex') })

  await openstack('image', 'set', '--property', 'os_distro=cirros', '--property', 'hw_disk_bus=virtio', '--tag', 'seed', '--min-ram', '64', 'cirros')
  const set = await json('image', 'show', 'cirros')
  t.match(set, { min_ram: 64, tags: ['seed'], properties: { os_distro: 'cirros', hw_disk_bus: 'virtio' } })
  await openstack('image', 'unset', '--property', 'hw_disk_bus', 'cirros')
  t.notOk('hw_disk_bus' in (await json('image', 'show', 'cirros')).properties)

  const out = path.join(tmp, 'saved.qcow2')
  await openstackProcess('image', 'save', '--file', out, 'cirros')
  t.ok(readFileSync(out).equals(bytes), 'image save: byte for byte')

  await openstack('image', 'delete', 'cirros')
  t.same(await json('image', 'list'), [])
})

t.test('openstacksdk: create_image from a file, download byte for byte, update, find, delete; discovery', async (t) => {
  const file = path.join(tmp, 'sdk.raw')
  writeFileSync(file, Buffer.concat([randomBytes(3 * 1024 * 1024 + 123), Buffer.alloc(1024 * 1024)]))
  const { stdout } = await run('/usr/bin/python3', [path.join(import.meta.dirname, 'image_sdk.py'), endpoint, s.adminToken, file], { env: env(), maxBuffer: 1 << 24 })
  const r = JSON.parse(stdout)
  t.same(r.discovered, [`${endpoint}/v2/`], 'keystoneauth discovers v2 behind the unversioned endpoint')
  t.same(r.versions, ['2.0', '2.1', '2.2', '2.3', '2.4', '2.5'])
  const md5 = createHash('md5').update(readFileSync(file)).digest('hex')
  t.match(r, {
    status: 'active', checksum_ok: true, hash_ok: true, size: 4 * 1024 * 1024 + 123, os_distro: 'debian', md5_property: md5,
    download_exact: true, download_md5: md5, output_exact: true, updated: [128, 'virtio'], listed: ['sdk-image'], found: true, after_delete: true,
  })
})
