/**
 * The seed's networking steps with the real `openstack` client
 * (python-openstackclient 6.0.0 from Debian, /usr/bin/openstack) against
 * Strato's Neutron REST API, checking each `-f json` answer.
 *
 * Until Keystone's REST API serves tokens, the client runs with keystoneauth's
 * `admin_token` plugin (`OS_AUTH_TYPE=admin_token OS_ENDPOINT=<origin>/network
 * OS_TOKEN=<token>`): a token issued over gRPC and the network endpoint, no
 * catalog. (`token_endpoint`, its old name, is not in this client.)
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { startController, type TestController } from '../../helpers/controller.js'
import { tenant, type Tenant } from '../network/fixtures.js'
import type { TestContext } from '../../helpers/tap.js'

const OPENSTACK = '/usr/bin/openstack'

if (!existsSync(OPENSTACK)) {
  t.plan(0, `${OPENSTACK} is not installed (Debian python3-openstackclient)`)
} else {
  let s: TestController
  let member: Tenant
  const home = mkdtempSync(path.join(tmpdir(), 'strato-osc-'))

  t.before(async () => {
    s = await startController()
    member = await tenant(s, 'demo')
  })
  t.teardown(async () => {
    await s.close()
    rmSync(home, { recursive: true, force: true })
  })

  /** Runs `openstack <args>` as the token's user; resolves to its exit code and output. */
  const osc = (args: string[], token = s.adminToken) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, OS_AUTH_TYPE: 'admin_token', OS_ENDPOINT: `${s.controller.rest!.origin}/network`, OS_TOKEN: token }
      execFile(OPENSTACK, args, { env, timeout: 60_000 }, (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }))
    })
  /** A command that must succeed; its `-f json` output parsed. */
  const json = async (t: TestContext, line: string, token?: string): Promise<any> => {
    const r = await osc([...line.split(' '), '-f', 'json'], token)
    t.equal(r.code, 0, `openstack ${line}${r.stderr ? `: ${r.stderr.trim()}` : ''}`)
    return r.code === 0 ? JSON.parse(r.stdout) : {}
  }

  t.test('the seed: provider network and subnet, security group rules on default, ports and floating IPs', async (t) => {
    const net = await json(t, 'network create --share --external --provider-physical-network provider --provider-network-type flat provider')
    t.match(net, { name: 'provider', shared: true, 'router:external': true, 'provider:network_type': 'flat', 'provider:physical_network': 'provider', status: 'ACTIVE', admin_state_up: true, mtu: 1500 })
    const sub = await json(t, 'subnet create --network provider --allocation-pool start=192.168.201.200,end=192.168.201.210 --dns-nameserver 114.114.114.114 --gateway 192.168.201.1 --subnet-range 192.168.201.0/24 provider')
    t.match(sub, { name: 'provider', network_id: net.id, cidr: '192.168.201.0/24', gateway_ip: '192.168.201.1', ip_version: 4, enable_dhcp: true, allocation_pools: [{ start: '192.168.201.200', end: '192.168.201.210' }], dns_nameservers: ['114.114.114.114'] })
    const nets = await json(t, 'network list')
    t.same(nets, [{ ID: net.id, Name: 'provider', Subnets: [sub.id] }])
    t.match(await json(t, 'network show provider'), { id: net.id, subnets: [sub.id] })
    t.match(await json(t, 'subnet list'), [{ ID: sub.id, Name: 'provider', Network: net.id, Subnet: '192.168.201.0/24' }])

    // Another project has its default group too (the member listed its groups): as the admin of
    // project admin, `default` is still the admin project's own group.
    t.equal((await json(t, 'security group list', member.token)).filter((g: any) => g.Name === 'default').length, 1)
    const icmp = await json(t, 'security group rule create --proto icmp default')
    t.match(icmp, { protocol: 'icmp', direction: 'ingress', ether_type: 'IPv4', remote_ip_prefix: null, remote_group_id: null })
    const ssh = await json(t, 'security group rule create --proto tcp --dst-port 22 default')
    t.match(ssh, { protocol: 'tcp', port_range_min: 22, port_range_max: 22, direction: 'ingress', security_group_id: icmp.security_group_id })
    const groups = await json(t, 'security group list')
    t.ok(groups.filter((g: any) => g.Name === 'default').length >= 2, 'the admin lists every project\'s default group')
    t.ok(groups.some((g: any) => g.ID === icmp.security_group_id && g.Name === 'default' && g.Description === 'Default security group'))
    // The seed runs them as demo: the demo project's own default group.
    const demoRule = await json(t, 'security group rule create --proto icmp default', member.token)
    t.not(demoRule.security_group_id, icmp.security_group_id)
    t.equal(demoRule.project_id, member.projectId)

    const web = await json(t, 'security group create --description web-servers web')
    t.match(web, { name: 'web', description: 'web-servers' })
    const port = await json(t, 'port create --network provider --security-group web p1')
    t.match(port, { name: 'p1', network_id: net.id, status: 'DOWN', security_group_ids: [web.id], mac_address: /^fa:16:3e/, fixed_ips: [{ subnet_id: sub.id, ip_address: '192.168.201.200' }] })
    t.match(await json(t, 'port list'), [{ ID: port.id, Name: 'p1', Status: 'DOWN' }])
    const fip = await json(t, 'floating ip create provider')
    t.match(fip, { floating_network_id: net.id, floating_ip_address: '192.168.201.201', status: 'DOWN', port_id: null })
    t.match(await json(t, 'floating ip list'), [{ ID: fip.id, 'Floating IP Address': '192.168.201.201' }])

    for (const line of ['floating ip delete 192.168.201.201', 'port delete p1', 'security group delete web', 'subnet delete provider', 'network delete provider']) {
      const r = await osc(line.split(' '))
      t.equal(r.code, 0, `openstack ${line}${r.stderr ? `: ${r.stderr.trim()}` : ''}`)
    }
    t.same(await json(t, 'network list'), [])
    const gone = await osc(['network', 'show', 'provider'])
    t.equal(gone.code, 1)
    t.match(gone.stderr, /No Network found for provider/)
  })
}
