/**
 * The seed's networking steps with the real `openstack` client
 * (python-openstackclient 6.0.0 from Debian, /usr/bin/openstack) against
 * Strato's Neutron REST API, checking each `-f json` answer. As the seed:
 * `. admin-openrc` (the `openstack-openrc` Strato writes: password auth on
 * Keystone's REST API, the network endpoint from the token's catalog), and the
 * demo user's own credentials for its steps; and once with keystoneauth's
 * `admin_token` plugin (token + endpoint, no Keystone).
 */
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { startController, parseOpenrc, type TestController } from '../../helpers/controller.js'
import { openstackFiles } from '../../../controller/identity/bootstrap.js'
import { tenant, type Tenant } from '../network/fixtures.js'
import type { TestContext } from '../../helpers/tap.js'
import { OPENSTACK, hasOpenstack, openstackClient } from '../../helpers/osc.js'

if (!hasOpenstack()) {
  t.plan(0, `${OPENSTACK} is not installed (Debian python3-openstackclient)`)
} else {
  let s: TestController
  let member: Tenant
  const home = mkdtempSync(path.join(tmpdir(), 'strato-osc-'))
  const client = openstackClient()

  t.before(async () => {
    s = await startController()
    member = await tenant(s, 'demo')
  })
  t.teardown(async () => {
    await client.close()
    await s.close()
    rmSync(home, { recursive: true, force: true })
  })

  type Who = 'admin' | 'demo'
  /**
   * Runs `openstack <args>` after `. openstack-openrc` (admin) or as demo; resolves to its exit code and output.
   * In the file's shared client (test/helpers/osc.ts), or as its own /usr/bin/openstack process.
   */
  const osc = (args: string[], who: Who = 'admin', process_ = false) => {
    const admin = parseOpenrc(openstackFiles(path.join(s.dataDir, 'admin-openrc')).openrc)
    const creds = who === 'admin' ? admin : { ...admin, OS_USERNAME: 'demo', OS_PASSWORD: 'demo-pw', OS_PROJECT_NAME: 'demo' }
    return client.run(args, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, ...creds }, timeoutMs: 60_000, process: process_ })
  }
  /** A command that must succeed; its `-f json` output parsed. */
  const json = async (t: TestContext, line: string, who?: Who, process_?: boolean): Promise<any> => {
    const r = await osc([...line.split(' '), '-f', 'json'], who, process_)
    t.equal(r.code, 0, `openstack ${line}${r.stderr ? `: ${r.stderr.trim()}` : ''}`)
    return r.code === 0 ? JSON.parse(r.stdout) : {}
  }

  t.test('the seed: provider network and subnet, security group rules on default, ports and floating IPs', async (t) => {
    const net = await json(t, 'network create --share --external --provider-physical-network provider --provider-network-type flat provider', 'admin', true)
    t.match(net, { name: 'provider', shared: true, 'router:external': true, 'provider:network_type': 'flat', 'provider:physical_network': 'provider', status: 'ACTIVE', admin_state_up: true, mtu: 1500 })
    const sub = await json(t, 'subnet create --network provider --allocation-pool start=192.168.201.200,end=192.168.201.210 --dns-nameserver 114.114.114.114 --gateway 192.168.201.1 --subnet-range 192.168.201.0/24 provider')
    t.match(sub, { name: 'provider', network_id: net.id, cidr: '192.168.201.0/24', gateway_ip: '192.168.201.1', ip_version: 4, enable_dhcp: true, allocation_pools: [{ start: '192.168.201.200', end: '192.168.201.210' }], dns_nameservers: ['114.114.114.114'] })
    const nets = await json(t, 'network list')
    t.same(nets, [{ ID: net.id, Name: 'provider', Subnets: [sub.id] }])
    t.match(await json(t, 'network show provider'), { id: net.id, subnets: [sub.id] })
    t.match(await json(t, 'subnet list'), [{ ID: sub.id, Name: 'provider', Network: net.id, Subnet: '192.168.201.0/24' }])

    // Another project has its default group too (the member listed its groups): as the admin of
    // project admin, `default` is still the admin project's own group.
    t.equal((await json(t, 'security group list', 'demo')).filter((g: any) => g.Name === 'default').length, 1)
    const icmp = await json(t, 'security group rule create --proto icmp default')
    t.match(icmp, { protocol: 'icmp', direction: 'ingress', ether_type: 'IPv4', remote_ip_prefix: null, remote_group_id: null })
    const ssh = await json(t, 'security group rule create --proto tcp --dst-port 22 default')
    t.match(ssh, { protocol: 'tcp', port_range_min: 22, port_range_max: 22, direction: 'ingress', security_group_id: icmp.security_group_id })
    const groups = await json(t, 'security group list')
    t.ok(groups.filter((g: any) => g.Name === 'default').length >= 2, 'the admin lists every project\'s default group')
    t.ok(groups.some((g: any) => g.ID === icmp.security_group_id && g.Name === 'default' && g.Description === 'Default security group'))
    // The seed runs them as demo: the demo project's own default group.
    const demoRule = await json(t, 'security group rule create --proto icmp default', 'demo')
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
    // Without Keystone: keystoneauth's admin_token plugin (a token and the endpoint, no catalog).
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, OS_AUTH_TYPE: 'admin_token', OS_ENDPOINT: `${s.controller.rest!.origin}/network`, OS_TOKEN: s.adminToken }
    const bare = (await client.run(['security', 'group', 'show', 'default', '-f', 'json'], { env, timeoutMs: 60_000, process: true })).stdout
    t.equal(JSON.parse(bare || '{}').id, icmp.security_group_id, 'admin_token: the admin project\'s default group')
    const gone = await osc(['network', 'show', 'provider'])
    t.equal(gone.code, 1)
    t.match(gone.stderr, /No Network found for provider/)
  })

  t.test("the install guide's self-service steps: a project network, a router to the provider network, a floating IP through it", async (t) => {
    const osc1 = async (line: string, who: Who = 'admin') => {
      const r = await osc(line.split(' '), who)
      t.equal(r.code, 0, `openstack ${line}${r.stderr ? `: ${r.stderr.trim()}` : ''}`)
      return r
    }
    const provider = await json(t, 'network create --share --external --provider-physical-network provider --provider-network-type flat provider')
    await json(t, 'subnet create --network provider --allocation-pool start=192.168.201.200,end=192.168.201.210 --gateway 192.168.201.1 --subnet-range 192.168.201.0/24 provider')
    const self = await json(t, 'network create selfservice', 'demo')
    t.match(self, { name: 'selfservice', 'router:external': false, project_id: member.projectId })
    const sub = await json(t, 'subnet create --network selfservice --dns-nameserver 8.8.4.4 --gateway 172.16.1.1 --subnet-range 172.16.1.0/24 selfservice', 'demo')
    const router = await json(t, 'router create router', 'demo')
    t.match(router, { name: 'router', admin_state_up: true, status: 'ACTIVE', external_gateway_info: null, routes: [], project_id: member.projectId })
    await osc1('router add subnet router selfservice', 'demo')
    await osc1('router set router --external-gateway provider', 'demo')
    const shown = await json(t, 'router show router', 'demo')
    t.match(shown.external_gateway_info, { network_id: provider.id, enable_snat: true, external_fixed_ips: [{ ip_address: /^192\.168\.201\.2\d\d$/ }] })
    t.match(shown.interfaces_info, [{ ip_address: '172.16.1.1', subnet_id: sub.id }], "the interface holds the subnet's gateway IP")
    const ports = await json(t, 'port list --router router', 'admin')
    t.equal(ports.length, 2, "the router's two ports (interface and gateway)")
    const disable = await osc(['router', 'set', 'router', '--external-gateway', 'provider', '--disable-snat'], 'demo')
    t.equal(disable.code, 1, 'a member may not disable SNAT')
    t.match(disable.stderr, /only admins may disable SNAT/)
    await osc1('router set router --route destination=10.50.0.0/16,gateway=172.16.1.50', 'demo')
    t.same((await json(t, 'router show router', 'demo')).routes, [{ destination: '10.50.0.0/16', nexthop: '172.16.1.50' }])
    await osc1('router unset router --route destination=10.50.0.0/16,gateway=172.16.1.50', 'demo')

    const vm = await json(t, 'port create --network selfservice vm', 'demo')
    const fip = await json(t, 'floating ip create provider', 'demo')
    await osc1(`floating ip set --port vm ${fip.floating_ip_address}`, 'demo')
    t.match(await json(t, `floating ip show ${fip.id}`, 'demo'), { port_id: vm.id, router_id: router.id, fixed_ip_address: vm.fixed_ips[0].ip_address, status: 'ACTIVE' })
    const inUse = await osc(['router', 'remove', 'subnet', 'router', 'selfservice'], 'demo')
    t.equal(inUse.code, 1)
    t.match(inUse.stderr, /required by one or more floating IPs/)
    const busy = await osc(['router', 'delete', 'router'], 'demo', true)
    t.equal(busy.code, 1, 'a router with interfaces does not delete')
    for (const line of [`floating ip delete ${fip.id}`, 'port delete vm', 'router remove subnet router selfservice', 'router unset --external-gateway router', 'router delete router', 'subnet delete selfservice', 'network delete selfservice']) await osc1(line, 'demo')
    for (const line of ['subnet delete provider', 'network delete provider']) await osc1(line)
    t.same(await json(t, 'router list', 'demo'), [])
  })
}
