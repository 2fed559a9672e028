/**
 * The conductor: what agents may ask the controller (agents never see the
 * database). Transport-free; `bus/` decodes NATS messages and calls it.
 */
import { NotFound } from '../../proto/errors.js'
import type { HostAnnouncement, HostRegistry } from '../compute/hosts.js'
import { DISK_GB, MEMORY_MB, VCPU } from '../scheduler/model.js'
import type { Placement } from '../scheduler/placement.js'

export interface BuildSpec {
  instanceUuid: string
  name: string
  vcpus: number
  memoryMb: number
  diskGb: number
  projectId: string
}

export class Conductor {
  constructor(private readonly hosts: HostRegistry, private readonly placement: Placement) {}

  /** An agent announced its host: record it; tell it whether it is mapped and how often to beat. */
  async announce(a: HostAnnouncement): Promise<{ mapped: boolean; heartbeatIntervalMs: number }> {
    const { mapped } = await this.hosts.announce(a)
    return { mapped, heartbeatIntervalMs: this.hosts.heartbeatIntervalMs }
  }

  /**
   * The build spec of a server placed on `host`, from its allocation.
   * @throws NotFound when nothing is allocated to it on that host.
   */
  async buildSpec(instanceUuid: string, host: string): Promise<BuildSpec> {
    const h = await this.hosts.get(host)
    const [a] = await this.placement.listAllocations({ consumerUuid: instanceUuid, providerUuid: h.id })
    if (!a) throw new NotFound(`no server ${instanceUuid} is placed on host '${host}'`)
    return {
      instanceUuid,
      name: `instance-${instanceUuid.slice(0, 8)}`,
      vcpus: a.resources[VCPU] ?? 0,
      memoryMb: a.resources[MEMORY_MB] ?? 0,
      diskGb: a.resources[DISK_GB] ?? 0,
      projectId: a.projectId,
    }
  }
}
