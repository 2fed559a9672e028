// The seed's walkthrough as a user pastes it into bash: `openstack`
// replaced by `strato` (a real process each time), `. admin-openrc` and
// `. demo-openrc` sourced, `ssh-keygen -q -N ""` run for real, each step's
// output checked, up to the seed's server on the provider network, booted by
// fake-driver agents node1 and node2 once `host discover` has mapped them.
import { execFile, execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { startAgent, type TestAgent } from '../../helpers/agents.js'
import { startController, type TestController } from '../../helpers/controller.js'
import { startNats, type NatsServer } from '../../helpers/nats.js'
import { fields, freshHome, removeHomes, stratoBin } from './cli.js'

let nats: NatsServer
let s: TestController
const agents: TestAgent[] = []
t.before(async () => {
  nats = await startNats()
  s = await startController({ natsUrl: nats.url })
  for (const host of ['node1', 'node2']) agents.push(await startAgent(nats.url, host))
})
t.teardown(async () => {
  for (const a of agents) await a.stop()
  await s.close()
  await nats.stop()
  removeHomes()
})

/** Each step of the walkthrough, as typed in the seed (line continuations kept). */
const STEPS: Array<[string, string]> = [
  ['image', `openstack image create "cirros" \\
  --file cirros-0.3.4-x86_64-disk.img \\
  --disk-format qcow2 --container-format bare \\
  --public`],
  ['network', `openstack network create  --share --external \\
  --provider-physical-network provider \\
  --provider-network-type flat provider`],
  ['subnet', `openstack subnet create --network provider \\
  --allocation-pool start=192.168.201.200,end=192.168.201.210 \\
  --dns-nameserver 114.114.114.114 --gateway 192.168.201.1 \\
  --subnet-range 192.168.201.0/24 provider`],
  // The seed's fix for "Host is not mapped to any cell".
  ['discover', 'strato host discover --verbose # nova-manage cell_v2 discover_hosts --verbose'],
  ['demo', `. demo-openrc
ssh-keygen -q -N ""`],
  ['keypair', 'openstack keypair create --public-key ~/.ssh/id_rsa.pub mykey'],
  ['keypair list', 'openstack keypair list # 验证'],
  ['icmp', 'openstack security group rule create --proto icmp default # Permit ICMP (ping)'],
  ['ssh', 'openstack security group rule create --proto tcp --dst-port 22 default # 允许安全 shell (SSH) 的访问'],
  ['flavor list', 'openstack flavor list         # 查看可用类型'],
  ['image list', 'openstack image list          # 查看可用镜像'],
  ['network list', 'openstack network list        # 查看可用的网络 -----> 获取 PROVIDER_NET_ID'],
  ['security group list', 'openstack security group list # 查看可用安全组'],
  // PROVIDER_NET_ID as the seed reads it off `network list`; --wait added to see the server ACTIVE.
  ['server', `PROVIDER_NET_ID=$(openstack network list --name provider -f value -c ID)
openstack server create --flavor m1.nano --image cirros \\
  --nic net-id="$PROVIDER_NET_ID" --security-group default \\
  --key-name mykey provider-instance --wait`],
  ['server list', 'openstack server list'],
  ['flavor', `. admin-openrc
openstack flavor create --id 0 --vcpus 1 --ram 512 --disk 20 m1.small`],
  ['flavor list again', 'openstack flavor list'],
]

t.test("the seed's walkthrough in bash, openstack → strato", async (t) => {
  const home = freshHome()
  const work = freshHome()
  mkdirSync(path.join(home, '.ssh'), { mode: 0o700 })
  // The seed downloads cirros; tests make their guests: a qcow2 from qemu-img.
  const raw = path.join(work, 'disk.raw')
  writeFileSync(raw, Buffer.concat([Buffer.from('strato seed disk\n'), Buffer.alloc(1 << 20)]))
  execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, path.join(work, 'cirros-0.3.4-x86_64-disk.img')])
  const openrc = (vars: Record<string, string>) => Object.entries(vars).map(([k, v]) => `export ${k}='${v}'`).join('\n') + '\n'
  writeFileSync(path.join(work, 'admin-openrc'), openrc(s.openrc))
  writeFileSync(
    path.join(work, 'demo-openrc'),
    openrc({ ...s.openrc, OS_USERNAME: 'demo', OS_PASSWORD: 'demo-password', OS_PROJECT_NAME: 'demo' }),
  )

  const script = [
    'set -e',
    // What `npx strato` runs in a checkout, callable from any directory.
    `strato() { node ${stratoBin()} "$@"; }`,
    // Where `openstack` is typed, the user types `strato`.
    'shopt -s expand_aliases',
    'alias openstack=strato',
    '. admin-openrc',
    // The demo project and user that demo-openrc speaks for.
    'strato project create demo >/dev/null',
    'strato user create --project demo --password demo-password demo >/dev/null',
    'strato role add --project demo --user demo member',
    // The install guide's m1.nano, which the seed's server create names.
    'strato flavor create --id 1 --vcpus 1 --ram 64 --disk 1 m1.nano >/dev/null',
    ...STEPS.flatMap(([name, text]) => [`echo "@@ ${name}"`, text]),
  ].join('\n')
  const started = Date.now()
  const res = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    const child = execFile('bash', ['-c', script], { cwd: work, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home }, encoding: 'utf8' }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    )
    // ssh-keygen asks where to save the key; it defaults to the passwd entry's home, not $HOME, so answer with this test's.
    child.stdin?.end(`${path.join(home, '.ssh', 'id_rsa')}\n`)
  })
  t.equal(res.code, 0, `the script runs to the end (stderr: ${res.stderr})`)
  t.notMatch(res.stderr, /error|Error/, 'nothing went wrong on stderr')
  t.comment(`${STEPS.length} steps in ${((Date.now() - started) / 1000).toFixed(1)} s`)

  const out: Record<string, string> = {}
  // Markers split the steps (ssh-keygen's prompt ends without a newline, so not only at line starts).
  for (const part of res.stdout.split('@@ ').slice(1)) {
    const nl = part.indexOf('\n')
    out[part.slice(0, nl)] = part.slice(nl + 1)
  }
  t.same(Object.keys(out), STEPS.map(([n]) => n), 'every step ran, in order')

  const image = fields(out.image ?? '')
  t.match(image, { name: 'cirros', disk_format: 'qcow2', container_format: 'bare', visibility: 'public', status: 'active', protected: 'False', virtual_size: /^\d+$/ })
  t.match(image.checksum, /^[0-9a-f]{32}$/)
  const net = fields(out.network ?? '')
  t.match(net, { name: 'provider', shared: 'True', 'router:external': 'External', 'provider:network_type': 'flat', 'provider:physical_network': 'provider' })
  const subnet = fields(out.subnet ?? '')
  t.match(subnet, { allocation_pools: '192.168.201.200-192.168.201.210', dns_nameservers: '114.114.114.114', gateway_ip: '192.168.201.1', cidr: '192.168.201.0/24', network_id: net.id })
  t.match(out.discover, /^Getting computes from cell 'cell1'\nChecking host mapping for compute host 'node1': [0-9a-f-]{36}\nCreating host mapping for compute host 'node1': [0-9a-f-]{36}\nChecking host mapping for compute host 'node2': [0-9a-f-]{36}\nCreating host mapping for compute host 'node2': [0-9a-f-]{36}\nFound 2 unmapped computes in cell: cell1\n$/, "nova-manage's lines")
  t.match(out.demo, /^Enter file in which to save the key \(.*\): $/, 'ssh-keygen -q only asks where to save the key')
  const fingerprint = execFileSync('ssh-keygen', ['-l', '-E', 'md5', '-f', path.join(home, '.ssh', 'id_rsa.pub')], { encoding: 'utf8' }).split(' ')[1]!.replace(/^MD5:/, '')
  t.match(fields(out.keypair ?? ''), { name: 'mykey', fingerprint, type: 'ssh' })
  t.match(out['keypair list'], new RegExp(`^\\+-+\\+-+\\+-+\\+\\n\\| Name  \\| Fingerprint +\\| Type \\|\\n\\+-+\\+-+\\+-+\\+\\n\\| mykey \\| ${fingerprint} \\| ssh  \\|\\n`))
  const icmp = fields(out.icmp ?? '')
  t.match(icmp, { protocol: 'icmp', direction: 'ingress', remote_ip_prefix: '0.0.0.0/0' })
  t.match(fields(out.ssh ?? ''), { protocol: 'tcp', port_range_min: '22', port_range_max: '22', security_group_id: icmp.security_group_id })
  t.equal(
    out['flavor list'],
    '+----+---------+-----+------+-----------+-------+-----------+\n| ID | Name    | RAM | Disk | Ephemeral | VCPUs | Is Public |\n+----+---------+-----+------+-----------+-------+-----------+\n| 1  | m1.nano | 64  | 1    | 0         | 1     | True      |\n+----+---------+-----+------+-----------+-------+-----------+\n',
    'the m1.nano the server create names; the seed makes m1.small later',
  )
  t.match(out['image list'], new RegExp(`\\| ${image.id} \\| cirros \\| active \\|`), 'the demo project sees the public image')
  t.match(out['network list'], new RegExp(`\\| ${net.id} \\| provider \\| ${subnet.id} \\|`), 'and the shared provider network')
  t.match(out['security group list'], new RegExp(`\\| ${icmp.security_group_id} \\| default +\\| Default security group \\|`), "and its own default group, with the seed's rules")
  const server = fields(out.server ?? '')
  t.match(server, {
    name: 'provider-instance',
    status: 'ACTIVE',
    'OS-EXT-STS:vm_state': 'active',
    'OS-EXT-STS:power_state': 'Running',
    addresses: /^provider=192\.168\.201\.2(0\d|10)$/,
    flavor: 'm1.nano (1)',
    image: `cirros (${image.id})`,
    key_name: 'mykey',
    security_groups: "name='default'",
  })
  t.notOk('adminPass' in server, 'no adminPass')
  t.match(out['server list'], new RegExp(`\\| ID +\\| Name +\\| Status \\| Networks +\\| Image +\\| Flavor +\\|\\n.*\\n\\| ${server.id} \\| provider-instance \\| ACTIVE \\| ${server.addresses!.replaceAll('.', '\\.')} \\| cirros \\| m1\\.nano \\|`))
  t.match(fields(out.flavor ?? ''), { id: '0', name: 'm1.small', vcpus: '1', ram: '512', disk: '20', 'os-flavor-access:is_public': 'True' })
  t.match(out['flavor list again'], /\| ID \| Name +\| RAM \| Disk \| Ephemeral \| VCPUs \| Is Public \|\n\+[-+]+\n\| 1  \| m1\.nano  \| 64  \| 1    \| 0         \| 1     \| True      \|\n\| 0  \| m1\.small \| 512 \| 20   \| 0         \| 1     \| True      \|/)
})
