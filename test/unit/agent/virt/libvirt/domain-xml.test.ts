import t from 'tap'
import { diskStorageNode, parseDomainXml, toDiskXml, toDomainXml, type DomainConfig } from '../../../../../agent/virt/libvirt/domain-xml.js'
import { parseXml, path, childrenNamed } from '../../../../../agent/virt/libvirt/xml.js'

const config: DomainConfig = {
  type: 'kvm',
  uuid: '6f1c0c2e-8f0b-4c1e-9a59-0d5f4f6a0b11',
  name: 'instance-0001',
  vcpus: 2,
  memoryMiB: 512,
  arch: 'x86_64',
  machine: 'pc',
  disks: [
    { path: '/var/lib/strato/instances/6f1c/disk', format: 'qcow2', bus: 'virtio', device: 'vda' },
    { path: '/var/lib/strato/instances/6f1c/disk.eph0', format: 'raw', bus: 'virtio', device: 'vdb' },
  ],
  interfaces: [
    { mac: 'fa:16:3e:12:34:56', bridge: 'brq-physnet1', model: 'virtio' },
    { mac: 'fa:16:3e:12:34:57', bridge: 'brq-physnet2', model: 'virtio' },
  ],
  serialLogPath: '/var/lib/strato/instances/6f1c/console.log',
}

t.test('round trip: object → XML → object', async (t) => {
  t.same(parseDomainXml(toDomainXml(config)), config)
  const tcg: DomainConfig = { ...config, type: 'qemu', disks: [config.disks[0]!], interfaces: [] }
  delete tcg.machine
  t.same(parseDomainXml(toDomainXml(tcg)), tcg, 'TCG, one disk, no NICs, no machine')
  const host: DomainConfig = { ...config, cpuMode: 'host-passthrough' }
  t.same(parseDomainXml(toDomainXml(host)), host, 'cpu mode')
})

t.test('the XML has what libvirt needs', async (t) => {
  const root = parseXml(toDomainXml(config))
  t.equal(root.name, 'domain')
  t.equal(root.attrs.type, 'kvm', 'domain type')
  t.equal(path(root, 'name')?.text, 'instance-0001')
  t.equal(path(root, 'uuid')?.text, config.uuid)
  t.same(path(root, 'memory')?.attrs, { unit: 'MiB' })
  t.equal(path(root, 'memory')?.text, '512')
  t.equal(path(root, 'vcpu')?.text, '2')
  t.equal(path(root, 'os', 'type')?.text, 'hvm')
  t.same(path(root, 'os', 'type')?.attrs, { arch: 'x86_64', machine: 'pc' })
  t.ok(path(root, 'features', 'acpi'), 'ACPI, so the power button works')
  const devices = path(root, 'devices')
  const disks = childrenNamed(devices, 'disk')
  t.equal(disks.length, 2)
  t.same(path(disks[0], 'driver')?.attrs, { name: 'qemu', type: 'qcow2' }, 'qcow2 driver')
  t.same(path(disks[0], 'target')?.attrs, { dev: 'vda', bus: 'virtio' }, 'virtio vda')
  t.same(path(disks[0], 'boot')?.attrs, { order: '1' }, 'first disk boots')
  t.notOk(path(disks[1], 'boot'), 'second disk does not')
  t.same(path(disks[1], 'driver')?.attrs, { name: 'qemu', type: 'raw' })
  const nics = childrenNamed(devices, 'interface')
  t.equal(nics[0]?.attrs.type, 'bridge', 'bridge interface')
  t.same(path(nics[0], 'mac')?.attrs, { address: 'fa:16:3e:12:34:56' })
  t.same(path(nics[0], 'source')?.attrs, { bridge: 'brq-physnet1' })
  t.same(path(nics[0], 'model')?.attrs, { type: 'virtio' })
  t.same(path(nics[0], 'rom')?.attrs, { enabled: 'no' }, 'no option ROM (iPXE) on NICs: guests boot from disk')
  t.same(path(root, 'os', 'bootmenu')?.attrs, { enable: 'no' }, 'no boot menu wait')
  const serial = childrenNamed(devices, 'serial')
  t.equal(serial.length, 1, 'one serial port')
  t.equal(serial[0]?.attrs.type, 'file', 'written to a file')
  t.same(path(serial[0], 'source')?.attrs, { path: config.serialLogPath, append: 'on' }, 'appended across boots')
  t.same(childrenNamed(devices, 'graphics'), [], 'no graphics')
  t.same(childrenNamed(devices, 'video'), [], 'no video')
})

