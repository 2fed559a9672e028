/** CPUWeigher: free vCPUs (VCPU capacity, with its allocation ratio, minus usage). */
import { freeOf, VCPU, type HostWeigher } from '../model.js'

export const cpuWeigher: HostWeigher = { name: 'CPUWeigher', weigh: (host) => freeOf(host, VCPU) }
