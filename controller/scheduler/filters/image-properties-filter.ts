/**
 * ImagePropertiesFilter: the host can run the image, judged by its
 * properties `hw_architecture` (legacy `architecture`) and `img_hv_type`
 * (legacy `hypervisor_type`), as nova's filter does with the host's
 * supported instances. A QEMU host runs hv_type `qemu`, and `kvm` only when
 * it has KVM acceleration.
 */
import type { HostFilter, HostState, RequestSpec } from '../model.js'

const ARCH_ALIASES: Record<string, string> = { amd64: 'x86_64', x64: 'x86_64', x86: 'i686', i386: 'i686', arm64: 'aarch64' }

/** Canonical architecture name (nova `obj_fields.Architecture.canonicalize`). */
export function canonicalArch(arch: string): string {
  const a = arch.trim().toLowerCase()
  return ARCH_ALIASES[a] ?? a
}

function wanted(spec: RequestSpec): { arch?: string; hvType?: string } {
  const p = spec.imageProperties ?? {}
  const arch = p.hw_architecture ?? p.architecture
  const hvType = p.img_hv_type ?? p.hypervisor_type
  return { ...(arch ? { arch: canonicalArch(arch) } : {}), ...(hvType ? { hvType: hvType.toLowerCase() } : {}) }
}

/** Hypervisor types (nova `hv_type`) a host can run. */
export function supportedHvTypes(host: HostState): string[] {
  const t = host.capabilities.hypervisorType.toLowerCase()
  if (t === 'qemu' || t === 'kvm') return host.capabilities.accelerator === 'kvm' ? ['qemu', 'kvm'] : ['qemu']
  return [t]
}

export const imagePropertiesFilter: HostFilter = {
  name: 'ImagePropertiesFilter',
  hostPasses(host, spec) {
    const w = wanted(spec)
    if (w.arch && canonicalArch(host.capabilities.arch) !== w.arch) return false
    if (w.hvType && !supportedHvTypes(host).includes(w.hvType)) return false
    return true
  },
  describe(spec) {
    const w = wanted(spec)
    const parts = [w.arch ? `hw_architecture=${w.arch}` : '', w.hvType ? `img_hv_type=${w.hvType}` : ''].filter(Boolean)
    return parts.length ? parts.join(', ') : undefined
  },
}