t.test('the config drive: a read-only CD-ROM on IDE (i440fx) or SATA (q35), read back', async (t) => {
  for (const [bus, dev] of [['ide', 'hdd'], ['sata', 'sda']] as const) {
    const withDrive: DomainConfig = { ...config, cdrom: { path: '/var/lib/strato/instances/6f1c/disk.config', bus } }
    const xml = toDomainXml(withDrive)
    t.same(parseDomainXml(xml), withDrive, `${bus}: round trip`)
    const disks = childrenNamed(path(parseXml(xml), 'devices'), 'disk')
    const cd = disks.find((d) => d.attrs.device === 'cdrom')
    t.same(cd?.attrs, { type: 'file', device: 'cdrom' })
    t.same(path(cd, 'driver')?.attrs, { name: 'qemu', type: 'raw' })
    t.same(path(cd, 'target')?.attrs, { dev, bus }, `${bus}: ${dev}`)
    t.ok(path(cd, 'readonly'), 'read-only')
    t.notOk(path(cd, 'boot'), 'it does not boot')
    t.equal(disks.filter((d) => d.attrs.device === 'disk').length, 2, 'the disks are still the disks')
  }
  t.notMatch(toDomainXml(config), /cdrom/, 'no drive, no CD-ROM')
})

t.test('no serial port when no log path is given', async (t) => {
  const { serialLogPath: _, ...noSerial } = config
  const xml = toDomainXml(noSerial)
  t.notMatch(xml, /<serial/)
  t.same(parseDomainXml(xml), noSerial)
})

t.test('values are escaped', async (t) => {
  const odd = { ...config, disks: [{ ...config.disks[0]!, path: "/srv/it's <odd> & \"quoted\"" }] }
  const xml = toDomainXml(odd)
  t.match(xml, /&apos;s &lt;odd&gt; &amp; &quot;quoted&quot;/)
  t.equal(parseDomainXml(xml).disks[0]?.path, odd.disks[0]?.path)
})

t.test('reads libvirt\'s expanded XML', async (t) => {
  // Trimmed from `virsh dumpxml` of a running Strato guest (libvirt 9.0).
  const live = `<domain type='kvm' id='7'>
  <name>strato-it-1-xml-889ec20e</name>
  <uuid>889ec20e-860e-4a00-9885-c93ae127e647</uuid>
  <memory unit='KiB'>65536</memory>
  <currentMemory unit='KiB'>65536</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <resource><partition>/machine</partition></resource>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type></os>
  <features><acpi/><apic/></features>
  <cpu mode='custom' match='exact' check='full'><model fallback='forbid'>qemu64</model></cpu>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/tmp/strato-virt-x/889ec20e.qcow2' index='1'/>
      <backingStore/>
      <target dev='vda' bus='virtio'/>
      <boot order='1'/>
      <alias name='virtio-disk0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>
    </disk>
    <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/></disk>
    <interface type='bridge'>
      <mac address='fa:16:3e:00:00:01'/>
      <source bridge='stit1234'/>
      <target dev='vnet3'/>
      <model type='virtio'/>
    </interface>
    <interface type='network'><source network='default'/></interface>
    <serial type='file'>
      <source path='/tmp/strato-virt-x/889ec20e.console.log' append='on'/>
      <target type='isa-serial' port='0'><model name='isa-serial'/></target>
      <alias name='serial0'/>
    </serial>
    <console type='file'><source path='/tmp/strato-virt-x/889ec20e.console.log' append='on'/><target type='serial' port='0'/></console>
    <memballoon model='none'/>
  </devices>
  <seclabel type='dynamic' model='dac' relabel='yes'><label>+64055:+108</label></seclabel>
</domain>
`
  const parsed = parseDomainXml(live)
  t.same(parsed, {
    type: 'kvm',
    uuid: '889ec20e-860e-4a00-9885-c93ae127e647',
    name: 'strato-it-1-xml-889ec20e',
    vcpus: 1,
    memoryMiB: 64,
    arch: 'x86_64',
    machine: 'pc-i440fx-7.2',
    disks: [{ path: '/tmp/strato-virt-x/889ec20e.qcow2', format: 'qcow2', bus: 'virtio', device: 'vda' }],
    interfaces: [{ mac: 'fa:16:3e:00:00:01', bridge: 'stit1234', model: 'virtio', device: 'vnet3' }],
    serialLogPath: '/tmp/strato-virt-x/889ec20e.console.log',
  })
})

