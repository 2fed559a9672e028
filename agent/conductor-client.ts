/**
 * The agent's side of `strato.conductor.<host>` (NATS request/reply, queue group):
 * what an agent asks the controller, since agents never see the database.
 * Each reply is decoded from its agent.v1 message into the plain shape the
 * agent uses (`proto/build-spec.ts`, `proto/firewall.ts`, …) field by field;
 * a reply that is not what the contract says (a controller of another
 * version, or a bug) is refused with an error naming the field, rather than
 * half-built into a guest.
 */
import { isIP } from 'node:net'
import type { NatsConnection } from '@nats-io/transport-node'
import type { BuildIp, BuildSpec } from '../proto/build-spec.js'
import { Internal, InvalidArgument, Unavailable } from '../proto/errors.js'
import type { FirewallRule, PortFirewall } from '../proto/firewall.js'
import type { DhcpAddress, DhcpNetwork } from '../proto/dhcp.js'
import type { RouterPort, RouterSpec } from '../proto/router.js'
import type { InstanceMetadata } from '../proto/instance-metadata.js'
import { isUuid } from '../proto/ids.js'
import { errorFromHeaders } from '../proto/nats-errors.js'
import { conductorSubject } from '../proto/subjects.js'
import { volumeExportOf, type ExportRef, type VolumeExport } from '../proto/volume-export.js'
import { parseVolumeCastId, type CastState } from '../proto/volume-work.js'
import * as wire from '../proto/gen/strato/agent/v1/agent.js'
import type { Conductor, HostVolumeDisk, KnownInstance } from './compute-manager.js'

/** How long a volume export (relayed by the conductor to the volume's host) may take. */
const VOLUME_EXPORT_TIMEOUT_MS = 60_000

/** What the controller answered an announce. */
export interface Announced {
  /** Whether the host is mapped (schedulable). */
  mapped: boolean
  /** How often to send heartbeats; 0: the agent's own setting. */
  heartbeatIntervalMs: number
  /** The JetStream stream and durable consumer this host's casts wait in. */
  castStream: string
  castConsumer: string
  /** The controller's gRPC address (image downloads); '' when it did not say. */
  apiAddress: string
}

export interface ConductorClientOptions {
  /** This agent's host. */
  host: string
  /** How long one request waits for the controller. */
  requestTimeoutMs: number
}

export class ConductorClient implements Conductor {
  /** `connection` is read on each request (the agent connects after it made this client). */
  constructor(
    private readonly connection: () => NatsConnection | undefined,
    private readonly o: ConductorClientOptions,
  ) {}

  /** Announces the host once. @throws Unavailable when the controller does not answer. */
  async announce(announce: wire.AgentAnnounce): Promise<Announced> {
    const reply = await this.request({ announce })
    if (!reply.announce) throw new Unavailable('the conductor did not answer the announce')
    return announcedFromWire(reply.announce)
  }

  async buildSpec(instanceUuid: string): Promise<BuildSpec> {
    const reply = await this.request({ buildSpec: { instanceUuid, host: this.o.host } })
    if (!reply.buildSpec) throw new Unavailable('the conductor sent no build spec')
    return buildSpecFromWire(reply.buildSpec, instanceUuid)
  }

  async hostInstances(also: string[]): Promise<KnownInstance[]> {
    const reply = await this.request({ hostInstances: { host: this.o.host, also } })
    return knownInstancesFromWire(reply.hostInstances)
  }

  /** The security-group filtering of every port on this host, as it should be now. */
  async firewall(): Promise<PortFirewall[]> {
    const reply = await this.request({ firewall: { host: this.o.host } })
    return firewallFromWire(reply.firewall)
  }

  /** The networks this host serves DHCP for, each with the host's DHCP port (the controller makes it on demand). */
  async dhcp(): Promise<DhcpNetwork[]> {
    const reply = await this.request({ dhcp: { host: this.o.host } })
    return dhcpFromWire(reply.dhcp)
  }

  /** The routers the controller places on this host's L3 agent, as it builds them. */
  async routers(): Promise<RouterSpec[]> {
    const reply = await this.request({ routers: { host: this.o.host } })
    return routersFromWire(reply.routers)
  }

