/**
 * Domain XML ↔ a plain object (after nova `virt/libvirt/config.py`). Pure: no
 * I/O and no policy. Whether a guest gets `kvm` or `qemu` (TCG), which CPU
 * mode, which machine type — the driver decides and puts it in the config.
 *
 * What is emitted: persistent HVM domain, vCPUs, memory, ACPI/APIC, virtio
 * disks (`<driver type='qcow2'>`), a read-only CD-ROM for the config drive,
 * NICs as `<interface type='bridge'>` with MAC and virtio model, one serial
 * port written to a log file (`<serial type='file'>`, appended across power
 * cycles), no graphics.
 *
 * Firmware is kept quick (it was most of a small guest's boot): no boot menu
 * wait (`<bootmenu enable='no'/>`) and no option ROM on NICs (`<rom
 * enabled='no'/>`: no iPXE to initialise; guests boot from disk, never PXE).
 */
import { child, childrenNamed, el, parseXml, path, serializeXml, type XmlElement } from './xml.js'

export interface DomainDisk {
  /** The file; for a network disk, its URL (`nbd://address:port/name`). */
  path: string
  /** `<disk type='network'>`: `<source protocol='nbd' name tls><host name port/></source>`. */
  network?: { protocol: 'nbd'; address: string; port: number; name: string; tls: boolean }
  format: 'qcow2' | 'raw'
  bus: 'virtio'
  /** `vda`, `vdb`, … */
  device: string
  /** `<serial>`: what the guest reads as the disk's serial (volumes: the volume id, 20 characters). */
  serial?: string
  /** `<driver cache>`: `none` (O_DIRECT, Nova's choice for volumes where the file system allows it). */
  cache?: 'none' | 'writeback'
  /** `<shareable/>`: several guests write the disk at once (a multiattach volume; QEMU gets share-rw=on). */
  shareable?: boolean
}

/** A read-only CD-ROM (the config drive): IDE on i440fx machines, SATA on q35. */
export interface DomainCdrom {
  path: string
  bus: 'ide' | 'sata'
}

export interface DomainInterface {
  mac: string
  bridge: string
  model: 'virtio'
  /** The tap device's name (`<target dev>`); libvirt picks vnetN when absent. */
  device?: string
}

export interface DomainConfig {
  /** `kvm` (hardware acceleration) or `qemu` (TCG emulation). */
  type: 'kvm' | 'qemu'
  uuid: string
  name: string
  vcpus: number
  memoryMiB: number
  /** Guest architecture. */
  arch: string
  /** QEMU machine type, e.g. `pc`; libvirt picks its default when absent. */
  machine?: string
  /** `<cpu mode=…>`; none when absent (QEMU's default model). */
  cpuMode?: 'host-passthrough' | 'host-model'
  /** In boot order: the first disk boots. */
  disks: DomainDisk[]
  cdrom?: DomainCdrom
  interfaces: DomainInterface[]
  /** File the first serial port writes to; no serial port when absent. */
  serialLogPath?: string
}

function diskElement(disk: DomainDisk, boot: boolean): XmlElement {
  const n = disk.network
  return el(
    'disk',
    { type: n ? 'network' : 'file', device: 'disk' },
    el('driver', { name: 'qemu', type: disk.format, cache: disk.cache }),
    n
      ? el('source', { protocol: n.protocol, name: n.name, ...(n.tls ? { tls: 'yes' } : {}) }, el('host', { name: n.address, port: n.port }))
      : el('source', { file: disk.path }),
    el('target', { dev: disk.device, bus: disk.bus }),
    ...(disk.serial ? [el('serial', {}, disk.serial)] : []),
    ...(disk.shareable ? [el('shareable', {})] : []),
    ...(boot ? [el('boot', { order: 1 })] : []),
  )
}

