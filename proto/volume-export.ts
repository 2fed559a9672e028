/**
 * How a host reaches a volume (agent.v1 `VolumeExportInfo`): the one place
 * the volume backend, the conductor and the attaching agent agree on it.
 */
import { Internal } from './errors.js'

/**
 * `file`: a path on the volume's own host; `nbd`: a network export (NBD over
 * TLS with x509 client certificates, served by the volume's host) that QEMU
 * on the attaching host opens. An NBD export serves the guest's bytes, so
 * its format is raw.
 */
export type VolumeExport =
  | { kind: 'file'; path: string; format: 'qcow2' | 'raw' }
  | { kind: 'nbd'; address: string; port: number; name: string; format: 'raw' }

/** One network export a backend serves: the volume, and the host it is for. */
export interface ExportRef {
  volumeId: string
  host: string
}

/** The same, as received (decoded protobuf: any field may be missing). */
export interface ReceivedVolumeExport {
  kind?: string
  path?: string
  format?: string
  address?: string
  port?: number
  name?: string
}

/** A received export, checked. @throws Internal when it is incomplete. */
export function volumeExportOf(e: ReceivedVolumeExport | undefined): VolumeExport {
  if (e?.kind === 'file' && e.path) return { kind: 'file', path: e.path, format: e.format === 'raw' ? 'raw' : 'qcow2' }
  if (e?.kind === 'nbd' && e.address && e.port && e.name) return { kind: 'nbd', address: e.address, port: e.port, name: e.name, format: 'raw' }
  throw new Internal(`an incomplete volume export came back: ${JSON.stringify(e ?? {})}`)
}

/** An export as sent (every field set). */
export function volumeExportToWire(e: VolumeExport): Required<ReceivedVolumeExport> {
  return e.kind === 'file'
    ? { kind: 'file', path: e.path, format: e.format, address: '', port: 0, name: '' }
    : { kind: 'nbd', path: '', format: 'raw', address: e.address, port: e.port, name: e.name }
}
