/**
 * The config drive (Nova's `configdrive.py` + `api/metadata/base.py`): an
 * ISO 9660 image labelled `config-2` that the guest sees as a CD-ROM, holding
 * what cloud-init and its kind read at first boot — the server's identity and
 * metadata, its SSH keys, its user data and its network configuration
 * (network_data.json: static addresses, for subnets without DHCP). A server
 * gets one unless created with config_drive false. The metadata service (agent/metadata/) serves the same files
 * to guests without a drive.
 *
 *   openstack/latest/meta_data.json     uuid, name, hostname, keys, meta, …
 *   openstack/latest/network_data.json  links (NICs), networks (addresses), services (DNS)
 *   openstack/latest/user_data          the user data, decoded (only when given)
 *   openstack/latest/vendor_data.json   {}
 *   openstack/latest/vendor_data2.json  {}
 *
 * The image is made with genisoimage (Debian's mkisofs, as Nova's
 * `mkisofs_cmd`), with Rock Ridge and Joliet names.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import type { BuildSpec } from '../../proto/build-spec.js'
import { FailedPrecondition, Internal } from '../../proto/errors.js'
import { tapName } from '../net/firewall.js'
import { PRIVATE_FILE_MODE } from './guest-dirs.js'

/** What goes on a server's config drive: a part of its build spec. */
export type ConfigDriveSpec = Pick<BuildSpec, 'instanceUuid' | 'displayName' | 'hostname' | 'projectId' | 'availabilityZone' | 'keyName' | 'publicKey' | 'userData' | 'metadata'> & {
  nics: Array<Pick<BuildSpec['nics'][number], 'portId' | 'macAddress' | 'networkId' | 'ips'>>
}

/**
 * meta_data.json's object (Nova's `_metadata_as_json` at the latest
 * version). random_seed is new on every call, as Nova makes it per request;
 * everything else depends on the spec only.
 */
export function metaData(spec: ConfigDriveSpec): Record<string, unknown> {
  const keys = spec.publicKey ? [{ name: spec.keyName, type: 'ssh', data: spec.publicKey }] : []
  return {
    uuid: spec.instanceUuid,
    name: spec.displayName,
    hostname: spec.hostname,
    launch_index: 0,
    availability_zone: spec.availabilityZone,
    project_id: spec.projectId,
    meta: spec.metadata,
    public_keys: Object.fromEntries(keys.map((k) => [k.name, k.data])),
    keys,
    random_seed: randomBytes(512).toString('base64'),
    devices: [],
  }
}

/**
 * The files of the drive, by path inside it. The metadata service
 * (agent/metadata/) serves the same files.
 */
export function configDriveFiles(spec: ConfigDriveSpec): Map<string, Buffer> {
  const files = new Map<string, Buffer>([
    ['openstack/latest/meta_data.json', json(metaData(spec))],
    ['openstack/latest/network_data.json', json(networkData(spec.nics))],
    ['openstack/latest/vendor_data.json', json({})],
    ['openstack/latest/vendor_data2.json', json({})],
  ])
  if (spec.userData) files.set('openstack/latest/user_data', Buffer.from(spec.userData, 'base64'))
  return files
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v))

/** Nova's network_data.json: one link per NIC, one static network per fixed address, DNS as services. */
export function networkData(nics: ConfigDriveSpec['nics']): object {
  const links = nics.map((n) => ({ id: tapName(n.portId), vif_id: n.portId, type: 'bridge', ethernet_mac_address: n.macAddress }))
  const networks: object[] = []
  const services: Array<{ type: 'dns'; address: string }> = []
  for (const n of nics) {
    for (const ip of n.ips) {
      const v6 = ip.ipVersion === 6
      const prefix = Number(ip.cidr.split('/')[1])
      const routes = [
        ...(ip.gatewayIp ? [{ network: v6 ? '::' : '0.0.0.0', netmask: v6 ? '::' : '0.0.0.0', gateway: ip.gatewayIp }] : []),
        ...ip.hostRoutes.map((r) => {
          const [network, len] = r.destination.split('/')
          return { network: network!, netmask: netmask(Number(len), v6), gateway: r.nexthop }
        }),
      ]
      const dns = ip.dnsNameservers.map((address) => ({ type: 'dns' as const, address }))
      networks.push({
        id: `network${networks.length}`,
        type: v6 ? 'ipv6' : 'ipv4',
        link: tapName(n.portId),
        ip_address: ip.address,
        netmask: netmask(prefix, v6),
        routes,
        network_id: n.networkId,
        services: dns,
      })
      for (const d of dns) if (!services.some((s) => s.address === d.address)) services.push(d)
    }
  }
  return { links, networks, services }
}

/** A prefix length as a dotted (IPv4) or colon (IPv6) mask. */
export function netmask(prefix: number, v6: boolean): string {
  const bits = v6 ? 128 : 32
  const mask = Array.from({ length: bits }, (_, i) => (i < prefix ? 1 : 0))
  if (!v6) return [0, 8, 16, 24].map((o) => parseInt(mask.slice(o, o + 8).join(''), 2)).join('.')
  const groups = [0, 16, 32, 48, 64, 80, 96, 112].map((o) => parseInt(mask.slice(o, o + 16).join(''), 2).toString(16))
  // The shortest form: the longest run of zero groups becomes '::'.
  const first = groups.indexOf('0')
  if (first < 0) return groups.join(':')
  const head = groups.slice(0, first).join(':')
  return `${head}::`
}

/**
 * Writes the drive to `isoPath`, mode 0600: it holds the user data and the
 * random seed; libvirt chowns it to QEMU (read-only) when the guest starts.
 * The files are staged in a private directory beside it, removed afterwards.
 */
export async function writeConfigDrive(isoPath: string, files: Map<string, Buffer>): Promise<void> {
  const staging = `${isoPath}.d`
  await rm(staging, { recursive: true, force: true })
  try {
    for (const [name, data] of files) {
      const file = path.join(staging, name)
      await mkdir(path.dirname(file), { recursive: true, mode: 0o700 })
      await writeFile(file, data, { mode: PRIVATE_FILE_MODE })
    }
    await new Promise<void>((resolve, reject) =>
      execFile(
        'genisoimage',
        ['-o', isoPath, '-ldots', '-allow-lowercase', '-allow-multidot', '-l', '-publisher', 'Strato', '-quiet', '-J', '-r', '-V', 'config-2', staging],
        { timeout: 60_000 },
        (err, _stdout, stderr) => {
          if (!err) return resolve()
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
            return reject(new FailedPrecondition('genisoimage is not installed on this host; it makes config drives (npm run setup installs it)'))
          }
          reject(new Internal(`genisoimage could not make the config drive ${isoPath}: ${String(stderr).trim() || err.message}`, { cause: err }))
        },
      ),
    )
    await chmod(isoPath, PRIVATE_FILE_MODE) // genisoimage creates it 0666 less its umask
  } finally {
    await rm(staging, { recursive: true, force: true })
  }
}
