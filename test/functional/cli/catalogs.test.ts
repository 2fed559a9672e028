// The `strato` CLI over the catalogs (images, flavors, keypairs, networks,
// subnets, ports, floating IPs, security groups, quotas), against a real
// controller: the seed's catalog commands in order with their output, image
// upload and download, name-or-id lookups, and one-line errors.
import { execFile, execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { run } from '../../../cli/strato/main.js'
import { startController, type TestController } from '../../helpers/controller.js'
import type { TestContext } from '../../helpers/tap.js'
import { failsWith, fields, freshHome, openrcEnv, removeHomes, repoRoot, spawnStrato, strato, stratoBin, succeeds, type Result } from './cli.js'

let s: TestController
let env: Record<string, string>
let home: string
let work: string
/** A qcow2 made by qemu-img from a 3 MiB raw disk with data at both ends (the seed's cirros stand-in). */
let qcow2: string
let raw: string
const RAW_BYTES = 3 << 20

t.before(async () => {
  s = await startController()
  home = freshHome()
  env = openrcEnv(s.openrc, home)
  work = freshHome()
  raw = path.join(work, 'disk.raw')
  const disk = Buffer.alloc(RAW_BYTES)
  randomBytes(65536).copy(disk, 0)
  randomBytes(65536).copy(disk, RAW_BYTES - 65536)
  writeFileSync(raw, disk)
  qcow2 = path.join(work, 'cirros-0.3.4-x86_64-disk.img')
  execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2])
})
t.teardown(async () => {
  await s.close()
  removeHomes()
})

const ok = (t: TestContext, line: string | string[], e: Record<string, string | undefined> = env): Promise<string> => succeeds(t, line, e)
const fails = (t: TestContext, line: string | string[], code: number, e: Record<string, string | undefined> = env): Promise<Result> => failsWith(t, line, code, e)
const md5 = (file: string) => createHash('md5').update(readFileSync(file)).digest('hex')
const header = (table: string) => table.split('\n')[1]
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

