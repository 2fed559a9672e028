/** DiskWeigher: free disk (DISK_GB capacity minus usage). */
import { DISK_GB, freeOf, type HostWeigher } from '../model.js'

export const diskWeigher: HostWeigher = { name: 'DiskWeigher', weigh: (host) => freeOf(host, DISK_GB) }
