// The config drive's content (agent/disk/config-drive.ts): Nova's file layout
// and JSON shapes, IPv4 and IPv6 networks, host routes, no user_data file
// without user data; and the ISO genisoimage makes of it, read back with isoinfo.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { configDriveFiles, netmask, networkData, writeConfigDrive, type ConfigDriveSpec } from '../../../agent/disk/config-drive.js'

const spec: ConfigDriveSpec = {
  instanceUuid: '6f1c0c2e-8f0b-4c1e-9a59-0d5f4f6a0b11',
  displayName: 'web 1',
  hostname: 'web-1',
  projectId: 'p1',
  availabilityZone: 'nova',
  keyName: 'mykey',
  publicKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@host',
  userData: Buffer.from('#!/bin/sh\necho hi\n').toString('base64'),
  metadata: { a: 'b' },
  nics: [{
    portId: '0123456789abcdef', macAddress: 'fa:16:3e:00:00:01', networkId: 'n1',
    ips: [
      { address: '10.0.0.5', subnetId: 's4', ipVersion: 4, cidr: '10.0.0.0/22', gatewayIp: '10.0.0.1', dnsNameservers: ['10.0.0.2'], hostRoutes: [{ destination: '172.16.0.0/12', nexthop: '10.0.0.254' }] },
      { address: 'fd00::5', subnetId: 's6', ipVersion: 6, cidr: 'fd00::/64', gatewayIp: '', dnsNameservers: ['fd00::2', '10.0.0.2'], hostRoutes: [] },
    ],
  }],
}

t.test('netmasks from prefix lengths', async (t) => {
  t.same([0, 8, 22, 24, 31, 32].map((p) => netmask(p, false)), ['0.0.0.0', '255.0.0.0', '255.255.252.0', '255.255.255.0', '255.255.255.254', '255.255.255.255'])
  t.same([0, 48, 64, 60, 120, 128].map((p) => netmask(p, true)), ['::', 'ffff:ffff:ffff::', 'ffff:ffff:ffff:ffff::', 'ffff:ffff:ffff:fff0::', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'])
})

t.test("network_data.json: Nova's links, networks and services", async (t) => {
  t.same(networkData(spec.nics), {
    links: [{ id: 'tap0123456789a', vif_id: '0123456789abcdef', type: 'bridge', ethernet_mac_address: 'fa:16:3e:00:00:01' }],
    networks: [
      {
        id: 'network0', type: 'ipv4', link: 'tap0123456789a', ip_address: '10.0.0.5', netmask: '255.255.252.0', network_id: 'n1',
        routes: [{ network: '0.0.0.0', netmask: '0.0.0.0', gateway: '10.0.0.1' }, { network: '172.16.0.0', netmask: '255.240.0.0', gateway: '10.0.0.254' }],
        services: [{ type: 'dns', address: '10.0.0.2' }],
      },
      {
        id: 'network1', type: 'ipv6', link: 'tap0123456789a', ip_address: 'fd00::5', netmask: 'ffff:ffff:ffff:ffff::', network_id: 'n1',
        routes: [], services: [{ type: 'dns', address: 'fd00::2' }, { type: 'dns', address: '10.0.0.2' }],
      },
    ],
    services: [{ type: 'dns', address: '10.0.0.2' }, { type: 'dns', address: 'fd00::2' }],
  })
  t.same(networkData([]), { links: [], networks: [], services: [] }, 'no NICs')
})

t.test('the files, and the ISO genisoimage makes of them', async (t) => {
  const files = configDriveFiles(spec)
  t.same([...files.keys()].sort(), ['openstack/latest/meta_data.json', 'openstack/latest/network_data.json', 'openstack/latest/user_data', 'openstack/latest/vendor_data.json', 'openstack/latest/vendor_data2.json'])
  t.same([...configDriveFiles({ ...spec, userData: '', publicKey: '', keyName: '' }).keys()].includes('openstack/latest/user_data'), false, 'no user data, no file')
  t.match(JSON.parse(configDriveFiles({ ...spec, publicKey: '', keyName: '' }).get('openstack/latest/meta_data.json')!.toString()), { public_keys: {}, keys: [] }, 'no key, none listed')
  const dir = mkdtempSync(path.join(tmpdir(), 'strato-cd-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const iso = path.join(dir, 'disk.config')
  await writeConfigDrive(iso, files)
  t.equal(statSync(iso).mode & 0o777, 0o600, 'root only: it holds the user data (libvirt chowns it to QEMU at start)')
  t.match(execFileSync('isoinfo', ['-d', '-i', iso], { encoding: 'utf8' }), /Volume id: config-2/)
  const listing = execFileSync('isoinfo', ['-R', '-f', '-i', iso], { encoding: 'utf8' })
  t.match(listing, /\/openstack\/latest\/meta_data\.json/, 'Rock Ridge names (what Linux mounts)')
  t.equal(execFileSync('isoinfo', ['-R', '-i', iso, '-x', '/openstack/latest/user_data'], { encoding: 'utf8' }), '#!/bin/sh\necho hi\n')
  t.same(JSON.parse(execFileSync('isoinfo', ['-J', '-i', iso, '-x', '/openstack/latest/meta_data.json'], { encoding: 'utf8' })), JSON.parse(files.get('openstack/latest/meta_data.json')!.toString()), 'Joliet names too')
  t.same(execFileSync('ls', ['-A', dir], { encoding: 'utf8' }).trim(), 'disk.config', 'the staging directory is gone')
})
