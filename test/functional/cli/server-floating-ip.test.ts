// `strato server add/remove floating ip` (openstackclient 6.0's, over Neutron's
// floating IPs) in process against a small cloud: a server on a self-service
// network behind a router with its gateway on the provider network gets a
// floating IP; `server show` lists it; a server whose network has no router
// is refused with Neutron's message.
import t from 'tap'
import { startCloud, type TestCloud } from '../../helpers/cloud.js'
import type { TestContext } from '../../helpers/tap.js'
import { adminAndDemo, failsWith, fields, removeHomes, succeeds } from './cli.js'

let cloud: TestCloud
let demo: Record<string, string>

t.before(async () => {
  cloud = await startCloud({ hosts: ['fipnode'] })
  ;({ demo } = await adminAndDemo(cloud.s.openrc))
})
t.teardown(async () => {
  await cloud?.close()
  removeHomes()
})

const ok = (t: TestContext, line: string) => succeeds(t, line, demo)
const fails = (t: TestContext, line: string, code: number) => failsWith(t, line, code, demo)

t.test('a floating IP for a server behind a router, and refused without one', async (t) => {
  await ok(t, 'network create selfservice')
  await ok(t, 'subnet create --network selfservice --subnet-range 172.16.1.0/24 selfservice')
  await ok(t, 'network create lonely')
  await ok(t, 'subnet create --network lonely --subnet-range 172.16.2.0/24 lonely')
  await ok(t, 'router create router')
  await ok(t, 'router add subnet router selfservice')
  await ok(t, 'router set router --external-gateway provider')
  const vm = fields(await ok(t, 'server create --flavor m1.nano --image cirros --nic net-id=selfservice --wait vm'))
  const fixed = /^selfservice=(172\.16\.1\.\d+)$/.exec(vm.addresses ?? '')?.[1]
  t.ok(fixed, `a fixed IP on the self-service network (${vm.addresses})`)
  const fip = fields(await ok(t, 'floating ip create provider'))

  t.match((await fails(t, `server add floating ip --fixed-ip-address 10.9.9.9 vm ${fip.floating_ip_address}`, 1)).stderr, /No port found for fixed IP address 10\.9\.9\.9/)
  await ok(t, `server add floating ip vm ${fip.floating_ip_address}`)
  t.match(fields(await ok(t, `floating ip show ${fip.floating_ip_address}`)), { fixed_ip_address: fixed, status: 'ACTIVE', router_id: /^[0-9a-f-]{36}$/ })
  t.equal(fields(await ok(t, 'server show vm')).addresses, `selfservice=${fixed}, ${fip.floating_ip_address}`, 'server show lists the floating address after the fixed one')
  await ok(t, `server remove floating ip vm ${fip.floating_ip_address}`)
  t.match(fields(await ok(t, `floating ip show ${fip.floating_ip_address}`)), { port_id: 'None', router_id: 'None', status: 'DOWN' })

  await ok(t, 'server create --flavor m1.nano --image cirros --nic net-id=lonely --wait alone')
  const refused = await fails(t, `server add floating ip alone ${fip.floating_ip_address}`, 1)
  t.match(refused.stderr, /External network [0-9a-f-]{36} is not reachable from subnet [0-9a-f-]{36}\. Therefore, cannot associate Port [0-9a-f-]{36} with a Floating IP\./)
  t.match(fields(await ok(t, `floating ip show ${fip.floating_ip_address}`)), { port_id: 'None', status: 'DOWN' }, 'and nothing changed')

  for (const line of ['server delete --wait vm alone', `floating ip delete ${fip.floating_ip_address}`, 'router remove subnet router selfservice', 'router delete router']) await ok(t, line)
})