t.test("the seed's catalog commands, in order, as typed", async (t) => {
  // image create "cirros" --file cirros-0.3.4-x86_64-disk.img --disk-format qcow2 --container-format bare --public
  const image = fields(await ok(t, ['image', 'create', 'cirros', '--file', qcow2, '--disk-format', 'qcow2', '--container-format', 'bare', '--public']))
  t.same(
    Object.keys(image),
    ['checksum', 'container_format', 'created_at', 'disk_format', 'file', 'id', 'min_disk', 'min_ram', 'name', 'owner', 'properties', 'protected', 'schema', 'size', 'status', 'tags', 'updated_at', 'virtual_size', 'visibility'],
    "the seed's table: the same fields, sorted (plus properties, as openstackclient adds)",
  )
  t.match(image, {
    checksum: md5(qcow2),
    container_format: 'bare',
    created_at: /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/,
    disk_format: 'qcow2',
    id: UUID,
    min_disk: '0',
    min_ram: '0',
    name: 'cirros',
    owner: /^[0-9a-f]{32}$/,
    properties: /^os_hash_algo='sha512', os_hash_value='[0-9a-f]{128}'$/,
    protected: 'False',
    schema: '/v2/schemas/image',
    size: String(readFileSync(qcow2).length),
    status: 'active',
    tags: '',
    virtual_size: String(RAW_BYTES),
    visibility: 'public',
  })
  t.equal(image.file, `/v2/images/${image.id}/file`)

  // network create --share --external --provider-physical-network provider --provider-network-type flat provider
  const net = fields(await ok(t, 'network create --share --external --provider-physical-network provider --provider-network-type flat provider'))
  t.match(net, {
    admin_state_up: 'UP', id: UUID, name: 'provider', shared: 'True', 'router:external': 'External', status: 'ACTIVE',
    'provider:network_type': 'flat', 'provider:physical_network': 'provider', 'provider:segmentation_id': 'None', subnets: '',
  })

  // subnet create --network provider --allocation-pool start=…,end=… --dns-nameserver … --gateway … --subnet-range … provider
  const subnet = fields(await ok(t, 'subnet create --network provider --allocation-pool start=192.168.201.200,end=192.168.201.210 --dns-nameserver 114.114.114.114 --gateway 192.168.201.1 --subnet-range 192.168.201.0/24 provider'))
  t.match(subnet, {
    allocation_pools: '192.168.201.200-192.168.201.210', cidr: '192.168.201.0/24', dns_nameservers: '114.114.114.114', enable_dhcp: 'True',
    gateway_ip: '192.168.201.1', ip_version: '4', name: 'provider', network_id: net.id, id: UUID,
  })
  t.match(fields(await ok(t, 'network show provider')), { subnets: subnet.id }, 'the network lists its subnet')

  // ssh-keygen -q -N "" ; keypair create --public-key ~/.ssh/id_rsa.pub mykey
  mkdirSync(path.join(home, '.ssh'), { recursive: true, mode: 0o700 })
  execFileSync('ssh-keygen', ['-q', '-N', '', '-t', 'rsa', '-b', '2048', '-f', path.join(home, '.ssh', 'id_rsa')])
  const md5Fingerprint = execFileSync('ssh-keygen', ['-l', '-E', 'md5', '-f', path.join(home, '.ssh', 'id_rsa.pub')], { encoding: 'utf8' }).split(' ')[1]!.replace(/^MD5:/, '')
  const key = fields(await ok(t, 'keypair create --public-key ~/.ssh/id_rsa.pub mykey'))
  t.match(key, { name: 'mykey', type: 'ssh', fingerprint: md5Fingerprint, user_id: /^[0-9a-f]{32}$/ })
  const keys = await ok(t, 'keypair list')
  t.match(header(keys), /^\| Name +\| Fingerprint +\| Type \|$/)
  t.match(keys, new RegExp(`\\| mykey \\| ${md5Fingerprint} \\| ssh  \\|`))
  t.equal(await ok(t, 'keypair show --public-key mykey'), readFileSync(path.join(home, '.ssh', 'id_rsa.pub'), 'utf8').trim() + '\n')

  // security group rule create --proto icmp default; … --proto tcp --dst-port 22 default
  const icmp = fields(await ok(t, 'security group rule create --proto icmp default'))
  t.match(icmp, { direction: 'ingress', ether_type: 'IPv4', protocol: 'icmp', remote_ip_prefix: '0.0.0.0/0', port_range_min: 'None', port_range_max: 'None', id: UUID })
  const ssh = fields(await ok(t, 'security group rule create --proto tcp --dst-port 22 default'))
  t.match(ssh, { direction: 'ingress', ether_type: 'IPv4', protocol: 'tcp', port_range_min: '22', port_range_max: '22', remote_ip_prefix: '0.0.0.0/0', security_group_id: icmp.security_group_id })

  // flavor create --id 0 --vcpus 1 --ram 512 --disk 20 m1.small
  const flavor = fields(await ok(t, 'flavor create --id 0 --vcpus 1 --ram 512 --disk 20 m1.small'))
  t.match(flavor, { id: '0', name: 'm1.small', vcpus: '1', ram: '512', disk: '20', 'OS-FLV-EXT-DATA:ephemeral': '0', 'os-flavor-access:is_public': 'True', swap: '0' })

  // flavor list; image list; network list; security group list
  const flavors = await ok(t, 'flavor list')
  t.match(header(flavors), /^\| ID \| Name +\| RAM \| Disk \| Ephemeral \| VCPUs \| Is Public \|$/)
  t.match(flavors, /\| 0  \| m1\.small \| 512 \| 20   \| 0         \| 1     \| True      \|/)
  const images = await ok(t, 'image list')
  t.match(header(images), /^\| ID +\| Name +\| Status \|$/)
  t.match(images, new RegExp(`\\| ${image.id} \\| cirros \\| active \\|`))
  const nets = await ok(t, 'network list')
  t.match(header(nets), /^\| ID +\| Name +\| Subnets +\|$/)
  t.match(nets, new RegExp(`\\| ${net.id} \\| provider \\| ${subnet.id} \\|`))
  const groups = await ok(t, 'security group list')
  t.match(header(groups), /^\| ID +\| Name +\| Description +\| Project +\| Tags \|$/)
  t.match(groups, new RegExp(`\\| ${icmp.security_group_id} \\| default \\| Default security group \\|`))
  const rules = await ok(t, 'security group rule list default -f json')
  const parsed = JSON.parse(rules) as Array<Record<string, unknown>>
  t.match(parsed.find((r) => r.ID === ssh.id), { 'IP Protocol': 'tcp', 'Port Range': '22:22', 'IP Range': '0.0.0.0/0', Direction: 'ingress' })
  t.match(parsed.find((r) => r.ID === icmp.id), { 'IP Protocol': 'icmp', 'Port Range': '' })
})

