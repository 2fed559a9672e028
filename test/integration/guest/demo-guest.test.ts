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
 * still there and the SSH host key is the same. That second start is without
 * the config drive (the domain redefined without its CD-ROM): the guest gets
 * a new hostname and a second key from a metadata service on 169.254.169.254
 * in the namespace (busybox httpd serving the EC2 paths), reached by the
 * classless static route (option 121) dnsmasq hands out. (One guest booted
 * twice, not two guests: a TCG Linux boot is ~10 CPU-s of the suite's.)
 * Everything goes afterwards, also on failure. Needs root, libvirt-daemon-system, qemu-system-x86,
 * dnsmasq-base, openssh-client, and the guest image's build tools and apt
 * (or the image already in the cache).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes, randomUUID } from 'node:crypto'
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
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
const gateway = '10.244.0.1'
const METADATA = '169.254.169.254'
const randomMac = () => `52:54:00:${[...randomBytes(3)].map((b) => b.toString(16).padStart(2, '0')).join(':')}`
/** The guest: first with a config drive, then without one (it asks the metadata service, which names it mdHostname). */
const guests = {
  drive: { domain: `strato-guest-test-${sfx}`, hostname: `guest-${sfx}`, mdHostname: `md-guest-${sfx}`, mac: randomMac(), ip: '10.244.0.42' },
}

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

const domState = async (domain: string) => (await virsh('domstate', domain).catch(() => 'absent')).trim()

