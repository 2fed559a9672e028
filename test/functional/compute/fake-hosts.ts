/** Builders for functional scheduler tests: announcements as an agent on the fake driver would send them. */
import { randomUUID } from 'node:crypto'
import type { HostAnnouncement } from '../../../controller/compute/hosts.js'

export function fakeHost(host: string, o: { vcpus?: number; memoryMb?: number; diskGb?: number; az?: string; arch?: string; accelerator?: string } = {}): HostAnnouncement {
  return {
    host,
    uuid: randomUUID(),
    ...(o.az ? { availabilityZone: o.az } : {}),
    capabilities: {
      cpuModel: 'fake-cpu', arch: o.arch ?? 'x86_64', vcpus: o.vcpus ?? 8, memoryMb: o.memoryMb ?? 16384, diskGb: o.diskGb ?? 100,
      accelerator: o.accelerator ?? 'kvm', hypervisorType: 'fake', hypervisorVersion: '1.0.0', hostIp: '192.0.2.10',
    },
  }
}

export function spec(projectId: string, userId: string, o: { vcpus?: number; ram?: number; disk?: number; az?: string; image?: Record<string, string> } = {}) {
  return {
    instanceUuid: randomUUID(),
    projectId,
    userId,
    resources: { VCPU: o.vcpus ?? 1, MEMORY_MB: o.ram ?? 512, DISK_GB: o.disk ?? 1 },
    ...(o.az ? { availabilityZone: o.az } : {}),
    ...(o.image ? { imageProperties: o.image } : {}),
  }
}
