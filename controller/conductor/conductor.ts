/**
 * The conductor: what agents may ask the controller (agents never see the
 * database). Transport-free; `bus/` decodes NATS messages and calls it.
 */
import type { HostAnnouncement, HostRegistry } from '../compute/hosts.js'
import { hostFirewall, type HostPortFirewall } from '../network/firewall.js'
import type { Db } from '../store/db.js'
import type { BuildSpec } from '../../proto/build-spec.js'
import type { DhcpNetwork } from '../../proto/dhcp.js'
import type { DhcpPorts } from '../network/dhcp.js'
import type { RouterCatalog } from '../network/routers.js'
import type { RouterSpec } from '../../proto/router.js'
import type { InstanceMetadata } from '../../proto/instance-metadata.js'
import { buildSpec, hostInstances, CONDUCTOR, type BuildSpecDeps, type HostInstance } from './build-spec.js'
import { FailedPrecondition, NotFound, Unavailable } from '../../proto/errors.js'
import type { ExportRef, VolumeExport } from '../../proto/volume-export.js'
import type { AgentTransport } from '../compute/transport.js'
import { uploadImageOf, type CastState } from '../../proto/volume-work.js'
import { instanceMetadata } from './metadata.js'
import { interruptedUpload, snapshotStep, type ImageUploadTokens } from './snapshot-step.js'
import type { AttachmentCatalog, HostVolumeDisk, PendingHostCast } from '../volume/attachments.js'
import { castState } from '../volume/casts.js'
import type { HostCredentialIssuer } from '../compute/join-tokens.js'

export type { BuildSpec, HostInstance, InstanceMetadata }

export class Conductor {
  constructor(private readonly hosts: HostRegistry, private readonly db: Db, private readonly deps: BuildSpecDeps & { dhcp?: DhcpPorts; routers?: RouterCatalog; imageUploadToken?: ImageUploadTokens; attachments?: Pick<AttachmentCatalog, 'syncHost' | 'exportHost' | 'unwantedExports'>; agents?: Pick<AgentTransport, 'call'>; agentCallTimeoutMs?: number
    /** What JoinHost signs hosts' certificates with; undefined while (or when) hosts get no bus credentials of their own. */
    hostIssuer?: () => Pick<HostCredentialIssuer, 'hostCertificate' | 'caPem'> | undefined }) {}

  /** An agent announced its host: record it; tell it whether it is mapped and how often to beat. */
  async announce(a: HostAnnouncement): Promise<{ mapped: boolean; heartbeatIntervalMs: number }> {
    const { mapped } = await this.hosts.announce(a)
    return { mapped, heartbeatIntervalMs: this.hosts.heartbeatIntervalMs }
  }

  /**
   * The build spec of a server placed on `host` (the agent is about to build it).
   * @throws NotFound when no such server is placed there.
   * @throws FailedPrecondition when the server is no longer building.
   */
  buildSpec(instanceUuid: string, host: string): Promise<BuildSpec> {
    return buildSpec(this.db, this.deps, instanceUuid, host)
  }

  /**
   * How `host` reads the image of a volume it is creating from one: the
   * image's checksum and format, and an image-read token issued now (casts
   * carry no tokens: they may wait in the queue longer than one lives).
   * @throws NotFound when no such volume lives on `host`.
   * @throws FailedPrecondition when it is made from no image, or is no longer being created.
   */
  async volumeImage(volumeId: string, host: string): Promise<{ imageId: string; checksum: string; diskFormat: string; imageReadToken: string }> {
    const v = await this.db.selectFrom('volumes').select(['id', 'host', 'image_id', 'status']).where('id', '=', volumeId).executeTakeFirst()
    if (!v || v.host !== host) throw new NotFound(`no volume ${volumeId} lives on host '${host}'`)
    if (!v.image_id) throw new FailedPrecondition(`volume ${volumeId} is not made from an image`)
    if (v.status !== 'creating') throw new FailedPrecondition(`volume ${volumeId} is ${v.status}, no longer being created`)
    const image = await this.deps.images.get({ id: v.image_id }, CONDUCTOR)
    return { imageId: image.id, checksum: image.checksum, diskFormat: image.diskFormat, imageReadToken: this.deps.imageReadToken(image.id, host, volumeId) }
  }

