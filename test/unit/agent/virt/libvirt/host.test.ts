import t from 'tap'
import { AlreadyExists, FailedPrecondition, Internal, InvalidArgument, NotFound, Unavailable } from '../../../../../proto/errors.js'
import { chooseAccelerator, kvmDeviceUsable, parseHostRecord, translateLibvirtError } from '../../../../../agent/virt/libvirt/host.js'
import { formatVersion } from '../../../../../agent/virt/libvirt/constants.js'
import { PowerState } from '../../../../../proto/power-state.js'
import { powerStateOf } from '../../../../../agent/virt/libvirt/guest.js'

const err = (code: number) => ({ code, domain: 10, level: 2, message: 'libvirt says no', call: 'virDomainCreate' })

t.test('libvirt errors map onto the closed set', async (t) => {
  const cases: [number, abstract new (...a: never[]) => Error][] = [
    [42, NotFound],
    [28, AlreadyExists],
    [27, InvalidArgument],
    [55, FailedPrecondition],
    [38, Internal],
    [1, Internal],
    [39, Unavailable],
    [5, Unavailable],
    [999, Internal],
  ]
  for (const [code, ctor] of cases) {
    const e = translateLibvirtError(err(code), 'start guest x')
    t.ok(e instanceof ctor, `code ${code} → ${ctor.name}`)
    t.equal(e.message, 'start guest x: libvirt says no', 'message says what and why')
    t.same(e.cause, err(code), 'raw libvirt error kept as cause')
  }
})

t.test('libvirt domain states map to Nova power states', async (t) => {
  t.equal(powerStateOf(1), PowerState.RUNNING)
  t.equal(powerStateOf(2), PowerState.RUNNING, 'BLOCKED is running')
  t.equal(powerStateOf(3), PowerState.PAUSED)
  t.equal(powerStateOf(4), PowerState.SHUTDOWN)
  t.equal(powerStateOf(5), PowerState.SHUTDOWN, 'SHUTOFF')
  t.equal(powerStateOf(6), PowerState.CRASHED)
  t.equal(powerStateOf(7), PowerState.SUSPENDED, 'PMSUSPENDED')
  t.equal(powerStateOf(0), PowerState.NOSTATE)
  t.equal(powerStateOf(42), PowerState.NOSTATE)
})

const capabilities = (domains: string) => `<capabilities>
  <host><uuid>x</uuid><cpu><arch>x86_64</arch><model>EPYC-Rome</model><vendor>AMD</vendor></cpu></host>
  <guest><os_type>hvm</os_type><arch name='i686'><domain type='qemu'/><domain type='kvm'/></arch></guest>
  <guest><os_type>hvm</os_type><arch name='x86_64'><wordsize>64</wordsize>${domains}</arch></guest>
</capabilities>`

t.test('host facts from capabilities and node info', async (t) => {
  const record = {
    hostname: 'cmp1',
    type: 'QEMU',
    version: 7002022,
    libVersion: 9000000,
    capabilitiesXml: capabilities("<domain type='qemu'/><domain type='kvm'/>"),
    node: { model: 'x86_64', memoryKiB: 8 * 1024 * 1024, cpus: 4, mhz: 2600 },
  }
  const info = parseHostRecord(record)
  t.same(info, {
    hostname: 'cmp1',
    hypervisorType: 'QEMU',
    hypervisorVersion: 7002022,
    libvirtVersion: 9000000,
    cpuModel: 'EPYC-Rome',
    arch: 'x86_64',
    cpus: 4,
    memoryMiB: 8192,
    domainTypes: ['kvm', 'qemu'],
  })
  t.equal(formatVersion(7002022), '7.2.22')
  t.equal(chooseAccelerator(info, true), 'kvm', 'KVM offered and usable')
  t.equal(chooseAccelerator(info, false), 'tcg', 'device not usable: TCG')
  const noKvm = parseHostRecord({ ...record, capabilitiesXml: capabilities("<domain type='qemu'/>") })
  t.same(noKvm.domainTypes, ['qemu'], 'only the host arch counts')
  t.equal(chooseAccelerator(noKvm, true), 'tcg', 'libvirt offers no KVM: TCG')
})

t.test('kvm device usability', async (t) => {
  t.equal(await kvmDeviceUsable('/nonexistent/kvm'), false, 'missing device')
  t.equal(await kvmDeviceUsable('/dev/null'), true, 'a rw-for-all character device')
  t.equal(await kvmDeviceUsable('/etc/hostname'), false, 'not a character device')
})
