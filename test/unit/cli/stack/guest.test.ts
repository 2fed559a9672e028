// The demo guest builder's pure parts: the initramfs' cpio writer (read back by
// the host's busybox cpio), the kernel modules' load order, apt's candidate
// versions, the cache key kept while its inputs hold, and the guest's JSON helpers (rootfs/etc/strato/lib.sh, run with
// the host's busybox sh) on what Strato's config drive writer really writes.
import { execFileSync } from 'node:child_process'
import { lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { cpioNewc } from '../../../../cli/stack/guest/cpio.js'
import { loadOrder, moduleName } from '../../../../cli/stack/guest/modules.js'
import { currentKey, fatTime, parseCandidates } from '../../../../cli/stack/guest/build.js'
import { configDriveFiles } from '../../../../agent/disk/config-drive.js'

const root = path.resolve(import.meta.dirname, '../../../..')
const lib = path.join(root, 'cli/stack/guest/rootfs/etc/strato/lib.sh')
const busybox = ['/usr/bin/busybox', '/bin/busybox'].find((p) => { try { return lstatSync(p).isFile() } catch { return false } })

t.test('cpio newc: what the kernel unpacks, byte-for-byte the same each time', async (t) => {
  const entries = [
    { path: 'bin', type: 'dir' as const, mode: 0o755, mtime: 1735689600 },
    { path: 'bin/busybox', type: 'file' as const, mode: 0o755, mtime: 1735689600, data: Buffer.from('#!/bin/true\n') },
    { path: 'bin/sh', type: 'symlink' as const, mode: 0o777, mtime: 1735689600, data: 'busybox' },
    { path: 'etc', type: 'dir' as const, mode: 0o755, mtime: 1735689600 },
    { path: 'etc/shadow', type: 'file' as const, mode: 0o600, mtime: 1735689600, data: 'root:*:1:0:99999:7:::\n' },
    { path: 'etc/empty', type: 'file' as const, mode: 0o644, mtime: 1735689600, data: '' },
  ]
  const a = cpioNewc(entries)
  t.same(a, cpioNewc(entries), 'deterministic')
  t.equal(a.length % 4, 0, 'records are 4-byte aligned')
  t.equal(a.subarray(0, 6).toString(), '070701', 'newc magic')
  t.match(a.subarray(-124).toString('latin1'), /TRAILER!!!/, 'ends with the trailer')
  t.throws(() => cpioNewc([{ path: '/abs', type: 'dir', mode: 0o755, mtime: 0 }]), /relative/)
  if (!busybox) return void t.comment('no busybox on this host to read it back')
  const dir = mkdtempSync(path.join(tmpdir(), 'strato-cpio-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(path.join(dir, 'a.cpio'), a)
  execFileSync(busybox, ['cpio', '-i', '-d', '-m', '-F', path.join(dir, 'a.cpio')], { cwd: dir, stdio: 'ignore' })
  t.equal(readFileSync(path.join(dir, 'bin/busybox'), 'utf8'), '#!/bin/true\n', 'file contents')
  t.equal(lstatSync(path.join(dir, 'bin/busybox')).mode & 0o777, 0o755, 'file mode')
  t.equal(lstatSync(path.join(dir, 'etc/shadow')).mode & 0o777, 0o600)
  t.equal(readlinkSync(path.join(dir, 'bin/sh')), 'busybox', 'symlink target')
  t.equal(readFileSync(path.join(dir, 'etc/empty'), 'utf8'), '', 'an empty file')
  t.equal(lstatSync(path.join(dir, 'etc/shadow')).mtimeMs, 1735689600_000, 'mtime')
})

t.test('kernel modules: dependencies first, each once, as modprobe would load them', async (t) => {
  const dep = [
    'kernel/drivers/virtio/virtio_ring.ko:',
    'kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko',
    'kernel/net/core/failover.ko:',
    'kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko',
    'kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko',
    'kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko',
    'kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko',
    '',
  ].join('\n')
  t.same(loadOrder(dep, ['virtio_net', 'virtio_blk', 'virtio_rng']), [
    'kernel/drivers/virtio/virtio_ring.ko',
    'kernel/drivers/virtio/virtio.ko',
    'kernel/net/core/failover.ko',
    'kernel/drivers/net/net_failover.ko',
    'kernel/drivers/net/virtio_net.ko',
    'kernel/drivers/block/virtio_blk.ko',
    'kernel/drivers/char/hw_random/virtio-rng.ko',
  ])
  t.equal(moduleName('kernel/drivers/char/hw_random/virtio-rng.ko'), 'virtio_rng', "'-' and '_' name one module")
  t.same(loadOrder(dep, ['ext4', 'virtio_blk'], new Set(['ext4'])), ['kernel/drivers/virtio/virtio_ring.ko', 'kernel/drivers/virtio/virtio.ko', 'kernel/drivers/block/virtio_blk.ko'], 'built-in modules are skipped')
  t.throws(() => loadOrder(dep, ['virtio_nett']), /'virtio_nett' is not in modules.dep/, 'a typo is an error')
  t.throws(() => loadOrder('a.ko: b.ko\n', ['a']), /'b.ko' is a dependency but has no line/)
})

t.test('FAT times: 2-second resolution, years from 1980', async (t) => {
  t.same(fatTime(1735689600), [0, (45 << 9) | (1 << 5) | 1], '2025-01-01 00:00:00')
  t.same(fatTime(Date.UTC(2026, 11, 4, 15, 30, 59) / 1000), [(15 << 11) | (30 << 5) | 29, (46 << 9) | (12 << 5) | 4], '2026-12-04 15:30:58')
})

t.test("apt-cache policy: each package's candidate", async (t) => {
  const policy = 'busybox-static:\n  Installed: (none)\n  Candidate: 1:1.35.0-4+deb12u1+b1\n  Version table:\n     1:1.35.0-4+deb12u1+b1 500\nghost:\n  Installed: (none)\n  Candidate: (none)\n'
  t.same([...parseCandidates(policy)], [['busybox-static', '1:1.35.0-4+deb12u1+b1']])
})

t.test("the guest's JSON helpers read Strato's config drive", { skip: busybox ? false : 'no busybox on this host' }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'strato-guest-lib-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx1 alice@laptop'
  const files = configDriveFiles({
    instanceUuid: '0b5c1f9e-1111-4c1e-9a59-0d5f4f6a0b11', displayName: 'Web One', hostname: 'web-one', projectId: 'p', availabilityZone: 'nova',
    keyName: 'mykey', publicKey: `${key}\n`, userData: '', metadata: { role: 'web' },
    nics: [{
      portId: '6f1c0c2e-8f0b-4c1e-9a59-0d5f4f6a0b11', macAddress: 'fa:16:3e:00:00:01', networkId: 'n1',
      ips: [
        { address: '192.168.201.205', subnetId: 's1', ipVersion: 4, cidr: '192.168.201.0/24', gatewayIp: '192.168.201.1', dnsNameservers: ['114.114.114.114'], hostRoutes: [{ destination: '169.254.169.254/32', nexthop: '192.168.201.2' }] },
        { address: 'fd00::5', subnetId: 's2', ipVersion: 6, cidr: 'fd00::/64', gatewayIp: 'fd00::1', dnsNameservers: [], hostRoutes: [] },
      ],
    }],
  })
  writeFileSync(path.join(dir, 'meta_data.json'), files.get('openstack/latest/meta_data.json')!)
  writeFileSync(path.join(dir, 'network_data.json'), files.get('openstack/latest/network_data.json')!)
  const sh = (script: string) => execFileSync(busybox!, ['sh', '-c', `. ${lib}; ${script}`], { cwd: dir, encoding: 'utf8' })
  t.equal(sh('json_string meta_data.json hostname'), 'web-one\n', 'hostname')
  t.equal(sh('json_string meta_data.json uuid'), '0b5c1f9e-1111-4c1e-9a59-0d5f4f6a0b11\n')
  t.equal(sh('json_string meta_data.json nothing'), '', 'a missing key: nothing')
  t.equal(sh('public_keys meta_data.json'), `${key}\n`, 'the key once (from "keys" and "public_keys"), without its JSON newline')
  t.equal(sh('static_network network_data.json'), [
    'addr 192.168.201.205 255.255.255.0',
    'route 0.0.0.0 0.0.0.0 192.168.201.1',
    'route 169.254.169.254 255.255.255.255 192.168.201.2',
    'dns 114.114.114.114',
    '',
  ].join('\n'), 'the IPv4 address, its routes and DNS; the IPv6 network is left alone')
  t.equal(sh('prefix_length 255.255.255.0; prefix_length 255.255.255.255; prefix_length 255.255.240.0; prefix_length 0.0.0.0'), '24\n32\n20\n0\n')
  // Metadata as the EC2-shaped or other OpenStack services write it: spaces, escaped slashes, several keys.
  writeFileSync(path.join(dir, 'other.json'), '{"hostname": "db.example.org", "public_keys": {"a": "ssh-rsa AAAAB3Nza\\/x a@b\\n", "b": "ecdsa-sha2-nistp256 AAAAE2 b@c"}}')
  t.equal(sh('json_string other.json hostname'), 'db.example.org\n')
  t.equal(sh('public_keys other.json'), 'ssh-rsa AAAAB3Nza/x a@b\necdsa-sha2-nistp256 AAAAE2 b@c\n')
})

t.test('the cache key: apt is asked once while nothing it follows changes', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'strato-guest-key-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  let asked = 0
  const apt = async () => {
    asked++
    return ['linux-image-6.1.0-28-cloud-amd64=6.1.119-1', 'busybox-static=1:1.35.0-4+b3']
  }
  const first = await currentKey(dir, apt)
  t.match(first, { key: /^[0-9a-f]{16}$/, packages: ['linux-image-6.1.0-28-cloud-amd64=6.1.119-1', 'busybox-static=1:1.35.0-4+b3'] })
  t.same(await currentKey(dir, apt), first, 'the same key again')
  t.equal(asked, 1, '… without asking apt')
  const memo = path.join(dir, '.key.json')
  writeFileSync(memo, JSON.stringify({ ...JSON.parse(readFileSync(memo, 'utf8')), stamp: 'inputs of another day' }))
  t.same(await currentKey(dir, async () => ['busybox-static=1:1.36.1-1']).then((k) => k.packages), ['busybox-static=1:1.36.1-1'], 'a stamp that differs: apt is asked again')
  t.not((await currentKey(dir, apt)).key, first.key, '… and its answer kept')
  t.equal(asked, 1)
  writeFileSync(memo, '{not json')
  t.same(await currentKey(dir, apt), first, 'an unreadable memo: asked again')
  t.equal(asked, 2)
})
