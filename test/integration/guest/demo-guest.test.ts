/**
 * Integration: the demo guest (cli/stack/guest/) on real libvirt — KVM, or TCG
 * without /dev/kvm — with the agent's domain XML and config drive. Its NIC is
 * on a bridge of this test's own whose only other port leads into a network
 * namespace this test makes, where a dnsmasq of its own gives the guest a
 * static lease; nothing is routed anywhere else. Checked: the ready line on
 * the serial console carries the hostname from the config drive and the
 * leased address; `ssh cirros@…` with the config drive's key logs in (from
 * the namespace) and sees the user data ran; the ACPI power button powers the
 * guest off within seconds; after a new start a file written over SSH is
 * still there and the SSH host key is the same. Everything goes afterwards,
 * also on failure. Needs root, libvirt-daemon-system, qemu-system-x86,
 * dnsmasq-base, openssh-client, and the guest image's build tools and apt
 * (or the image already in the cache).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes, randomUUID } from 'node:crypto'
import { chmod, copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { buildGuestImage, GUEST_READY, GUEST_USER } from '../../../cli/stack/guest/build.js'
import { GUEST_FLAVOR } from '../../../cli/stack/demo.js'
import { configDriveFiles, writeConfigDrive } from '../../../agent/disk/config-drive.js'
import { toDomainXml } from '../../../agent/virt/libvirt/domain-xml.js'
import { ensureLibvirtd, virsh } from '../../helpers/libvirt.js'

const run = promisify(execFile)

const sfx = `${process.pid.toString(36)}${randomBytes(2).toString('hex')}`.slice(-8)
const ns = `strato-guest-${sfx}`
const bridge = `sgbr${sfx}`
const vethOut = `sgv${sfx}`
const vethIn = `sgn${sfx}`
const domain = `strato-guest-test-${sfx}`
const hostname = `guest-${sfx}`
const gateway = '10.244.0.1'
const leased = '10.244.0.42'
const mac = `52:54:00:${[...randomBytes(3)].map((b) => b.toString(16).padStart(2, '0')).join(':')}`

/** Polls `probe` until it returns a value (not undefined), up to `ms`. */
async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>, every = 100): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await probe()
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, every))
  }
}

