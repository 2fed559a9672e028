// Each filter on its own: host_passes(host, spec).
import t from 'tap'
import { availabilityZoneFilter } from '../../../../controller/scheduler/filters/availability-zone-filter.js'
import { computeFilter } from '../../../../controller/scheduler/filters/compute-filter.js'
import { canonicalArch, imagePropertiesFilter } from '../../../../controller/scheduler/filters/image-properties-filter.js'
import { FILTERS } from '../../../../controller/scheduler/filters/index.js'
import { localNetworkFilter } from '../../../../controller/scheduler/filters/local-network-filter.js'
import { volumeHostFilter } from '../../../../controller/scheduler/filters/volume-host-filter.js'
import { serverGroupAffinityFilter } from '../../../../controller/scheduler/filters/server-group-affinity-filter.js'
import { serverGroupAntiAffinityFilter } from '../../../../controller/scheduler/filters/server-group-anti-affinity-filter.js'
import type { GroupSpec } from '../../../../controller/scheduler/model.js'
import { fakeHost, fakeSpec } from './fake-host.js'

const group = (policy: GroupSpec['policy'], memberHosts: string[], maxServerPerHost = 1): { group: GroupSpec } => ({ group: { id: 'g1', policy, memberHosts, maxServerPerHost } })

t.test('ServerGroupAffinityFilter: where the members are; anywhere for the first; other policies pass', async (t) => {
  const n1 = fakeHost({ host: 'n1' })
  const n2 = fakeHost({ host: 'n2' })
  t.ok(serverGroupAffinityFilter.hostPasses(n2, fakeSpec(group('affinity', []))), 'the first member goes anywhere')
  t.ok(serverGroupAffinityFilter.hostPasses(n1, fakeSpec(group('affinity', ['n1']))))
  t.notOk(serverGroupAffinityFilter.hostPasses(n2, fakeSpec(group('affinity', ['n1']))))
  t.ok(serverGroupAffinityFilter.hostPasses(n2, fakeSpec(group('soft-affinity', ['n1']))), 'soft: a weigher, not a filter')
  t.ok(serverGroupAffinityFilter.hostPasses(n2, fakeSpec()), 'no group')
  t.equal(serverGroupAffinityFilter.reason!(n2, fakeSpec(group('affinity', ['n1']))), "'n2' is not where the group runs")
})

t.test('ServerGroupAntiAffinityFilter: fewer than max_server_per_host members on the host', async (t) => {
  const n1 = fakeHost({ host: 'n1' })
  t.ok(serverGroupAntiAffinityFilter.hostPasses(n1, fakeSpec(group('anti-affinity', ['n2']))))
  t.notOk(serverGroupAntiAffinityFilter.hostPasses(n1, fakeSpec(group('anti-affinity', ['n1', 'n2']))))
  t.ok(serverGroupAntiAffinityFilter.hostPasses(n1, fakeSpec(group('anti-affinity', ['n1'], 2))), 'max_server_per_host 2: one more fits')
  t.notOk(serverGroupAntiAffinityFilter.hostPasses(n1, fakeSpec(group('anti-affinity', ['n1', 'n1'], 2))))
  t.ok(serverGroupAntiAffinityFilter.hostPasses(n1, fakeSpec(group('soft-anti-affinity', ['n1']))), 'soft: a weigher, not a filter')
  t.equal(serverGroupAntiAffinityFilter.describe!(fakeSpec(group('anti-affinity', ['n1']))), 'anti-affinity with group g1 (at most 1 per host)')
  t.equal(serverGroupAntiAffinityFilter.reason!(n1, fakeSpec(group('anti-affinity', ['n1']))), "'n1' holds 1 of the group's members")
})

t.test('ComputeFilter: enabled and up', async (t) => {
  const spec = fakeSpec()
  t.ok(computeFilter.hostPasses(fakeHost(), spec))
  t.notOk(computeFilter.hostPasses(fakeHost({ disabled: 'maintenance' }), spec), 'disabled')
  t.notOk(computeFilter.hostPasses(fakeHost({ up: false }), spec), 'down')
  t.equal(computeFilter.reason!(fakeHost({ host: 'n1', disabled: 'maintenance' }), spec), "'n1' disabled: maintenance")
  t.equal(computeFilter.reason!(fakeHost({ host: 'n2', up: false }), spec), "'n2' down")
})

t.test('AvailabilityZoneFilter: the requested zone, or any', async (t) => {
  const h = fakeHost({ az: 'nova' })
  t.ok(availabilityZoneFilter.hostPasses(h, fakeSpec()), 'no zone asked')
  t.ok(availabilityZoneFilter.hostPasses(h, fakeSpec({ availabilityZone: 'nova' })))
  t.notOk(availabilityZoneFilter.hostPasses(h, fakeSpec({ availabilityZone: 'nova2' })))
  t.equal(availabilityZoneFilter.describe!(fakeSpec({ availabilityZone: 'nova2' })), 'az=nova2')
  t.equal(availabilityZoneFilter.describe!(fakeSpec()), undefined)
})

