// The scheduler and hosts sections of the controller config: Nova's defaults, validated once.
import t from 'tap'
import { loadConfig } from '../../../../controller/config.js'
import type { InvalidArgument } from '../../../../proto/errors.js'

t.test('defaults: Nova filters and weighers, spread, discovery off, ratios 4/1/1, 512 MiB reserved', async (t) => {
  const c = loadConfig({}, {})
  t.same(c.scheduler.enabledFilters, ['ComputeFilter', 'AvailabilityZoneFilter', 'ImagePropertiesFilter', 'ServerGroupAffinityFilter', 'ServerGroupAntiAffinityFilter', 'LocalNetworkFilter', 'VolumeHostFilter'])
  t.same(c.scheduler.weighers, ['RAMWeigher', 'CPUWeigher', 'DiskWeigher', 'ServerGroupSoftAffinityWeigher', 'ServerGroupSoftAntiAffinityWeigher'])
  t.match(c.scheduler, { strategy: 'spread', hostSubsetSize: 1, maxAttempts: 3, maxPlacementResults: 1000 })
  t.match(c.hosts, { discoverIntervalMs: -1, heartbeatIntervalMs: 10_000, missedHeartbeats: 6, defaultAvailabilityZone: 'nova' })
  t.same(c.hosts.allocationRatios, { VCPU: 4, MEMORY_MB: 1, DISK_GB: 1 })
  t.same(c.hosts.reserved, { VCPU: 0, MEMORY_MB: 512, DISK_GB: 0 })
})

t.test('overrides merge; bad values are refused naming the field', async (t) => {
  const c = loadConfig({ scheduler: { strategy: 'pack', enabledFilters: ['ComputeFilter'] }, hosts: { allocationRatios: { VCPU: 16 } } }, {})
  t.equal(c.scheduler.strategy, 'pack')
  t.same(c.scheduler.enabledFilters, ['ComputeFilter'], 'a list replaces the default list')
  t.same(c.hosts.allocationRatios, { VCPU: 16, MEMORY_MB: 1, DISK_GB: 1 })
  const fieldOf = (f: () => unknown): string | undefined => {
    try {
      f()
    } catch (err) {
      return (err as InvalidArgument).field
    }
    return undefined
  }
  t.equal(fieldOf(() => loadConfig({ scheduler: { strategy: 'fill' as 'pack' } }, {})), 'scheduler.strategy')
  t.equal(fieldOf(() => loadConfig({ scheduler: { hostSubsetSize: 0 } }, {})), 'scheduler.hostSubsetSize')
  t.equal(fieldOf(() => loadConfig({ scheduler: { maxPlacementResults: 0 } }, {})), 'scheduler.maxPlacementResults')
  t.equal(fieldOf(() => loadConfig({ scheduler: { maxPlacementResults: 2.5 } }, {})), 'scheduler.maxPlacementResults')
  t.equal(fieldOf(() => loadConfig({ scheduler: { windowOffset: 1 } }, {})), 'scheduler.windowOffset')
  t.equal(fieldOf(() => loadConfig({ scheduler: { windowOffset: -0.1 } }, {})), 'scheduler.windowOffset')
  t.equal(fieldOf(() => loadConfig({ hosts: { allocationRatios: { VCPU: 0 } } }, {})), 'hosts.allocationRatios.VCPU')
})