  /**
   * The server whose port on `networkId` holds `address` (a metadata
   * request's source), with what the metadata service serves it.
   * @throws NotFound when no server's port on that network holds the address.
   */
  async metadata(networkId: string, address: string): Promise<InstanceMetadata> {
    const reply = await this.request({ metadata: { host: this.o.host, networkId, address } })
    if (!reply.metadata) throw new Unavailable('the conductor sent no instance metadata')
    return instanceMetadataFromWire(reply.metadata)
  }

  /**
   * How to read the image volume `volumeId` (placed on this host) is made
   * from: its checksum and format, and an image-read token issued now.
   */
  async volumeImage(volumeId: string): Promise<{ imageId: string; checksum: string; diskFormat: string; imageReadToken: string }> {
    const reply = await this.request({ volumeImage: { host: this.o.host, volumeId } })
    const v = reply.volumeImage
    if (!v?.imageId || !isUuid(v.imageId) || !v.imageReadToken) throw new Internal('the conductor sent no usable image for the volume (image_id, image_read_token)')
    return { imageId: v.imageId, checksum: v.checksum ?? '', diskFormat: v.diskFormat ?? '', imageReadToken: v.imageReadToken }
  }

  /**
   * How to upload volume `volumeId` (placed on this host) under its upload
   * cast `castId`: the image, its disk format, and an image-upload token issued now.
   */
  async volumeUpload(volumeId: string, castId: string): Promise<{ imageId: string; diskFormat: 'qcow2' | 'raw'; imageUploadToken: string }> {
    const reply = await this.request({ volumeUpload: { host: this.o.host, volumeId, castId } })
    const r = reply.volumeUpload
    if (!r?.imageId || !isUuid(r.imageId) || !r.imageUploadToken) throw new Internal('the conductor sent no usable upload for the volume (image_id, image_upload_token)')
    if (r.diskFormat !== 'qcow2' && r.diskFormat !== 'raw') throw new Internal(`the conductor named disk format '${r.diskFormat ?? ''}' for the upload of volume ${volumeId}; volumes are uploaded as qcow2 or raw`)
    return { imageId: r.imageId, diskFormat: r.diskFormat, imageUploadToken: r.imageUploadToken }
  }

  /**
   * Reports a step of snapshot `castId` of server `instanceUuid` (its
   * task_state); learns the snapshot's image, and at image_uploading the
   * image-upload token for it.
   */
  async snapshotStep(instanceUuid: string, castId: string, taskState: 'image_snapshot' | 'image_pending_upload' | 'image_uploading'): Promise<{ imageId: string; imageUploadToken: string }> {
    const reply = await this.request({ snapshotStep: { host: this.o.host, instanceUuid, castId, taskState } })
    const r = reply.snapshotStep
    if (!r?.imageId || !isUuid(r.imageId)) throw new Internal('the conductor sent no usable snapshot step (image_id)')
    if (taskState === 'image_uploading' && !r.imageUploadToken) throw new Internal('the conductor sent no image_upload_token for the upload step')
    return { imageId: r.imageId, imageUploadToken: r.imageUploadToken ?? '' }
  }

  async hostVolumes(seen: string[], disks: HostVolumeDisk[], exports: ExportRef[] = []): Promise<{ detach: HostVolumeDisk[]; resume: wire.Cast[]; unexport: ExportRef[] }> {
    const reply = await this.request({ hostVolumes: { host: this.o.host, instanceUuids: seen, disks, exports } })
    const r = reply.hostVolumes
    if (!r) throw new Unavailable('the conductor sent no volume sync')
    const detach = (r.detach ?? []).map((d) => ({ instanceUuid: d.instanceUuid ?? '', device: d.device ?? '', serial: d.serial ?? '', volumeId: d.volumeId ?? '' }))
    if (detach.some((d) => !isUuid(d.instanceUuid) || !d.device || !d.serial)) throw new Internal('the conductor sent a disk to detach without instance_uuid, device or serial')
    const unexport = (r.unexport ?? []).map((e) => ({ volumeId: e.volumeId ?? '', host: e.host ?? '' }))
    return { detach, resume: r.resume ?? [], unexport }
  }