t.test('image save round-trips the bytes; set, unset, paging, delete', async (t) => {
  const out = path.join(work, 'saved.img')
  t.equal(await ok(t, ['image', 'save', '--file', out, 'cirros']), '')
  t.ok(readFileSync(out).equals(readFileSync(qcow2)), 'the saved file is byte for byte the uploaded one')

  const id = (await ok(t, ['image', 'create', 'raw-one', '--file', raw, '--disk-format', 'raw', '--private', '--min-disk', '1', '--property', 'os_distro=cirros', '--tag', 'seed', '-f', 'value', '-c', 'id'])).trim()
  t.match(id, UUID)
  await ok(t, 'image set --name raw-two --protected --property hw_disk_bus=virtio --tag extra --min-ram 64 raw-one')
  const shown = fields(await ok(t, `image show ${id}`))
  t.match(shown, { name: 'raw-two', protected: 'True', min_disk: '1', min_ram: '64', tags: 'extra, seed', visibility: 'private', checksum: md5(raw) })
  t.match(shown.properties, /hw_disk_bus='virtio'/)
  t.match(shown.properties, /os_distro='cirros'/)
  const refused = await fails(t, 'image delete raw-two', 1)
  t.match(refused.stderr, /^Failed to delete image with name or ID 'raw-two': image .* is protected/)
  await ok(t, 'image unset --property os_distro --tag seed raw-two')
  const after = fields(await ok(t, 'image show raw-two'))
  t.notMatch(after.properties, /os_distro/)
  t.equal(after.tags, 'extra')

  // Three more images, listed one page at a time with --limit/--marker, and all at once without.
  for (const n of ['page-a', 'page-b', 'page-c']) await ok(t, `image create ${n} --disk-format raw`)
  const all = (await ok(t, 'image list -f value -c Name')).trim().split('\n')
  t.same(all, ['cirros', 'page-a', 'page-b', 'page-c', 'raw-two'], 'every image, sorted by name')
  const first = (await ok(t, 'image list --limit 2 -f value -c ID')).trim().split('\n')
  t.equal(first.length, 2, '--limit 2 gives two')
  const next = (await ok(t, `image list --limit 10 --marker ${first[1]} -f value -c ID`)).trim().split('\n')
  t.equal(next.length, 3, 'the rest after the marker')
  t.notOk(next.some((x) => first.includes(x)), 'no image on both pages')
  t.match(await ok(t, 'image list --private -f value -c Name'), /^raw-two\n$/, '--private')
  t.match(await ok(t, 'image list --status queued -f value -c Name'), /^page-a\npage-b\npage-c\n$/, '--status')
  t.match(await ok(t, 'image list --tag extra --long -f json'), /"Tags": \[\s*"extra"\s*\]/)

  await ok(t, 'image set --unprotected raw-two')
  t.equal(await ok(t, 'image delete raw-two page-a page-b page-c'), '')
  t.same((await ok(t, 'image list -f value -c Name')).trim().split('\n'), ['cirros'])
})