t.test('ImagePropertiesFilter: architecture and hypervisor type', async (t) => {
  const kvm = fakeHost({ arch: 'x86_64', accelerator: 'kvm', hypervisorType: 'QEMU' })
  const tcg = fakeHost({ arch: 'x86_64', accelerator: 'tcg', hypervisorType: 'QEMU' })
  const arm = fakeHost({ arch: 'aarch64' })
  const img = (p: Record<string, string>) => fakeSpec({ imageProperties: p })
  t.ok(imagePropertiesFilter.hostPasses(kvm, fakeSpec()), 'no properties: any host')
  t.ok(imagePropertiesFilter.hostPasses(kvm, img({ hw_architecture: 'x86_64' })))
  t.ok(imagePropertiesFilter.hostPasses(kvm, img({ hw_architecture: 'amd64' })), 'aliases are canonicalised')
  t.notOk(imagePropertiesFilter.hostPasses(kvm, img({ hw_architecture: 'aarch64' })))
  t.ok(imagePropertiesFilter.hostPasses(arm, img({ architecture: 'arm64' })), 'legacy property name')
  t.ok(imagePropertiesFilter.hostPasses(kvm, img({ img_hv_type: 'kvm' })))
  t.notOk(imagePropertiesFilter.hostPasses(tcg, img({ img_hv_type: 'kvm' })), 'kvm needs hardware acceleration')
  t.ok(imagePropertiesFilter.hostPasses(tcg, img({ img_hv_type: 'qemu' })))
  t.notOk(imagePropertiesFilter.hostPasses(kvm, img({ hypervisor_type: 'xen' })))
  t.ok(imagePropertiesFilter.hostPasses(fakeHost({ hypervisorType: 'fake' }), img({ img_hv_type: 'fake' })))
  t.equal(imagePropertiesFilter.describe!(img({ hw_architecture: 'arm64', img_hv_type: 'KVM' })), 'hw_architecture=aarch64, img_hv_type=kvm')
  t.equal(canonicalArch(' X86_64 '), 'x86_64')
})

t.test('LocalNetworkFilter: where each local network already is; anywhere for a network with no ports yet', async (t) => {
  const n1 = fakeHost({ host: 'n1' })
  const n2 = fakeHost({ host: 'n2' })
  const nets = (...l: Array<[string, string[]]>) => fakeSpec({ localNetworks: l.map(([networkId, hosts]) => ({ networkId, hosts })) })
  t.ok(localNetworkFilter.hostPasses(n2, fakeSpec()), 'no local network')
  t.ok(localNetworkFilter.hostPasses(n2, nets(['a', []])), 'a local network with no ports goes anywhere')
  t.ok(localNetworkFilter.hostPasses(n1, nets(['a', ['n1']])))
  t.notOk(localNetworkFilter.hostPasses(n2, nets(['a', ['n1']])))
  t.ok(localNetworkFilter.hostPasses(n1, nets(['a', ['n1']], ['b', []])))
  t.notOk(localNetworkFilter.hostPasses(n1, nets(['a', ['n1']], ['b', ['n2']])), 'two local networks on different hosts: no host has both')
  t.ok(localNetworkFilter.hostPasses(n2, nets(['a', ['n1', 'n2']], ['b', ['n2']])), 'a network on several hosts (placed before this filter existed)')
  t.equal(localNetworkFilter.describe!(nets(['a', ['n1', 'n1']], ['b', []])), 'local network a on n1')
  t.equal(localNetworkFilter.describe!(nets(['b', []])), undefined)
  t.equal(localNetworkFilter.reason!(n2, nets(['a', ['n1']], ['b', ['n2']])), "'n2' is not where local network a is (a local network does not reach across hosts)")
})

t.test('VolumeHostFilter: where the server\'s new volumes can be made; anywhere when it makes none', async (t) => {
  const n1 = fakeHost({ host: 'n1' })
  const n2 = fakeHost({ host: 'n2' })
  const spec = fakeSpec({ volumeHosts: { hosts: ['n1'], why: 'volume backends with room for 10 GiB' } })
  t.ok(volumeHostFilter.hostPasses(n2, fakeSpec()), 'no new volume (existing ones attach over the network): any host')
  t.ok(volumeHostFilter.hostPasses(n1, spec))
  t.notOk(volumeHostFilter.hostPasses(n2, spec))
  t.equal(volumeHostFilter.describe!(spec), 'volume backends with room for 10 GiB: n1')
  t.equal(volumeHostFilter.describe!(fakeSpec()), undefined)
  t.equal(volumeHostFilter.reason!(n2, spec), "'n2' is not among the volume backends with room for 10 GiB")
})

t.test('the registry knows every filter by name', async (t) => {
  t.same([...FILTERS.keys()].sort(), ['AvailabilityZoneFilter', 'ComputeFilter', 'ImagePropertiesFilter', 'LocalNetworkFilter', 'ServerGroupAffinityFilter', 'ServerGroupAntiAffinityFilter', 'VolumeHostFilter'])
})