  /**
   * A network export of volume `volumeId` (kept by another host's backend)
   * for this host, or (`unexport`) its end; the conductor checks that an
   * attachment here needs it and has the volume's host do it.
   */
  async volumeExport(volumeId: string, unexport = false): Promise<VolumeExport | undefined> {
    // The volume's host starts (or stops) an NBD server meanwhile: longer than a lookup.
    const reply = await this.request({ volumeExport: { host: this.o.host, volumeId, unexport } }, Math.max(this.o.requestTimeoutMs, VOLUME_EXPORT_TIMEOUT_MS))
    if (unexport) return undefined
    return volumeExportOf(reply.volumeExport)
  }

  /**
   * This host's NBD certificate renewed: the controller signs the CSR of a
   * key made here (CN=<host>, `addresses` as IP SANs) for the host this
   * agent's bus identity is. Returns the certificate and its CA (PEM).
   * @throws InvalidArgument when the CSR names another host (or is none).
   */
  async renewHostCertificate(csrPem: string, addresses: string[]): Promise<{ certPem: string; caPem: string }> {
    const reply = await this.request({ renewHostCertificate: { host: this.o.host, csrPem, addresses } })
    const r = reply.renewHostCertificate
    if (!r?.certPem || !r.caPem) throw new Internal('the conductor sent no renewed certificate (cert_pem, ca_pem)')
    return { certPem: r.certPem, caPem: r.caPem }
  }

  async volumeCast(castId: string): Promise<CastState> {
    let reply
    try {
      reply = await this.request({ volumeCast: { host: this.o.host, castId } })
    } catch (err) {
      // A controller from before volume work was checked knows attachment casts only and refuses
      // other ids: volume work then runs unchecked, as it did with that controller.
      if (err instanceof InvalidArgument && parseVolumeCastId(castId)) return { current: true, reason: '' }
      throw err
    }
    if (!reply.volumeCast) throw new Unavailable('the conductor sent no cast state')
    return { current: reply.volumeCast.current ?? false, reason: reply.volumeCast.reason ?? '' }
  }

  /** One request; errors the controller sends come back as Strato errors. */
  private async request(req: wire.ConductorRequest, timeoutMs = this.o.requestTimeoutMs): Promise<wire.ConductorReply> {
    const nc = this.connection()
    if (!nc) throw new Unavailable('the agent is not connected to NATS yet')
    let msg
    try {
      msg = await nc.request(conductorSubject(this.o.host), wire.ConductorRequest.encode(req).finish(), { timeout: timeoutMs })
    } catch (err) {
      throw new Unavailable(`conductor request failed: ${(err as Error).message}`, { cause: err })
    }
    const error = errorFromHeaders(msg.headers)
    if (error) throw error
    try {
      return wire.ConductorReply.decode(msg.data)
    } catch (err) {
      throw new Internal(`the conductor's reply is not an agent.v1 ConductorReply: ${(err as Error).message}`, { cause: err })
    }
  }
}

// ------------------------------------------------------------------ decoding

/**
 * Reads one message's fields, refusing what the contract does not allow.
 * Fields absent on the wire read as proto3 defaults ('' / 0 / false / []).
 */
class Fields {
  constructor(private readonly what: string) {}

  fail(field: string, why: string): never {
    throw new Internal(`the conductor sent a malformed ${this.what}: ${field} ${why}`, { field })
  }

  string(v: string | undefined, field: string, o: { required?: boolean } = {}): string {
    if (v === undefined || v === '') return o.required ? this.fail(field, 'is missing') : ''
    return v
  }

  uuid(v: string | undefined, field: string): string {
    const s = this.string(v, field, { required: true })
    return isUuid(s) ? s : this.fail(field, `is not a uuid: '${s}'`)
  }

  int(v: number | undefined, field: string, min: number): number {
    const n = v ?? 0
    return Number.isSafeInteger(n) && n >= min ? n : this.fail(field, `must be an integer ≥ ${min}, got ${n}`)
  }

  oneOf<T extends string>(v: string | undefined, field: string, allowed: readonly T[]): T {
    const s = v ?? ''
    return (allowed as readonly string[]).includes(s) ? (s as T) : this.fail(field, `must be one of ${allowed.join(', ')}, got '${s}'`)
  }