/** A background process of the test, stopped at teardown; its output is collected. */
function daemon(args: string[]): { proc: ChildProcess; output: () => string; stop: () => Promise<void> } {
  let out = ''
  const proc = spawn(args[0]!, args.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
  proc.stdout!.on('data', (d) => (out += d))
  proc.stderr!.on('data', (d) => (out += d))
  return {
    proc,
    output: () => out,
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return
      const gone = new Promise((r) => proc.once('exit', r))
      proc.kill('SIGTERM')
      await gone
    },
  }
}

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for libvirt and network namespaces')
} else {
  const started = Date.now()
  const image = await buildGuestImage({ log: (l) => t.comment(l) })
  t.comment(`image ${image.path} (${image.built ? `built in ${image.seconds.toFixed(1)} s` : 'cached'})`)
  await ensureLibvirtd()
  const kvm = existsSync('/dev/kvm')
  const work = await mkdtemp(path.join(tmpdir(), 'strato-guest-'))
  await chmod(work, 0o755) // QEMU runs as libvirt-qemu
  const daemons: Array<ReturnType<typeof daemon>> = []
  t.teardown(async () => {
    for (const g of Object.values(guests)) {
      await virsh('destroy', g.domain).catch(() => undefined)
      await virsh('undefine', g.domain).catch(() => undefined)
    }
    for (const d of daemons) await d.stop()
    await run('ip', ['netns', 'delete', ns]).catch(() => undefined)
    await run('ip', ['link', 'delete', vethOut]).catch(() => undefined)
    await run('ip', ['link', 'delete', bridge]).catch(() => undefined)
    await rm(work, { recursive: true, force: true })
    t.comment(`wall time ${((Date.now() - started) / 1000).toFixed(1)} s`)
  })

  // The network: bridge (no address on the host) — veth — namespace with the gateway and metadata addresses.
  await run('ip', ['netns', 'add', ns])
  await run('ip', ['link', 'add', bridge, 'type', 'bridge'])
  await run('ip', ['link', 'set', bridge, 'up'])
  await run('ip', ['link', 'add', vethOut, 'type', 'veth', 'peer', 'name', vethIn, 'netns', ns])
  await run('ip', ['link', 'set', vethOut, 'master', bridge, 'up'])
  await run('ip', ['-n', ns, 'addr', 'add', `${gateway}/24`, 'dev', vethIn])
  await run('ip', ['-n', ns, 'addr', 'add', `${METADATA}/32`, 'dev', vethIn])
  await run('ip', ['-n', ns, 'link', 'set', vethIn, 'up'])
  await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
  // Static leases only, no ping check; option 121 carries the default and the metadata routes.
  const dnsmasq = daemon(['ip', 'netns', 'exec', ns, 'dnsmasq', '--no-daemon', '--conf-file=/dev/null', '--port=0', '--no-resolv', '--no-ping', '--log-dhcp',
    `--interface=${vethIn}`, '--bind-interfaces', '--dhcp-range=10.244.0.0,static,255.255.255.0,10m',
    ...Object.values(guests).map((g) => `--dhcp-host=${g.mac},${g.ip}`),
    `--dhcp-leasefile=${path.join(work, 'leases')}`, `--dhcp-option=option:router,${gateway}`,
    `--dhcp-option=option:classless-static-route,${METADATA}/32,${gateway},0.0.0.0/0,${gateway}`])
  daemons.push(dnsmasq)
  await until('dnsmasq to start', 10_000, async () => (dnsmasq.output().includes('DHCP, sockets bound') ? true : dnsmasq.proc.exitCode !== null ? Promise.reject(new Error(`dnsmasq exited: ${dnsmasq.output()}`)) : undefined))

  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'test@strato', '-f', path.join(work, 'key')])
  const publicKey = (await readFile(path.join(work, 'key.pub'), 'utf8')).trim()

  /** Defines a guest: a copy of the image, maybe a config drive, the agent's domain XML. */
  const define = async (g: (typeof guests)[keyof typeof guests], drive?: Parameters<typeof configDriveFiles>[0]) => {
    const dir = path.join(work, g.domain)
    await mkdir(dir, { mode: 0o755 })
    const disk = path.join(dir, 'disk.qcow2')
    await copyFile(image.path, disk)
    await chmod(disk, 0o644)
    const cdrom = path.join(dir, 'disk.config')
    if (drive) {
      await writeConfigDrive(cdrom, configDriveFiles(drive))
      await chmod(cdrom, 0o644)
    }
    const consoleLog = path.join(dir, 'console.log')
    const uuid = drive?.instanceUuid ?? randomUUID()
    /** (Re)defines the domain, with the config drive or without it. */
    const defineDomain = async (withDrive: boolean) => {
      const xml = toDomainXml({
        type: kvm ? 'kvm' : 'qemu', uuid, name: g.domain, vcpus: 1, memoryMiB: GUEST_FLAVOR.ram, arch: 'x86_64', machine: 'pc',
        disks: [{ path: disk, format: 'qcow2', bus: 'virtio', device: 'vda' }], ...(drive && withDrive ? { cdrom: { path: cdrom, bus: 'ide' as const } } : {}),
        interfaces: [{ mac: g.mac, bridge, model: 'virtio' }], serialLogPath: consoleLog,
      })
      await writeFile(path.join(dir, 'domain.xml'), xml)
      await virsh('define', path.join(dir, 'domain.xml'))
    }
    await defineDomain(true)

    const readyLines = async () => (await readFile(consoleLog, 'utf8').catch(() => '')).match(new RegExp(`^${GUEST_READY}.*$`, 'gm')) ?? []
    const knownHosts = path.join(dir, 'known_hosts')
    const ssh = (cmd: string, strict: 'accept-new' | 'yes' = 'yes', user = GUEST_USER, key = path.join(work, 'key')) =>
      run('ip', ['netns', 'exec', ns, 'ssh', '-i', key, '-o', 'BatchMode=yes', '-o', `StrictHostKeyChecking=${strict}`, '-o', `UserKnownHostsFile=${knownHosts}`,
        '-o', 'ConnectTimeout=5', '-o', 'LogLevel=ERROR', `${user}@${g.ip}`, cmd], { timeout: 30_000 }).then((r) => r.stdout)
    /** Starts the domain; resolves with seconds to the n-th ready line and to the first SSH login (with `key`). */
    const boot = async (n: number, key?: string) => {
      const t0 = Date.now()
      await virsh('start', g.domain)
      const line = await until(`ready line #${n} on ${g.domain}'s serial console`, 120_000, async () => (await readyLines())[n - 1])
      const ready = (Date.now() - t0) / 1000
      let lastError = ''
      const out = await until(`an SSH login to ${g.ip}`, 60_000, () => ssh('echo in', n === 1 ? 'accept-new' : 'yes', GUEST_USER, key).catch((e: Error) => void (lastError = e.message)), 250).catch(async (e: Error) => {
        throw new Error(`${e.message} (${lastError.trim()}); the guest's console:\n${(await readFile(consoleLog, 'utf8').catch(() => '')).slice(-3000)}`)
      })
      return { line, ready, ssh: (Date.now() - t0) / 1000, out }
    }
    return { ssh, boot, consoleLog, withoutDrive: () => defineDomain(false) }
  }
  const accel = kvm ? 'KVM' : 'TCG'
  const g = guests.drive
  let vm: Awaited<ReturnType<typeof define>>
  const note = `written before the power-off ${randomUUID()}`

  t.test('with a config drive: DHCP, SSH, user data, ACPI power-off', async (t) => {
    const userData = '#!/bin/sh\necho "user data ran as $(id -un)" > /tmp/user-data-ran\n'
    vm = await define(g, {
      instanceUuid: randomUUID(), displayName: g.hostname, hostname: g.hostname, projectId: 'p', availabilityZone: 'nova', keyName: 'testkey', publicKey,
      userData: Buffer.from(userData).toString('base64'), metadata: {},
      nics: [{ portId: randomUUID(), macAddress: g.mac, networkId: randomUUID(), ips: [{ address: g.ip, subnetId: randomUUID(), cidr: '10.244.0.0/24', ipVersion: 4, gatewayIp: gateway, dnsNameservers: [], hostRoutes: [] }] }],
    })

    const first = await vm.boot(1)
    t.comment(`${accel}: virsh start → ready line ${first.ready.toFixed(1)} s, → SSH login ${first.ssh.toFixed(1)} s`)
    t.equal(first.line, `${GUEST_READY} ${g.hostname} ${g.ip} (login: ssh ${GUEST_USER}@${g.ip})`, "the ready line: the config drive's hostname, the leased address")
    t.match(dnsmasq.output(), new RegExp(`DHCPACK\\(${vethIn}\\) ${g.ip.replaceAll('.', '\\.')} ${g.mac}`), 'the address came from our dnsmasq')
    t.equal(first.out, 'in\n', `ssh -i key ${GUEST_USER}@${g.ip} logs in`)
    t.equal(await vm.ssh('id -un; hostname; cat /tmp/user-data-ran; cat /sys/class/net/eth0/address'), `${GUEST_USER}\n${g.hostname}\nuser data ran as root\n${g.mac}\n`, 'as cirros, on the named host; the user data ran')
    await vm.ssh(`echo '${note}' > ~/note && sync`)

    // The power button: busybox acpid → poweroff.
    const off = Date.now()
    await virsh('shutdown', g.domain)
    await until('the guest to power off', 60_000, async () => ((await domState(g.domain)) === 'shut off' ? true : undefined))
    const offSeconds = (Date.now() - off) / 1000
    t.comment(`ACPI shutdown → shut off in ${offSeconds.toFixed(1)} s`)
    t.ok(offSeconds < 20, `ACPI power-off within seconds (${offSeconds.toFixed(1)} s)`)
  })

  t.test('started again without the config drive: hostname and a new key from the metadata service (EC2 paths), by the option-121 route; /home and the host key kept', async (t) => {
    // A second key, served only by the metadata service: logging in with it proves the guest fetched it.
    const mdKey = path.join(work, 'md-key')
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'md@strato', '-f', mdKey])
    const mdPublicKey = (await readFile(`${mdKey}.pub`, 'utf8')).trim()
    const www = path.join(work, 'www')
    await mkdir(path.join(www, 'latest/meta-data/public-keys/0'), { recursive: true })
    await writeFile(path.join(www, 'latest/meta-data/hostname'), `${g.mdHostname}.novalocal`)
    await writeFile(path.join(www, 'latest/meta-data/public-keys/0/openssh-key'), `${mdPublicKey}\n`)
    const httpd = daemon(['ip', 'netns', 'exec', ns, 'busybox', 'httpd', '-f', '-vv', '-p', `${METADATA}:80`, '-h', www])
    daemons.push(httpd)
    await until('the metadata service', 10_000, async () => (await run('ip', ['netns', 'exec', ns, 'busybox', 'wget', '-q', '-O', '-', `http://${METADATA}/latest/meta-data/hostname`]).then(() => true, () => undefined)))

    await vm.withoutDrive()
    t.notMatch(await virsh('dumpxml', g.domain), "device='cdrom'", 'the domain has no config drive now')
    const second = await vm.boot(2, mdKey)
    t.comment(`${accel}, no config drive: virsh start → ready line ${second.ready.toFixed(1)} s, → SSH login ${second.ssh.toFixed(1)} s`)
    t.equal(second.line, `${GUEST_READY} ${g.mdHostname} ${g.ip} (login: ssh ${GUEST_USER}@${g.ip})`, "the metadata service's hostname (short), the leased address")
    t.equal(second.out, 'in\n', 'the key from the metadata service lets us in, and the SSH host key is the same (known_hosts is strict now)')
    t.match(httpd.output(), /openssh-key/, 'the guest asked the metadata service for its key')
    t.match(await vm.ssh(`ip route show ${METADATA}`), new RegExp(`${METADATA.replaceAll('.', '\\.')} via ${gateway.replaceAll('.', '\\.')}`), 'the metadata route came with the lease (option 121)')
    t.equal(await vm.ssh(`wget -q -O- http://${METADATA}/latest/meta-data/hostname`), `${g.mdHostname}.novalocal`, 'a user has wget')
    t.equal(await vm.ssh('cat ~/note'), `${note}\n`, 'what the user wrote survived the power cycle')
    const authorized = (await vm.ssh('cat ~/.ssh/authorized_keys')).split('\n')
    t.equal(authorized.filter((l) => l === publicKey).length, 1, "the config drive's key is in authorized_keys once")
    t.equal(authorized.filter((l) => l === mdPublicKey).length, 1, "the metadata service's key is in authorized_keys once")
    t.equal(await vm.ssh(`id -un; ping -c 1 -W 10 ${gateway} >/dev/null && echo pong`, 'yes', 'root', mdKey), 'root\npong\n', 'root logs in with the key too, and pings (busybox ping wants a raw socket)')
    await virsh('destroy', g.domain).catch(() => undefined)
  })
}