t.test('image upload: a progress bar on a terminal for a large file, none otherwise', async (t) => {
  const big = path.join(work, 'big.raw')
  writeFileSync(big, randomBytes(9 << 20))
  const runWith = async (line: string[], tty: boolean): Promise<Result> => {
    let stdout = ''
    let stderr = ''
    const code = await run(line, env, { stdout: (x) => void (stdout += x), stderr: (x) => void (stderr += x), stderrIsTTY: tty })
    return { code, stdout, stderr }
  }
  const onTty = await runWith(['image', 'create', 'big-tty', '--file', big, '--disk-format', 'raw', '-f', 'value', '-c', 'size'], true)
  t.equal(onTty.code, 0, onTty.stderr)
  t.equal(onTty.stdout, `${9 << 20}\n`)
  t.match(onTty.stderr, /\r\[=+\] 100% 9\.0\/9\.0 MiB\n$/, 'the bar ends at 100% and a newline')
  const piped = await runWith(['image', 'create', 'big-pipe', '--file', big, '--disk-format', 'raw', '-f', 'value', '-c', 'checksum'], false)
  t.equal(piped.code, 0)
  t.equal(piped.stderr, '', 'no bar when stderr is not a terminal')
  t.equal(piped.stdout.trim(), md5(big))
  const small = await runWith(['image', 'create', 'small-tty', '--file', raw, '--disk-format', 'raw', '-f', 'value', '-c', 'status'], true)
  t.equal(small.stderr, '', 'no bar for a small file')
  await ok(t, 'image delete big-tty big-pipe small-tty')
})

t.test('shared images: add project, member list, accept as the member', async (t) => {
  await ok(t, 'project create demo')
  await ok(t, 'user create --password demo-pw --project demo demo')
  await ok(t, 'role add --project demo --user demo member')
  const demo = { ...env, OS_USERNAME: 'demo', OS_PASSWORD: 'demo-pw', OS_PROJECT_NAME: 'demo' }
  const img = fields(await ok(t, ['image', 'create', 'shared-img', '--file', raw, '--disk-format', 'raw', '--shared']))
  const member = fields(await ok(t, 'image add project shared-img demo'))
  const demoId = fields(await ok(t, 'project show demo')).id
  t.match(member, { image_id: img.id, member_id: demoId, status: 'pending', schema: '/v2/schemas/member' })
  t.match(await ok(t, 'image member list shared-img -f value'), new RegExp(`^${img.id} ${demoId} pending\n$`))
  t.notMatch(await ok(t, 'image list -f value -c Name', demo), /shared-img/, 'pending: not in the member\'s list')
  await ok(t, 'image set --accept shared-img', demo)
  t.match(await ok(t, 'image list -f value -c Name', demo), /^cirros\nshared-img\n$/m, 'accepted: listed')
  t.match(await ok(t, 'image member list shared-img -f value -c Status'), /^accepted\n$/)
  await ok(t, 'image remove project shared-img demo')
  t.equal(await ok(t, 'image member list shared-img'), '')
  await ok(t, 'image delete shared-img')

  // Flavor access: a private flavor is visible to the projects given access.
  await ok(t, 'flavor create --private --vcpus 2 --ram 1024 --disk 10 --property hw:cpu_policy=dedicated m1.private')
  t.notMatch(await ok(t, 'flavor list', demo), /m1\.private/)
  await ok(t, 'flavor set --project demo m1.private')
  t.match(fields(await ok(t, 'flavor show m1.private')), { access_project_ids: demoId, properties: "hw:cpu_policy='dedicated'" })
  t.match(await ok(t, 'flavor show m1.private -f json', demo), /"os-flavor-access:is_public": false/, "the member sees the flavor it was given")
  await ok(t, 'flavor unset --project demo --property hw:cpu_policy m1.private')
  t.match(fields(await ok(t, 'flavor show m1.private')), { properties: '' })
  t.match(await ok(t, 'flavor list --all -f value -c Name'), /m1\.private/)
  t.match(await ok(t, 'flavor list --private -f value -c Name'), /^m1\.private\n$/)
  await ok(t, 'flavor delete m1.private')

  // A generated keypair: the private key is the output, shown once.
  const generated = await ok(t, 'keypair create demokey', demo)
  t.match(generated, /^-----BEGIN OPENSSH PRIVATE KEY-----\n[\s\S]+-----END OPENSSH PRIVATE KEY-----\n$/)
  t.match(await ok(t, 'keypair list -f value', demo), /^demokey [0-9a-f:]{47} ssh\n$/, 'keypairs belong to their user')
  await ok(t, 'keypair delete demokey', demo)
})