  strings(v: string[] | undefined, field: string): string[] {
    return (v ?? []).map((s, i) => this.string(s, `${field}[${i}]`, { required: true }))
  }
}

export function announcedFromWire(a: wire.AnnounceReply): Announced {
  const f = new Fields('announce reply')
  return {
    mapped: a.mapped ?? false,
    heartbeatIntervalMs: f.int(a.heartbeatIntervalMs, 'heartbeat_interval_ms', 0),
    castStream: f.string(a.castStream, 'cast_stream', { required: true }),
    castConsumer: f.string(a.castConsumer, 'cast_consumer', { required: true }),
    apiAddress: f.string(a.apiAddress, 'api_address'),
  }
}

/**
 * The build spec of `instanceUuid`, field by field.
 * @throws Internal naming the field when the spec is not one the agent can build (or not this server's).
 */
export function buildSpecFromWire(s: wire.BuildSpec, instanceUuid: string): BuildSpec {
  const f = new Fields(`build spec for server ${instanceUuid}`)
  const uuid = f.uuid(s.instanceUuid, 'instance_uuid')
  if (uuid !== instanceUuid) f.fail('instance_uuid', `is ${uuid}, another server`)
  return {
    instanceUuid: uuid,
    name: f.string(s.name, 'name', { required: true }),
    displayName: f.string(s.displayName, 'display_name'),
    vcpus: f.int(s.vcpus, 'vcpus', 1),
    memoryMb: f.int(s.memoryMb, 'memory_mb', 1),
    diskGb: f.int(s.diskGb, 'disk_gb', 0),
    projectId: f.string(s.projectId, 'project_id'),
    // Booted from a volume (vda among its volumes), a server has no image.
    imageId: s.imageId || !(s.volumes ?? []).some((v) => v.device === 'vda') ? f.uuid(s.imageId, 'image_id') : '',
    imageChecksum: f.string(s.imageChecksum, 'image_checksum'),
    imageReadToken: f.string(s.imageReadToken, 'image_read_token'),
    imageDiskFormat: f.string(s.imageDiskFormat, 'image_disk_format'),
    nics: nicsFromWire(f, s.nics),
    keyName: f.string(s.keyName, 'key_name'),
    publicKey: f.string(s.publicKey, 'public_key'),
    userData: f.string(s.userData, 'user_data'),
    metadata: { ...(s.metadata ?? {}) },
    availabilityZone: f.string(s.availabilityZone, 'availability_zone'),
    hostname: f.string(s.hostname, 'hostname'),
    configDrive: s.configDrive ?? false,
    volumes: (s.volumes ?? []).map((v, i) => ({
      volumeId: f.uuid(v.volumeId, `volumes[${i}].volume_id`),
      device: /^vd[a-z]$/.test(v.device ?? '') ? v.device! : f.fail(`volumes[${i}].device`, `is not vda…vdz: '${v.device ?? ''}'`),
      bootIndex: v.bootIndex ?? -1,
      attachmentId: f.string(v.attachmentId, `volumes[${i}].attachment_id`),
      volumeHost: v.volumeHost ?? '',
      multiattach: v.multiattach ?? false,
    })),
  }
}

function nicsFromWire(f: Fields, nics: wire.BuildNic[] | undefined): BuildSpec['nics'] {
  return (nics ?? []).map((n, i) => {
    const at = `nics[${i}]`
    return {
      portId: f.string(n.portId, `${at}.port_id`, { required: true }),
      macAddress: f.string(n.macAddress, `${at}.mac_address`, { required: true }),
      networkId: f.string(n.networkId, `${at}.network_id`, { required: true }),
      networkType: f.string(n.networkType, `${at}.network_type`, { required: true }),
      physicalNetwork: f.string(n.physicalNetwork, `${at}.physical_network`),
      segmentationId: f.int(n.segmentationId, `${at}.segmentation_id`, 0),
      fixedIps: f.strings(n.fixedIps, `${at}.fixed_ips`),
      ips: (n.ips ?? []).map((ip, j) => buildIpFromWire(f, ip, `${at}.ips[${j}]`)),
    }
  })
}