const domState = async () => (await virsh('domstate', domain).catch(() => 'absent')).trim()

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for libvirt and network namespaces')
} else {
  t.test('the demo guest: DHCP, config drive, SSH, ACPI power-off, a persistent /home', async (t) => {
    const started = Date.now()
    const image = await buildGuestImage({ log: (l) => t.comment(l) })
    t.comment(`image ${image.path} (${image.built ? `built in ${image.seconds.toFixed(1)} s` : 'cached'})`)
    await ensureLibvirtd()
    const kvm = existsSync('/dev/kvm')

    const work = await mkdtemp(path.join(tmpdir(), 'strato-guest-'))
    await chmod(work, 0o755) // QEMU runs as libvirt-qemu
    let dnsmasq: ChildProcess | undefined
    t.teardown(async () => {
      await virsh('destroy', domain).catch(() => undefined)
      await virsh('undefine', domain).catch(() => undefined)
      if (dnsmasq && dnsmasq.exitCode === null) {
        const gone = new Promise((r) => dnsmasq!.once('exit', r))
        dnsmasq.kill('SIGTERM')
        await gone
      }
      await run('ip', ['netns', 'delete', ns]).catch(() => undefined)
      await run('ip', ['link', 'delete', vethOut]).catch(() => undefined)
      await run('ip', ['link', 'delete', bridge]).catch(() => undefined)
      await rm(work, { recursive: true, force: true })
    })

    // The network: bridge (no address on the host) — veth — namespace with the gateway address and dnsmasq.
    await run('ip', ['netns', 'add', ns])
    await run('ip', ['link', 'add', bridge, 'type', 'bridge'])
    await run('ip', ['link', 'set', bridge, 'up'])
    await run('ip', ['link', 'add', vethOut, 'type', 'veth', 'peer', 'name', vethIn, 'netns', ns])
    await run('ip', ['link', 'set', vethOut, 'master', bridge, 'up'])
    await run('ip', ['-n', ns, 'addr', 'add', `${gateway}/24`, 'dev', vethIn])
    await run('ip', ['-n', ns, 'link', 'set', vethIn, 'up'])
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
    let dhcpLog = ''
    dnsmasq = spawn('ip', ['netns', 'exec', ns, 'dnsmasq', '--no-daemon', '--conf-file=/dev/null', '--port=0', '--no-resolv', '--no-ping', '--log-dhcp',
      `--interface=${vethIn}`, '--bind-interfaces', '--dhcp-range=10.244.0.0,static,255.255.255.0,10m', `--dhcp-host=${mac},${leased}`,
      `--dhcp-leasefile=${path.join(work, 'leases')}`, `--pid-file=${path.join(work, 'dnsmasq.pid')}`, `--dhcp-option=option:router,${gateway}`], { stdio: ['ignore', 'pipe', 'pipe'] })
    dnsmasq.stdout!.on('data', (d) => (dhcpLog += d))
    dnsmasq.stderr!.on('data', (d) => (dhcpLog += d))
    await until('dnsmasq to start', 10_000, async () => (dhcpLog.includes('DHCP, sockets bound') ? true : dnsmasq!.exitCode !== null ? Promise.reject(new Error(`dnsmasq exited: ${dhcpLog}`)) : undefined))

    // The disk (a copy of the cached image), the config drive with a key, a hostname and user data, the domain.
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'test@strato', '-f', path.join(work, 'key')])
    const publicKey = (await readFile(path.join(work, 'key.pub'), 'utf8')).trim()
    const disk = path.join(work, 'disk.qcow2')
    await copyFile(image.path, disk)
    await chmod(disk, 0o644)
    const uuid = randomUUID()
    const userData = '#!/bin/sh\necho "user data ran as $(id -un)" > /tmp/user-data-ran\n'
    const drive = path.join(work, 'disk.config')
    await writeConfigDrive(drive, configDriveFiles({
      instanceUuid: uuid, displayName: hostname, hostname, projectId: 'p', availabilityZone: 'nova', keyName: 'testkey', publicKey,
      userData: Buffer.from(userData).toString('base64'), metadata: {},
      nics: [{ portId: randomUUID(), macAddress: mac, networkId: randomUUID(), ips: [{ address: leased, subnetId: randomUUID(), cidr: '10.244.0.0/24', ipVersion: 4, gatewayIp: gateway, dnsNameservers: [], hostRoutes: [] }] }],
    }))
    await chmod(drive, 0o644)
    const consoleLog = path.join(work, 'console.log')
    const xml = toDomainXml({
      type: kvm ? 'kvm' : 'qemu', uuid, name: domain, vcpus: 1, memoryMiB: GUEST_FLAVOR.ram, arch: 'x86_64', machine: 'pc',
      disks: [{ path: disk, format: 'qcow2', bus: 'virtio', device: 'vda' }], cdrom: { path: drive, bus: 'ide' },
      interfaces: [{ mac, bridge, model: 'virtio' }], serialLogPath: consoleLog,
    })
    await writeFile(path.join(work, 'domain.xml'), xml)
    await virsh('define', path.join(work, 'domain.xml'))

    const readyLines = async () => ((await readFile(consoleLog, 'utf8').catch(() => '')).match(new RegExp(`^${GUEST_READY}.*$`, 'gm')) ?? [])
    const knownHosts = path.join(work, 'known_hosts')
    const ssh = (cmd: string, strict: 'accept-new' | 'yes' = 'yes') =>
      run('ip', ['netns', 'exec', ns, 'ssh', '-i', path.join(work, 'key'), '-o', 'BatchMode=yes', '-o', `StrictHostKeyChecking=${strict}`, '-o', `UserKnownHostsFile=${knownHosts}`,
        '-o', 'ConnectTimeout=5', '-o', 'LogLevel=ERROR', `${GUEST_USER}@${leased}`, cmd], { timeout: 30_000 }).then((r) => r.stdout)
    /** Starts the domain; resolves with seconds to the n-th ready line and to the first SSH login. */
    const boot = async (n: number) => {
      const t0 = Date.now()
      await virsh('start', domain)
      const line = await until(`ready line #${n} on the serial console`, 120_000, async () => (await readyLines())[n - 1])
      const ready = (Date.now() - t0) / 1000
      const out = await until('an SSH login', 60_000, () => ssh('echo in', n === 1 ? 'accept-new' : 'yes').catch(() => undefined), 250)
      return { line, ready, ssh: (Date.now() - t0) / 1000, out }
    }

    const first = await boot(1)
    t.comment(`${kvm ? 'KVM' : 'TCG'}: virsh start → ready line ${first.ready.toFixed(1)} s, → SSH login ${first.ssh.toFixed(1)} s`)
    t.equal(first.line, `${GUEST_READY} ${hostname} ${leased} (login: ssh ${GUEST_USER}@${leased})`, 'the ready line: the config drive\'s hostname, the leased address')
    t.match(dhcpLog, new RegExp(`DHCPACK\\(${vethIn}\\) ${leased.replaceAll('.', '\\.')} ${mac}`), 'the address came from our dnsmasq')
    t.equal(first.out, 'in\n', `ssh -i key ${GUEST_USER}@${leased} logs in`)
    t.equal(await ssh('id -un; hostname; cat /tmp/user-data-ran; cat /sys/class/net/eth0/address'), `${GUEST_USER}\n${hostname}\nuser data ran as root\n${mac}\n`, 'as cirros, on the named host; the user data ran')
    const note = `written before the reboot ${randomUUID()}`
    await ssh(`echo '${note}' > ~/note && sync`)

    // The power button: busybox acpid → poweroff.
    const off = Date.now()
    await virsh('shutdown', domain)
    await until('the guest to power off', 60_000, async () => ((await domState()) === 'shut off' ? true : undefined))
    const offSeconds = (Date.now() - off) / 1000
    t.comment(`ACPI shutdown → shut off in ${offSeconds.toFixed(1)} s`)
    t.ok(offSeconds < 20, `ACPI power-off within seconds (${offSeconds.toFixed(1)} s)`)

    const second = await boot(2)
    t.comment(`second boot: ready line ${second.ready.toFixed(1)} s, SSH login ${second.ssh.toFixed(1)} s`)
    t.equal(second.out, 'in\n', 'the same SSH host key after the reboot (known_hosts is strict now)')
    t.equal(await ssh('cat ~/note'), `${note}\n`, 'what the user wrote survived the power cycle')
    t.equal((await ssh('cat ~/.ssh/authorized_keys')).split('\n').filter((l) => l === publicKey).length, 1, 'the key is in authorized_keys once')
    t.comment(`wall time ${((Date.now() - started) / 1000).toFixed(1)} s`)
  })
}