t.test('ports, floating IPs, quotas', async (t) => {
  await ok(t, 'network create private')
  await ok(t, 'subnet create --network private --subnet-range 10.0.0.0/24 --host-route destination=10.9.0.0/16,gateway=10.0.0.254 --no-dhcp private-subnet')
  const sub = fields(await ok(t, 'subnet show private-subnet'))
  t.match(sub, { gateway_ip: '10.0.0.1', allocation_pools: '10.0.0.2-10.0.0.254', enable_dhcp: 'False', host_routes: "destination='10.9.0.0/16', gateway='10.0.0.254'" })
  const port = fields(await ok(t, 'port create --network private --fixed-ip subnet=private-subnet,ip-address=10.0.0.50 --security-group default p1'))
  t.match(port, { name: 'p1', fixed_ips: `ip_address='10.0.0.50', subnet_id='${sub.id}'`, mac_address: /^fa:16:3e(:[0-9a-f]{2}){3}$/, status: 'DOWN', admin_state_up: 'UP' })
  t.match(await ok(t, "port list --network private -f value -c Name -c 'Fixed IP Addresses'"), /^p1 ip_address='10\.0\.0\.50'/)

  // A floating IP goes through a router (its gateway takes an address outside the pool).
  await ok(t, 'router create r1 --external-gateway provider --fixed-ip ip-address=192.168.201.50')
  await ok(t, 'router add subnet r1 private-subnet')
  const fip = fields(await ok(t, 'floating ip create provider --port p1'))
  t.match(fip, { floating_ip_address: '192.168.201.200', fixed_ip_address: '10.0.0.50', port_id: port.id, status: 'ACTIVE' }, 'the first address of the pool')
  await ok(t, 'floating ip unset --port 192.168.201.200')
  t.match(fields(await ok(t, `floating ip show ${fip.id}`)), { port_id: 'None', status: 'DOWN' })
  await ok(t, 'floating ip set --port p1 192.168.201.200')
  const fips = await ok(t, 'floating ip list')
  t.match(header(fips), /^\| ID +\| Floating IP Address \| Fixed IP Address \| Port +\| Floating Network +\| Project +\|$/)
  t.match(fips, new RegExp(`\\| ${fip.id} \\| 192\\.168\\.201\\.200 +\\| 10\\.0\\.0\\.50 +\\| ${port.id} \\|`))
  await ok(t, 'floating ip delete 192.168.201.200')
  await ok(t, 'port delete p1')
  await ok(t, 'router remove subnet r1 private-subnet')
  await ok(t, 'router delete r1')
  t.equal(await ok(t, 'port list'), '')

  const quota = await ok(t, 'quota show')
  t.match(header(quota), /^\| Resource +\| Limit +\|$/)
  t.match(quota, /\| instances +\| 10 +\|/)
  t.match(quota, /\| secgroup-rules +\| 100 +\|/)
  await ok(t, 'quota set --instances 5 --key-pairs 7 --networks -1 admin')
  const admin = await ok(t, 'quota show admin --usage -f json')
  const rows = JSON.parse(admin) as Array<{ Resource: string; Limit: number; 'In Use': number }>
  t.match(rows.find((r) => r.Resource === 'instances'), { Limit: 5, 'In Use': 0 })
  t.match(rows.find((r) => r.Resource === 'key-pairs'), { Limit: 7 })
  t.match(rows.find((r) => r.Resource === 'networks'), { Limit: -1, 'In Use': 2 })
  t.match(rows.find((r) => r.Resource === 'secgroup-rules'), { 'In Use': Number })
  t.match(await ok(t, 'quota show --default -f value'), /^instances 10$/m, '--default: the defaults')

  await ok(t, 'subnet delete private-subnet')
  await ok(t, 'network delete private')
})