/** What the metadata service serves one server, field by field. @throws Internal naming the field. */
export function instanceMetadataFromWire(m: wire.InstanceMetadata): InstanceMetadata {
  const f = new Fields('instance metadata')
  return {
    instanceUuid: f.uuid(m.instanceUuid, 'instance_uuid'),
    displayName: f.string(m.displayName, 'display_name'),
    hostname: f.string(m.hostname, 'hostname'),
    projectId: f.string(m.projectId, 'project_id'),
    availabilityZone: f.string(m.availabilityZone, 'availability_zone'),
    keyName: f.string(m.keyName, 'key_name'),
    publicKey: f.string(m.publicKey, 'public_key'),
    userData: f.string(m.userData, 'user_data'),
    metadata: { ...(m.metadata ?? {}) },
    nics: nicsFromWire(f, m.nics),
    flavorName: f.string(m.flavorName, 'flavor_name'),
    imageId: f.string(m.imageId, 'image_id'),
    reservationId: f.string(m.reservationId, 'reservation_id'),
    securityGroups: f.strings(m.securityGroups, 'security_groups'),
    floatingIps: f.strings(m.floatingIps, 'floating_ips'),
  }
}

function buildIpFromWire(f: Fields, ip: wire.BuildIp, at: string): BuildIp {
  const ipVersion = f.int(ip.ipVersion, `${at}.ip_version`, 4)
  if (ipVersion !== 4 && ipVersion !== 6) f.fail(`${at}.ip_version`, `must be 4 or 6, got ${ipVersion}`)
  return {
    address: f.string(ip.address, `${at}.address`, { required: true }),
    subnetId: f.string(ip.subnetId, `${at}.subnet_id`, { required: true }),
    ipVersion,
    cidr: f.string(ip.cidr, `${at}.cidr`, { required: true }),
    gatewayIp: f.string(ip.gatewayIp, `${at}.gateway_ip`),
    dnsNameservers: f.strings(ip.dnsNameservers, `${at}.dns_nameservers`),
    hostRoutes: (ip.hostRoutes ?? []).map((r, k) => ({
      destination: f.string(r.destination, `${at}.host_routes[${k}].destination`, { required: true }),
      nexthop: f.string(r.nexthop, `${at}.host_routes[${k}].nexthop`, { required: true }),
    })),
  }
}

export function knownInstancesFromWire(h: wire.HostInstances | undefined): KnownInstance[] {
  const f = new Fields('host instance list')
  return (h?.instances ?? []).map((k, i) => ({
    instanceUuid: f.uuid(k.instanceUuid, `instances[${i}].instance_uuid`),
    host: f.string(k.host, `instances[${i}].host`),
    vmState: f.string(k.vmState, `instances[${i}].vm_state`, { required: true }),
    taskState: f.string(k.taskState, `instances[${i}].task_state`),
    pendingCastId: f.string(k.pendingCastId, `instances[${i}].pending_cast_id`),
    pendingRequestId: f.string(k.pendingRequestId, `instances[${i}].pending_request_id`),
  }))
}

const DIRECTIONS: readonly FirewallRule['direction'][] = ['ingress', 'egress']
const ETHERTYPES: readonly FirewallRule['ethertype'][] = ['IPv4', 'IPv6']

