import t from 'tap'
import { FailedPrecondition, InvalidArgument } from '../../../../proto/errors.js'
import { checkPowerTransition, networkDiskPath, tailBytes, validateGuestSpec, validateVolumeDisk, type GuestSpec } from '../../../../agent/virt/driver.js'
import { PowerState } from '../../../../proto/power-state.js'

const nbdNetwork = { protocol: 'nbd' as const, address: '127.0.0.1', port: 10_811, name: 'volume-1', tls: true }
const nbdBoot = { path: networkDiskPath(nbdNetwork), network: nbdNetwork, format: 'raw' as const, bus: 'virtio' as const, device: 'vda', shareable: true }
const spec: GuestSpec = {
  uuid: '6f1c0c2e-8f0b-4c1e-9a59-0d5f4f6a0b11',
  name: 'instance-1',
  vcpus: 1,
  memoryMiB: 64,
  disks: [{ path: '/d/disk', format: 'qcow2', bus: 'virtio', device: 'vda' }],
  nics: [{ mac: 'fa:16:3e:00:00:01', bridge: 'br-ex', model: 'virtio' }],
  consoleLogPath: '/d/console.log',
}

t.test('a good spec passes', async (t) => {
  t.doesNotThrow(() => validateGuestSpec(spec))
  t.doesNotThrow(() => validateGuestSpec({ ...spec, disks: [nbdBoot] }), 'the boot disk may be an NBD export (a multiattach boot volume), shareable')
})

t.test('each bad field is named', async (t) => {
  const bad: [string, Partial<GuestSpec>][] = [
    ['uuid', { uuid: '6F1C0C2E-8F0B-4C1E-9A59-0D5F4F6A0B11' }],
    ['name', { name: '' }],
    ['vcpus', { vcpus: 1.5 }],
    ['memoryMiB', { memoryMiB: 8 }],
    ['disks', { disks: [] }],
    ['disks[0].path', { disks: [{ ...spec.disks[0]!, path: 'rel/disk' }] }],
    ['disks[0].device', { disks: [{ ...spec.disks[0]!, device: 'sda' }] }],
    ['disks[1].device', { disks: [spec.disks[0]!, spec.disks[0]!] }],
    ['disks[0].shareable', { disks: [{ ...spec.disks[0]!, shareable: true }] }],
    ['disks[0].network.address', { disks: [{ ...nbdBoot, network: { ...nbdBoot.network, address: 'storage.example' } }] }],
    ['nics[0].mac', { nics: [{ ...spec.nics[0]!, mac: 'FA:16:3E:00:00:01' }] }],
    ['nics[1].mac', { nics: [spec.nics[0]!, spec.nics[0]!] }],
    ['nics[0].bridge', { nics: [{ ...spec.nics[0]!, bridge: 'a-very-long-bridge-name' }] }],
    ['consoleLogPath', { consoleLogPath: 'console.log' }],
  ]
  for (const [field, patch] of bad) {
    const error = (() => {
      try {
        validateGuestSpec({ ...spec, ...patch })
      } catch (e) {
        return e
      }
      return undefined
    })()
    t.ok(error instanceof InvalidArgument, `${field}: InvalidArgument`)
    t.equal((error as InvalidArgument).field, field, `${field}: field named`)
  }
})

t.test('power transitions are one table', async (t) => {
  t.equal(checkPowerTransition('powerOn', PowerState.SHUTDOWN, 'u'), 'run')
  t.equal(checkPowerTransition('powerOn', PowerState.CRASHED, 'u'), 'run')
  t.equal(checkPowerTransition('powerOn', PowerState.RUNNING, 'u'), 'noop')
  t.throws(() => checkPowerTransition('powerOn', PowerState.PAUSED, 'u'), FailedPrecondition)
  t.equal(checkPowerTransition('powerOff', PowerState.RUNNING, 'u'), 'run')
  t.equal(checkPowerTransition('powerOff', PowerState.SHUTDOWN, 'u'), 'noop')
  t.equal(checkPowerTransition('softReboot', PowerState.RUNNING, 'u'), 'run')
  for (const state of [PowerState.SHUTDOWN, PowerState.PAUSED, PowerState.CRASHED, PowerState.SUSPENDED]) {
    t.throws(() => checkPowerTransition('softReboot', state, 'u'), FailedPrecondition, `no soft reboot from ${state}`)
    t.equal(checkPowerTransition('hardReboot', state, 'u'), 'run', `hard reboot from ${state}`)
  }
  t.throws(() => checkPowerTransition('softReboot', PowerState.SHUTDOWN, 'abc'), /cannot softReboot guest abc: it is SHUTDOWN/)
})

t.test('tailBytes cuts on a character boundary', async (t) => {
  t.equal(tailBytes(Buffer.from('hello'), 10), 'hello')
  t.equal(tailBytes(Buffer.from('hello'), 3), 'llo')
  t.equal(tailBytes(Buffer.from('aé'), 1), '', 'half of é is dropped, not garbled')
  t.equal(tailBytes(Buffer.from('aé'), 2), 'é')
})

t.test('a network volume disk: an NBD export at an IP address and port, its URL as the path; each bad field named', async (t) => {
  const network = { protocol: 'nbd' as const, address: '192.0.2.7', port: 10_811, name: 'volume-1', tls: true }
  const disk = { path: networkDiskPath(network), format: 'raw' as const, bus: 'virtio' as const, device: 'vdb', serial: 'abc', network }
  t.equal(disk.path, 'nbd://192.0.2.7:10811/volume-1')
  t.doesNotThrow(() => validateVolumeDisk(disk))
  for (const [field, bad] of [
    ['network.address', { ...disk, network: { ...network, address: 'storage.example' } }],
    ['network.port', { ...disk, network: { ...network, port: 0 } }],
    ['network.name', { ...disk, network: { ...network, name: 'a b' } }],
    ['path', { ...disk, path: '/dev/nbd0' }],
    ['shareable', { ...disk, format: 'qcow2', shareable: true }],
  ] as const) t.throws(() => validateVolumeDisk(bad), { name: 'InvalidArgument', field }, field)
  t.doesNotThrow(() => validateVolumeDisk({ ...disk, shareable: true }), 'a raw disk may be shareable (a multiattach volume\'s export)')
})