t.test('security groups and rules, network and subnet set', async (t) => {
  const web = fields(await ok(t, "security group create --description 'web tier' web"))
  t.match(web, { name: 'web', description: 'web tier', stateful: 'True', id: UUID })
  const ping6 = fields(await ok(t, 'security group rule create --proto icmp --ethertype IPv6 --icmp-type 128 --icmp-code 0 web'))
  t.match(ping6, { protocol: 'ipv6-icmp', ether_type: 'IPv6', port_range_min: '128', port_range_max: '0', remote_ip_prefix: '::/0' })
  const fromDefault = fields(await ok(t, 'security group rule create --proto tcp --dst-port 8000:8080 --remote-group default web'))
  const defaultId = fields(await ok(t, 'security group show default')).id
  t.match(fromDefault, { port_range_min: '8000', port_range_max: '8080', remote_group_id: defaultId, remote_ip_prefix: 'None' })
  const out = fields(await ok(t, 'security group rule create --egress --proto udp --dst-port 53 --remote-ip 10.0.0.0/8 web'))
  t.match(out, { direction: 'egress', protocol: 'udp', remote_ip_prefix: '10.0.0.0/8' })
  t.match(fields(await ok(t, `security group rule show ${out.id}`)), { id: out.id, security_group_id: web.id })
  const listed = await ok(t, "security group rule list web --egress -f value -c 'IP Protocol' -c 'Port Range'")
  t.match(listed, /^udp 53:53$/m)
  t.notMatch(listed, /^tcp/m, '--egress filters')
  t.match(await ok(t, 'security group rule list -f json'), new RegExp(`"Security Group": "${web.id}"`), 'without a group: the group column')
  t.match(await ok(t, 'security group show web'), /^\| +\| .*protocol='ipv6-icmp'/m, 'rules: one per line')
  await ok(t, `security group rule delete ${out.id}`)
  t.notMatch(await ok(t, 'security group rule list web'), new RegExp(out.id!))
  await ok(t, 'security group set --name web2 --description tier web')
  t.match(fields(await ok(t, `security group show ${web.id}`)), { name: 'web2', description: 'tier' })
  await ok(t, 'security group delete web2')
  t.match((await fails(t, 'security group show web2', 1)).stderr, /^No security group with a name or ID of 'web2' exists\.\n$/)

  await ok(t, 'network create --disable --description scratch scratch')
  await ok(t, 'subnet create --network scratch --subnet-range 172.16.0.0/24 --gateway none --dns-nameserver 1.1.1.1 scratch-v4')
  t.match(fields(await ok(t, 'subnet show scratch-v4')), { gateway_ip: 'None', allocation_pools: '172.16.0.1-172.16.0.254' })
  await ok(t, 'subnet set --gateway 172.16.0.1 --no-allocation-pool --allocation-pool start=172.16.0.10,end=172.16.0.20 --dns-nameserver 8.8.8.8 --no-dhcp scratch-v4')
  t.match(fields(await ok(t, 'subnet show scratch-v4')), { gateway_ip: '172.16.0.1', allocation_pools: '172.16.0.10-172.16.0.20', dns_nameservers: '1.1.1.1, 8.8.8.8', enable_dhcp: 'False' })
  await ok(t, 'network set --name scratch2 --enable --description again scratch')
  t.match(fields(await ok(t, 'network show scratch2')), { admin_state_up: 'UP', description: 'again' })
  t.match(await ok(t, 'network list --external -f value -c Name'), /^provider\n$/, '--external')
  t.match(await ok(t, 'subnet list --network scratch2 -f value -c Name -c Subnet'), /^scratch-v4 172\.16\.0\.0\/24\n$/)
  await ok(t, 'network delete scratch2')
  t.equal(await ok(t, 'subnet list --network provider -f value -c Name'), 'provider\n', "the network's subnets went with it")
})