/** The `<disk>` element of one disk, as virDomainAttachDeviceFlags takes it (a volume: never the boot disk). */
export function toDiskXml(disk: DomainDisk): string {
  return `${serializeXml(diskElement(disk, false))}\n`
}

/** Builds the domain XML for `config`. */
export function toDomainXml(config: DomainConfig): string {
  const devices = el(
    'devices',
    {},
    ...config.disks.map((disk, index) => diskElement(disk, index === 0)),
    ...(config.cdrom === undefined
      ? []
      : [
          el(
            'disk',
            { type: 'file', device: 'cdrom' },
            el('driver', { name: 'qemu', type: 'raw' }),
            el('source', { file: config.cdrom.path }),
            el('target', { dev: config.cdrom.bus === 'ide' ? 'hdd' : 'sda', bus: config.cdrom.bus }),
            el('readonly'),
          ),
        ]),
    ...config.interfaces.map((nic) =>
      el('interface', { type: 'bridge' }, el('mac', { address: nic.mac }), el('source', { bridge: nic.bridge }), ...(nic.device ? [el('target', { dev: nic.device })] : []), el('model', { type: nic.model }), el('rom', { enabled: 'no' })),
    ),
    ...(config.serialLogPath === undefined
      ? []
      : [el('serial', { type: 'file' }, el('source', { path: config.serialLogPath, append: 'on' }), el('target', { port: 0 }))]),
    el('memballoon', { model: 'none' }),
  )
  const domain = el(
    'domain',
    { type: config.type },
    el('name', {}, config.name),
    el('uuid', {}, config.uuid),
    el('memory', { unit: 'MiB' }, String(config.memoryMiB)),
    el('vcpu', {}, String(config.vcpus)),
    el('os', {}, el('type', { arch: config.arch, machine: config.machine }, 'hvm'), el('bootmenu', { enable: 'no' })),
    el('features', {}, el('acpi'), el('apic')),
    ...(config.cpuMode === undefined ? [] : [el('cpu', { mode: config.cpuMode })]),
    el('clock', { offset: 'utc' }),
    el('on_poweroff', {}, 'destroy'),
    el('on_reboot', {}, 'restart'),
    el('on_crash', {}, 'destroy'),
    devices,
  )
  return `${serializeXml(domain)}\n`
}

const UNIT_BYTES: Record<string, number> = {
  b: 1,
  bytes: 1,
  k: 1024,
  kib: 1024,
  kb: 1000,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  mb: 1000 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  gb: 1000 ** 3,
  t: 1024 ** 4,
  tib: 1024 ** 4,
  tb: 1000 ** 4,
}

function memoryMiB(node: XmlElement | undefined): number {
  if (node === undefined) throw new Error('domain XML has no <memory>')
  const factor = UNIT_BYTES[(node.attrs.unit ?? 'KiB').toLowerCase()]
  if (factor === undefined) throw new Error(`unknown memory unit ${node.attrs.unit ?? ''}`)
  return Math.round((Number(node.text) * factor) / 1024 ** 2)
}

function required(node: XmlElement | undefined, what: string): XmlElement {
  if (node === undefined) throw new Error(`domain XML has no ${what}`)
  return node
}

/**
 * Reads a domain XML (ours, or libvirt's expanded version of it) back into a
 * config. Devices Strato does not make (graphics, other CD-ROMs, …) are ignored.
 */
/**
 * The QEMU block node of the source of the disk on target `device` in a
 * running domain's XML: libvirt names it `libvirt-<source index>-storage`.
 */
export function diskStorageNode(xml: string, device: string): string | undefined {
  const devices = child(parseXml(xml), 'devices')
  const disk = childrenNamed(devices, 'disk').find((d) => child(d, 'target')?.attrs.dev === device)
  const index = disk ? child(disk, 'source')?.attrs.index : undefined
  return index ? `libvirt-${index}-storage` : undefined
}

