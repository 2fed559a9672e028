/** Builds HostStates for filter and weigher tests: a mapped, enabled, up 8-vCPU / 16 GiB / 100 GiB x86_64 KVM host by default. */
import { DISK_GB, MEMORY_MB, VCPU, type HostState, type Inventory, type RequestSpec } from '../../../../controller/scheduler/model.js'

export interface FakeHostOptions {
  host?: string
  az?: string
  vcpus?: number
  memoryMb?: number
  diskGb?: number
  used?: Partial<Record<string, number>>
  ratios?: Partial<Record<string, number>>
  reserved?: Partial<Record<string, number>>
  disabled?: boolean | string
  up?: boolean
  mapped?: boolean
  arch?: string
  accelerator?: string
  hypervisorType?: string
  traits?: string[]
}

let n = 0

export function fakeHost(o: FakeHostOptions = {}): HostState {
  n++
  const inv = (rc: string, total: number): Inventory => ({
    total,
    reserved: o.reserved?.[rc] ?? 0,
    minUnit: 1,
    maxUnit: total,
    stepSize: 1,
    allocationRatio: o.ratios?.[rc] ?? { VCPU: 4, MEMORY_MB: 1, DISK_GB: 1 }[rc] ?? 1,
  })
  return {
    host: o.host ?? `host${n}`,
    uuid: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
    availabilityZone: o.az ?? 'nova',
    mapped: o.mapped ?? true,
    disabled: o.disabled !== undefined && o.disabled !== false,
    disabledReason: typeof o.disabled === 'string' ? o.disabled : '',
    up: o.up ?? true,
    capabilities: { cpuModel: 'fake-cpu', arch: o.arch ?? 'x86_64', accelerator: o.accelerator ?? 'kvm', hypervisorType: o.hypervisorType ?? 'QEMU', hypervisorVersion: '7.2.0' },
    traits: new Set(o.traits ?? []),
    inventories: new Map([
      [VCPU, inv(VCPU, o.vcpus ?? 8)],
      [MEMORY_MB, inv(MEMORY_MB, o.memoryMb ?? 16384)],
      [DISK_GB, inv(DISK_GB, o.diskGb ?? 100)],
    ]),
    usage: new Map(Object.entries(o.used ?? {}).map(([k, v]) => [k, v ?? 0])),
  }
}

export function fakeSpec(o: Partial<RequestSpec> = {}): RequestSpec {
  return { instanceUuid: '11111111-1111-4111-8111-111111111111', projectId: 'p', userId: 'u', resources: { VCPU: 1, MEMORY_MB: 512, DISK_GB: 1 }, ...o }
}