t.test('errors: one line on stderr, a non-zero exit, nothing changed', async (t) => {
  const badFormat = await fails(t, ['image', 'create', 'x', '--file', qcow2, '--disk-format', 'qcow3', '--container-format', 'bare'], 2)
  t.match(badFormat.stderr, /^strato image create: argument --disk-format: invalid choice: 'qcow3' \(choose from .*'qcow2'.*\)\n$/)

  const mismatch = await fails(t, ['image', 'create', 'liar', '--file', raw, '--disk-format', 'qcow2'], 1)
  t.equal(mismatch.stderr, "the uploaded data is raw but the image's disk_format is qcow2; it was discarded\n")
  t.notMatch(await ok(t, 'image list'), /liar/, 'the refused image is not left behind')

  const missing = await fails(t, ['image', 'create', 'nofile', '--file', path.join(work, 'nope.img')], 1)
  t.match(missing.stderr, /^cannot read --file .*nope\.img: no such file\n$/)

  const badCidr = await fails(t, 'subnet create --network provider --subnet-range 10.0.0.0/33 bad', 1)
  t.match(badCidr.stderr, /10\.0\.0\.0\/33.*prefix/)
  const outside = await fails(t, 'subnet create --network provider --subnet-range 10.1.0.0/24 --allocation-pool start=10.2.0.5,end=10.2.0.9 bad', 1)
  t.equal(outside.stderr, 'allocation pool 10.2.0.5-10.2.0.9 is outside the usable addresses of 10.1.0.0/24 (10.1.0.1-10.1.0.254)\n')
  const halfPool = await fails(t, 'subnet create --network provider --subnet-range 10.1.0.0/24 --allocation-pool start=10.1.0.5 bad', 2)
  t.match(halfPool.stderr, /^strato subnet create: --allocation-pool 'start=10\.1\.0\.5' lacks end/)
  const noNet = await fails(t, 'subnet create --subnet-range 10.1.0.0/24 bad', 2)
  t.match(noNet.stderr, /give the network with --network/)
  t.notMatch(await ok(t, 'subnet list'), /\| bad /, 'no subnet was made')

  const dup = await fails(t, 'security group rule create --proto tcp --dst-port 22 default', 1)
  t.match(dup.stderr, /^security group [0-9a-f-]{36} already has this rule \([0-9a-f-]{36}\)\n$/)
  const icmpPort = await fails(t, 'security group rule create --proto icmp --dst-port 22 default', 2)
  t.match(icmpPort.stderr, /--icmp-type and --icmp-code/)

  t.equal((await fails(t, 'flavor show m1.huge', 1)).stderr, "No flavor with a name or ID of 'm1.huge' exists.\n")
  t.equal((await fails(t, 'network show nowhere', 1)).stderr, "No network with a name or ID of 'nowhere' exists.\n")
  t.equal((await fails(t, 'floating ip show 203.0.113.9', 1)).stderr, "No floating IP with an address or ID of '203.0.113.9' exists.\n")
  t.match((await fails(t, 'security group rule delete 00000000-0000-4000-8000-000000000000', 1)).stderr, /^Failed to delete rule with name or ID '00000000-0000-4000-8000-000000000000': /)
  t.match((await fails(t, 'flavor create --vcpus many --ram 512 x', 2)).stderr, /^strato flavor create: --vcpus must be an integer/)
  t.match((await fails(t, 'flavor create --id 0 --vcpus 1 --ram 512 --disk 20 m1.small', 1)).stderr, /already exists/)
  t.match((await fails(t, 'keypair create --public-key ~/.ssh/missing.pub k2', 1)).stderr, /^Key file ~\/\.ssh\/missing\.pub not found: ENOENT\n$/)
  t.match((await fails(t, 'image save cirros', 2)).stderr, /--file/)
  await ok(t, 'image create empty --disk-format raw')
  const noData = await fails(t, ['image', 'save', '--file', path.join(work, 'empty.img'), 'empty'], 1)
  t.match(noData.stderr, /^image [0-9a-f-]{36} has no data yet \(it is queued\)\n$/)
  t.notOk(existsSync(path.join(work, 'empty.img')), 'no file written')
  t.same(readdirSync(work).filter((f) => f.includes('.part-')), [], 'no partial file left')
  await ok(t, 'image delete empty')
})