  /**
   * How `host` uploads volume `volumeId` under the upload cast `castId`: the
   * image's id and disk format, and an image-upload token for that image
   * only, issued now (casts carry no tokens).
   * @throws NotFound when no such volume lives on `host`.
   * @throws FailedPrecondition when the volume no longer waits for that upload, or its image is gone or not queued.
   * @throws Unavailable while its image is still saving from an interrupted upload (the host tries again).
   */
  async volumeUpload(volumeId: string, host: string, castId: string): Promise<{ imageId: string; diskFormat: string; imageUploadToken: string }> {
    const issue = this.deps.imageUploadToken
    if (!issue) throw new FailedPrecondition('this controller issues no image-upload tokens; volumes cannot be uploaded')
    const v = await this.db.selectFrom('volumes').select(['id', 'host', 'status', 'pending_cast_id']).where('id', '=', volumeId).executeTakeFirst()
    if (!v || v.host !== host) throw new NotFound(`no volume ${volumeId} lives on host '${host}'`)
    const imageId = uploadImageOf(castId)
    if (!imageId || v.pending_cast_id !== castId || v.status !== 'uploading') throw new FailedPrecondition(`volume ${volumeId} no longer waits for upload ${castId} (it is ${v.status}); the upload is abandoned`)
    const image = await this.db.selectFrom('images').select(['id', 'status', 'disk_format']).where('id', '=', imageId).executeTakeFirst()
    if (!image) throw new FailedPrecondition(`image ${imageId} of the upload of volume ${volumeId} was deleted; the upload is abandoned`)
    if (image.status === 'saving') throw interruptedUpload(imageId)
    if (image.status !== 'queued') throw new FailedPrecondition(`image ${imageId} of the upload of volume ${volumeId} is ${image.status}, not queued: it takes no upload`)
    return { imageId, diskFormat: image.disk_format, imageUploadToken: issue(imageId, host, volumeId) }
  }

  /**
   * A step of the snapshot `castId` of server `instanceUuid` on `host`: the
   * server's task_state follows; the image_uploading step also gets the
   * image-upload token for the snapshot's image.
   */
  async snapshotStep(host: string, instanceUuid: string, castId: string, taskState: string): Promise<{ imageId: string; imageUploadToken: string }> {
    const issue = this.deps.imageUploadToken
    if (!issue) throw new FailedPrecondition('this controller issues no image-upload tokens; server snapshots cannot be uploaded')
    return snapshotStep(this.db, issue, { host, uuid: instanceUuid, castId, taskState })
  }

  /** The security-group filtering of every port of the servers placed on `host`. */
  async firewall(host: string): Promise<HostPortFirewall[]> {
    await this.hosts.get(host)
    return hostFirewall(this.db, host)
  }

  /**
   * The networks `host` serves DHCP for, with its DHCP port on each (made
   * or removed here, as Neutron's DHCP agent asks for its port over RPC).
   */
  async dhcp(host: string): Promise<DhcpNetwork[]> {
    await this.hosts.get(host)
    return this.deps.dhcp ? this.deps.dhcp.forHost(host) : []
  }

  /** The routers placed on `host`'s L3 agent, as it builds them (Neutron's sync_routers). */
  async routers(host: string): Promise<RouterSpec[]> {
    await this.hosts.get(host)
    return this.deps.routers ? this.deps.routers.forHost(host) : []
  }

  /** The servers the controller places on `host`, for the agent's start-up reconciliation. */
  async hostInstances(host: string, also: string[]): Promise<HostInstance[]> {
    await this.hosts.get(host)
    return hostInstances(this.db, host, also)
  }