export function parseDomainXml(xml: string): DomainConfig {
  const root = parseXml(xml)
  if (root.name !== 'domain') throw new Error(`expected <domain>, found <${root.name}>`)
  const type = root.attrs.type
  if (type !== 'kvm' && type !== 'qemu') throw new Error(`unsupported domain type ${type ?? '(none)'}`)
  const osType = required(path(root, 'os', 'type'), '<os><type>')
  const devices = child(root, 'devices')

  const disks: DomainDisk[] = []
  for (const disk of childrenNamed(devices, 'disk')) {
    if ((disk.attrs.device ?? 'disk') !== 'disk') continue
    const source = required(child(disk, 'source'), '<disk><source>')
    let network: DomainDisk['network']
    if (disk.attrs.type === 'network') {
      const host = child(source, 'host')
      if (source.attrs.protocol !== 'nbd' || !host) continue
      network = { protocol: 'nbd', address: host.attrs.name ?? '', port: Number(host.attrs.port ?? 10809), name: source.attrs.name ?? '', tls: source.attrs.tls === 'yes' }
    } else if (disk.attrs.type !== 'file') continue
    const format = child(disk, 'driver')?.attrs.type
    const cache = child(disk, 'driver')?.attrs.cache
    const bus = child(disk, 'target')?.attrs.bus
    const serial = child(disk, 'serial')?.text
    disks.push({
      ...(serial ? { serial } : {}),
      ...(cache === 'none' || cache === 'writeback' ? { cache } : {}),
      ...(network ? { network } : {}),
      ...(child(disk, 'shareable') ? { shareable: true } : {}),
      path: network ? `nbd://${network.address.includes(':') ? `[${network.address}]` : network.address}:${network.port}/${network.name}` : source.attrs.file ?? '',
      format: format === 'raw' ? 'raw' : 'qcow2',
      bus: bus === 'virtio' ? 'virtio' : (bus as 'virtio'),
      device: required(child(disk, 'target'), '<disk><target>').attrs.dev ?? '',
    })
  }

  const cdromDisk = childrenNamed(devices, 'disk').find((d) => d.attrs.device === 'cdrom' && d.attrs.type === 'file' && child(d, 'source')?.attrs.file)
  const cdromBus = child(cdromDisk, 'target')?.attrs.bus
  const cdrom: DomainCdrom | undefined = cdromDisk && (cdromBus === 'ide' || cdromBus === 'sata') ? { path: child(cdromDisk, 'source')!.attrs.file!, bus: cdromBus } : undefined

  const interfaces: DomainInterface[] = childrenNamed(devices, 'interface')
    .filter((nic) => nic.attrs.type === 'bridge')
    .map((nic) => {
      const device = child(nic, 'target')?.attrs.dev
      return {
        mac: child(nic, 'mac')?.attrs.address ?? '',
        bridge: child(nic, 'source')?.attrs.bridge ?? '',
        model: (child(nic, 'model')?.attrs.type ?? 'virtio') as 'virtio',
        ...(device === undefined ? {} : { device }),
      }
    })

  const serial = childrenNamed(devices, 'serial').find((s) => s.attrs.type === 'file')
  const serialLogPath = child(serial, 'source')?.attrs.path
  const cpuMode = child(root, 'cpu')?.attrs.mode
  const machine = osType.attrs.machine

  return {
    type,
    uuid: required(child(root, 'uuid'), '<uuid>').text,
    name: required(child(root, 'name'), '<name>').text,
    vcpus: Number(required(child(root, 'vcpu'), '<vcpu>').text),
    memoryMiB: memoryMiB(child(root, 'memory')),
    arch: osType.attrs.arch ?? 'x86_64',
    ...(machine === undefined ? {} : { machine }),
    ...(cpuMode === 'host-passthrough' || cpuMode === 'host-model' ? { cpuMode } : {}),
    disks,
    ...(cdrom === undefined ? {} : { cdrom }),
    interfaces,
    ...(serialLogPath === undefined ? {} : { serialLogPath }),
  }
}