t.test('malformed input is refused', async (t) => {
  t.throws(() => parseDomainXml('<network/>'), /expected <domain>/)
  t.throws(() => parseDomainXml("<domain type='xen'><name>x</name></domain>"), /unsupported domain type/)
  t.throws(() => parseDomainXml("<domain type='kvm'><name>x</name>"), /unterminated/)
  t.throws(() => parseDomainXml("<domain type='kvm'><name>x</nam></domain>"), /expected <\/name>/)
})

t.test('a network disk: <disk type=network> with an NBD source over TLS, read back', async (t) => {
  const network = { protocol: 'nbd' as const, address: '192.0.2.7', port: 10_811, name: 'volume-5b1c0c2e-8f0b-4c1e-9a59-0d5f4f6a0b12', tls: true }
  const disk = { path: `nbd://192.0.2.7:10811/${network.name}`, format: 'raw' as const, bus: 'virtio' as const, device: 'vdb', serial: '5b1c0c2e-8f0b-4c1e-9', network }
  const withNbd: DomainConfig = { ...config, disks: [config.disks[0]!, disk] }
  t.same(parseDomainXml(toDomainXml(withNbd)), withNbd, 'round trip')
  const xml = parseXml(toDiskXml(disk))
  t.equal(xml.attrs.type, 'network')
  const source = path(xml, 'source')!
  t.same(source.attrs, { protocol: 'nbd', name: network.name, tls: 'yes' }, 'the export\'s name, TLS on')
  t.same(path(xml, 'source', 'host')!.attrs, { name: '192.0.2.7', port: '10811' }, 'where it listens')
  t.equal(path(xml, 'driver')!.attrs.type, 'raw', 'an export serves the guest\'s bytes')
  // A running domain's XML numbers its sources: QEMU's block node of vdb's is libvirt-<index>-storage.
  const live = toDomainXml(withNbd).replace(`<source protocol="nbd"`, `<source index="3" protocol="nbd"`).replace(`<source protocol='nbd'`, `<source index='3' protocol='nbd'`)
  t.equal(diskStorageNode(live, 'vdb'), 'libvirt-3-storage', 'the block node of a running domain\'s disk')
  t.equal(diskStorageNode(live, 'vdc'), undefined, 'none for a device the domain does not have')
  t.equal(diskStorageNode(toDomainXml(withNbd), 'vdb'), undefined, 'none in a definition (no source index)')
})

t.test('a multiattach volume\'s disk is <shareable/>, read back; a disk without it is not', async (t) => {
  const network = { protocol: 'nbd' as const, address: '127.0.0.1', port: 10_812, name: 'volume-5b1c0c2e-8f0b-4c1e-9a59-0d5f4f6a0b12', tls: true }
  const disk = { path: `nbd://127.0.0.1:10812/${network.name}`, format: 'raw' as const, bus: 'virtio' as const, device: 'vdb', serial: '5b1c0c2e-8f0b-4c1e-9', network, shareable: true }
  const shared: DomainConfig = { ...config, disks: [config.disks[0]!, disk] }
  t.same(parseDomainXml(toDomainXml(shared)), shared, 'round trip')
  t.ok(path(parseXml(toDiskXml(disk)), 'shareable'), '<shareable/> in the disk element')
  t.notOk(path(parseXml(toDiskXml({ ...disk, shareable: false })), 'shareable'), 'none when not shared')
  t.notOk(parseDomainXml(toDomainXml(config)).disks.some((d) => d.shareable), 'a domain\'s other disks are not shareable')
})