t.test('help and completion know the new nouns', async (t) => {
  t.match(await ok(t, 'help image create'), /^usage: strato image create .*\[--disk-format <disk-format>\].*<image-name>/)
  t.match(await ok(t, 'security group rule create --help'), /--dst-port <port-range>/)
  const nouns = await ok(t, 'help floating ip')
  for (const v of ['create', 'delete', 'list', 'set', 'show', 'unset']) t.match(nouns, new RegExp(`floating ip ${v} `))
  const global = await ok(t, '--help')
  for (const c of ['flavor create', 'keypair create', 'image save', 'network create', 'subnet create', 'port create', 'security group rule create', 'quota set']) t.match(global, c)
  const script = await ok(t, 'complete')
  t.match(script, /\['security group'\]='create delete list rule set show'/)
  t.match(script, /\['image'\]='add create delete list member remove save set show unset'/)
})

t.test('real processes: the seed lines exit 0 and print their tables', async (t) => {
  const flavors = await spawnStrato('flavor list', env)
  t.equal(flavors.code, 0, flavors.stderr)
  t.match(flavors.stdout, /\| 0  \| m1\.small \| 512 \| 20 /)
  const groups = await spawnStrato('security group list -f value -c Name', env)
  t.equal(groups.code, 0, groups.stderr)
  t.match(groups.stdout, /^default\n/)
  const dup = await spawnStrato('security group rule create --proto icmp default', env)
  t.equal(dup.code, 1)
  t.equal(dup.stdout, '')
  t.match(dup.stderr, /^security group .* already has this rule .*\n$/)
  const out = path.join(work, 'proc-saved.img')
  const saved = await spawnStrato(['image', 'save', '--file', out, 'cirros'], env)
  t.equal(saved.code, 0, saved.stderr)
  t.ok(existsSync(out) && readFileSync(out).equals(readFileSync(qcow2)), 'image save from a process writes the same bytes')

  // The progress bar follows the real stderr: none into a pipe, drawn on a terminal (script(1) gives the process a pty).
  const big = path.join(work, 'big-proc.raw')
  writeFileSync(big, randomBytes(9 << 20))
  const piped = await spawnStrato(['image', 'create', 'proc-pipe', '--file', big, '--disk-format', 'raw', '-f', 'value', '-c', 'status'], env)
  t.equal(piped.code, 0, piped.stderr)
  t.equal(piped.stdout, 'active\n')
  t.equal(piped.stderr, '', 'no progress bar into a pipe')
  const line = `node ${stratoBin()} image create proc-tty --file ${big} --disk-format raw -f value -c status`
  const tty = await promisify(execFile)('script', ['-qec', line, '/dev/null'], { cwd: repoRoot, env, encoding: 'utf8' })
  t.match(tty.stdout, /\r\[=+\] 100% 9\.0\/9\.0 MiB\r?\n/, 'a progress bar on the terminal')
  t.match(tty.stdout, /^active\r?$/m)
  t.equal(await ok(t, 'image delete proc-pipe proc-tty'), '')
})
