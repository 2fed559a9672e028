/** RAMWeigher: free RAM (MEMORY_MB capacity minus usage). */
import { freeOf, MEMORY_MB, type HostWeigher } from '../model.js'

export const ramWeigher: HostWeigher = { name: 'RAMWeigher', weigh: (host) => freeOf(host, MEMORY_MB) }