export function firewallFromWire(fw: wire.Firewall | undefined): PortFirewall[] {
  const f = new Fields('firewall')
  return (fw?.ports ?? []).map((p, i) => ({
    portId: f.string(p.portId, `ports[${i}].port_id`, { required: true }),
    macAddress: f.string(p.macAddress, `ports[${i}].mac_address`, { required: true }),
    fixedIps: f.strings(p.fixedIps, `ports[${i}].fixed_ips`),
    rules: (p.rules ?? []).map((r, j) => {
      const at = `ports[${i}].rules[${j}]`
      return {
        direction: f.oneOf(r.direction, `${at}.direction`, DIRECTIONS),
        ethertype: f.oneOf(r.ethertype, `${at}.ethertype`, ETHERTYPES),
        protocol: r.protocol ?? -1,
        portMin: r.portMin ?? 0,
        portMax: r.portMax ?? 0,
        remotePrefix: f.string(r.remotePrefix, `${at}.remote_prefix`),
      }
    }),
  }))
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/

function ipv4(f: Fields, v: string | undefined, field: string, o: { required?: boolean } = {}): string {
  const s = f.string(v, field, o)
  if (s === '') return s
  const m = IPV4.exec(s)
  return m && m.slice(1).every((x) => Number(x) <= 255) ? s : f.fail(field, `is not an IPv4 address: '${s}'`)
}

function cidr4(f: Fields, v: string | undefined, field: string): string {
  const s = f.string(v, field, { required: true })
  const [addr, prefix, ...rest] = s.split('/')
  ipv4(f, addr, field)
  return !rest.length && /^\d{1,2}$/.test(prefix ?? '') && Number(prefix) <= 32 ? s : f.fail(field, `is not an IPv4 CIDR: '${s}'`)
}

function dhcpAddressFromWire(f: Fields, a: wire.DhcpAddress, at: string): DhcpAddress {
  return { subnetId: f.uuid(a.subnetId, `${at}.subnet_id`), ipAddress: ipv4(f, a.ipAddress, `${at}.ip_address`, { required: true }), cidr: cidr4(f, a.cidr, `${at}.cidr`) }
}

function mac(f: Fields, v: string | undefined, field: string): string {
  const s = f.string(v, field, { required: true })
  return MAC_RE.test(s) ? s : f.fail(field, `is not a MAC address: '${s}'`)
}

/**
 * The host's DHCP networks, field by field (values end up in dnsmasq's
 * command line and files, so every address, MAC and name is checked).
 */
export function dhcpFromWire(d: wire.Dhcp | undefined): DhcpNetwork[] {
  const f = new Fields('DHCP configuration')
  return (d?.networks ?? []).map((n, i) => {
    const at = `networks[${i}]`
    return {
      networkId: f.uuid(n.networkId, `${at}.network_id`),
      networkType: f.string(n.networkType, `${at}.network_type`, { required: true }),
      physicalNetwork: f.string(n.physicalNetwork, `${at}.physical_network`),
      segmentationId: f.int(n.segmentationId, `${at}.segmentation_id`, 0),
      mtu: f.int(n.mtu, `${at}.mtu`, 68),
      port: {
        id: f.uuid(n.portId, `${at}.port_id`),
        macAddress: mac(f, n.macAddress, `${at}.mac_address`),
        fixedIps: (n.fixedIps ?? []).map((a, j) => dhcpAddressFromWire(f, a, `${at}.fixed_ips[${j}]`)),
      },
      subnets: (n.subnets ?? []).map((s, j) => {
        const sat = `${at}.subnets[${j}]`
        if (f.int(s.ipVersion, `${sat}.ip_version`, 4) !== 4) f.fail(`${sat}.ip_version`, 'must be 4')
        return {
          id: f.uuid(s.id, `${sat}.id`),
          ipVersion: 4 as const,
          cidr: cidr4(f, s.cidr, `${sat}.cidr`),
          gatewayIp: ipv4(f, s.gatewayIp, `${sat}.gateway_ip`),
          dnsNameservers: (s.dnsNameservers ?? []).map((x, k) => ipv4(f, x, `${sat}.dns_nameservers[${k}]`, { required: true })),
          hostRoutes: (s.hostRoutes ?? []).map((r, k) => ({
            destination: cidr4(f, r.destination, `${sat}.host_routes[${k}].destination`),
            nexthop: ipv4(f, r.nexthop, `${sat}.host_routes[${k}].nexthop`, { required: true }),
          })),
          enableDhcp: s.enableDhcp ?? false,
          hasRouter: s.hasRouter ?? false,
        }
      }),
      hosts: (n.hosts ?? []).map((h, j) => {
        const hat = `${at}.hosts[${j}]`
        const hostname = f.string(h.hostname, `${hat}.hostname`, { required: true })
        if (!/^[A-Za-z0-9]([A-Za-z0-9-]{0,62})$/.test(hostname)) f.fail(`${hat}.hostname`, `is not a host name: '${hostname}'`)
        return {
          portId: f.uuid(h.portId, `${hat}.port_id`),
          macAddress: mac(f, h.macAddress, `${hat}.mac_address`),
          fixedIps: (h.fixedIps ?? []).map((a, k) => dhcpAddressFromWire(f, a, `${hat}.fixed_ips[${k}]`)),
          hostname,
        }
      }),
      leaseSeconds: f.int(n.leaseSeconds, `${at}.lease_seconds`, 120),
    }
  })
}

const IPV4_CIDR_OR_ADDR = (f: Fields, v: string | undefined, field: string, withPrefix: boolean): string => {
  const s = f.string(v, field, { required: true })
  const [addr, prefix, ...rest] = s.split('/')
  if (rest.length || (withPrefix && prefix === undefined)) f.fail(field, `is not an address with its prefix length: '${s}'`)
  if (isIP(addr ?? '') === 0) f.fail(field, `is not an IP address: '${s}'`)
  const max = isIP(addr ?? '') === 4 ? 32 : 128
  if (prefix !== undefined && !(/^\d{1,3}$/.test(prefix) && Number(prefix) <= max)) f.fail(field, `has an invalid prefix length: '${s}'`)
  return s
}

function routerPortFromWire(f: Fields, p: wire.RouterPort | undefined, at: string): RouterPort {
  if (!p) f.fail(at, 'is missing')
  const n = p.network ?? f.fail(`${at}.network`, 'is missing')
  return {
    portId: f.uuid(p.portId, `${at}.port_id`),
    macAddress: mac(f, p.macAddress, `${at}.mac_address`),
    network: {
      networkId: f.uuid(n.networkId, `${at}.network.network_id`),
      networkType: f.string(n.networkType, `${at}.network.network_type`, { required: true }),
      physicalNetwork: f.string(n.physicalNetwork, `${at}.network.physical_network`),
      segmentationId: f.int(n.segmentationId, `${at}.network.segmentation_id`, 0),
      mtu: f.int(n.mtu, `${at}.network.mtu`, 68),
    },
    addresses: (p.addresses ?? []).map((a, i) => IPV4_CIDR_OR_ADDR(f, a, `${at}.addresses[${i}]`, true)),
    cidrs: (p.cidrs ?? []).map((c, i) => IPV4_CIDR_OR_ADDR(f, c, `${at}.cidrs[${i}]`, true)),
  }
}

/**
 * The host's routers, field by field (values end up in `ip` and iptables
 * command lines inside the router namespaces, so every id, address, MAC and
 * prefix is checked).
 */
export function routersFromWire(r: wire.Routers | undefined): RouterSpec[] {
  const f = new Fields('router list')
  return (r?.routers ?? []).map((x, i) => {
    const at = `routers[${i}]`
    const g = x.gateway
    return {
      id: f.uuid(x.id, `${at}.id`),
      adminStateUp: x.adminStateUp ?? false,
      interfaces: (x.interfaces ?? []).map((p, j) => routerPortFromWire(f, p, `${at}.interfaces[${j}]`)),
      ...(g
        ? {
            gateway: {
              ...routerPortFromWire(f, g.port, `${at}.gateway.port`),
              nexthop: g.nexthop ? IPV4_CIDR_OR_ADDR(f, g.nexthop, `${at}.gateway.nexthop`, false) : '',
              enableSnat: g.enableSnat ?? false,
            },
          }
        : {}),
      routes: (x.routes ?? []).map((rt, j) => ({
        destination: IPV4_CIDR_OR_ADDR(f, rt.destination, `${at}.routes[${j}].destination`, true),
        nexthop: IPV4_CIDR_OR_ADDR(f, rt.nexthop, `${at}.routes[${j}].nexthop`, false),
      })),
      floatingIps: (x.floatingIps ?? []).map((fip, j) => ({
        id: f.uuid(fip.id, `${at}.floating_ips[${j}].id`),
        floatingIpAddress: ipv4(f, fip.floatingIpAddress, `${at}.floating_ips[${j}].floating_ip_address`, { required: true }),
        fixedIpAddress: ipv4(f, fip.fixedIpAddress, `${at}.floating_ips[${j}].fixed_ip_address`, { required: true }),
      })),
    }
  })
}