  /**
   * An agent's start-up sync of its guests' volume disks with the
   * attachments (see `AttachmentCatalog.syncHost`): the disks to detach and
   * the volume work to resume.
   */
  async hostVolumes(host: string, seen: string[], disks: HostVolumeDisk[], exports: ExportRef[] = []): Promise<{ detach: HostVolumeDisk[]; resume: PendingHostCast[]; unexport: ExportRef[] }> {
    await this.hosts.get(host)
    if (!this.deps.attachments) return { detach: [], resume: [], unexport: [] }
    const r = await this.deps.attachments.syncHost(host, seen, disks)
    return { ...r, unexport: await this.deps.attachments.unwantedExports(host, exports) }
  }

  /**
   * A network export of `volumeId` for a server of `host` (or, `unexport`,
   * its end): the attachment catalog checks that an attachment on `host`
   * needs it (or that none does any more), and the volume's own host does
   * it, asked over its agent's request subject (agents never call each
   * other). Returns the export (undefined for an unexport, or when the
   * export is still needed).
   * @throws NotFound when no attachment of the volume on `host` needs it.
   * @throws Unavailable when the volume's host does not answer.
   */
  async volumeExport(host: string, volumeId: string, unexport: boolean): Promise<VolumeExport | undefined> {
    await this.hosts.get(host)
    const agents = this.deps.agents
    if (!this.deps.attachments || !agents) throw new FailedPrecondition('this controller relays no volume exports')
    const volumeHost = await this.deps.attachments.exportHost(host, volumeId, unexport)
    if (!volumeHost) return undefined
    const answer = await agents.call(volumeHost, { volumeExport: { volumeId, host, unexport } }, this.deps.agentCallTimeoutMs ?? 50_000)
    if (unexport) return undefined
    if (!answer.volumeExport) throw new Unavailable(`host '${volumeHost}' sent no export of volume ${volumeId}`)
    return answer.volumeExport
  }

  /**
   * A new NBD certificate for `host` (its agent renews the one it got at
   * join before it expires), for the CSR of a key the host made, signed as
   * JoinHost signs: CN=<host>, its addresses as IP SANs. Who asks is the
   * bus identity (the request's subject, which the host's own NATS
   * credentials alone may publish on), so only a controller that gives
   * hosts such credentials renews.
   * @throws NotFound when the host is unknown.
   * @throws FailedPrecondition when hosts have no bus credentials of their own here, or this controller holds no CA key.
   * @throws InvalidArgument when the CSR names anything but `CN=<host>`, or is no valid CSR.
   */
  async renewHostCertificate(host: string, csrPem: string, addresses: string[]): Promise<{ certPem: string; caPem: string }> {
    await this.hosts.get(host)
    const issuer = this.deps.hostIssuer?.()
    if (!issuer) throw new FailedPrecondition(`this controller gives hosts no NATS credentials of their own (natsOperatorDir), so a request on the bus does not prove it comes from host '${host}': it renews no certificates`)
    const certPem = await issuer.hostCertificate(host, csrPem, addresses)
    if (!certPem) throw new FailedPrecondition(`this controller holds no CA key (its TLS certificate is an operator's): the NBD certificate of host '${host}' must be renewed by that CA`)
    return { certPem, caPem: issuer.caPem() }
  }

  /**
   * Whether a volume-role cast to `host` (volume or snapshot work, an
   * attach, detach or extend_volume) is still the one its volume, snapshot
   * or attachment waits for, and when not, why (see `castState`).
   * @throws InvalidArgument when `castId` names no volume-role cast.
   */
  async volumeCast(host: string, castId: string): Promise<CastState> {
    await this.hosts.get(host)
    return castState(this.db, host, castId)
  }

  /**
   * The server a metadata request on `host`'s namespace of `networkId` came
   * from (by its source address), with what the metadata service serves.
   * @throws NotFound when the host is unknown, or no server's port on the network holds the address.
   */
  async metadata(host: string, networkId: string, address: string): Promise<InstanceMetadata> {
    await this.hosts.get(host)
    return instanceMetadata(this.db, networkId, address)
  }
}
