/** The filters `scheduler.enabledFilters` may name. */
import type { HostFilter } from '../model.js'
import { availabilityZoneFilter } from './availability-zone-filter.js'
import { computeFilter } from './compute-filter.js'
import { imagePropertiesFilter } from './image-properties-filter.js'
import { localNetworkFilter } from './local-network-filter.js'
import { serverGroupAffinityFilter } from './server-group-affinity-filter.js'
import { serverGroupAntiAffinityFilter } from './server-group-anti-affinity-filter.js'
import { volumeHostFilter } from './volume-host-filter.js'

export const FILTERS: ReadonlyMap<string, HostFilter> = new Map([computeFilter, availabilityZoneFilter, imagePropertiesFilter, serverGroupAffinityFilter, serverGroupAntiAffinityFilter, localNetworkFilter, volumeHostFilter].map((f) => [f.name, f]))
