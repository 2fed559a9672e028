/**
 * Server snapshots (Nova's createImage, `compute/api.py snapshot` with
 * `compute/utils.py create_image`): the image is recorded at once (queued,
 * in the server's project, private) with the properties Nova gives a
 * snapshot, then the server's task becomes image_snapshot_pending and the
 * snapshot is cast to its host. The host reports its steps to the conductor
 * (`../conductor/snapshot-step.ts`), which issues the image-upload token
 * when it reaches the upload. A snapshot that fails leaves no image behind.
 * A backup (Nova's createBackup, `compute/api.py backup`) is such a snapshot
 * with image_type backup and its backup_type, under task image_backup; once
 * it is made, the server's oldest backups of that type beyond its rotation
 * are deleted (`compute/manager.py _rotate_backups`).
 */
import { FailedPrecondition, InvalidArgument, NotFound, PermissionDenied } from '../../proto/errors.js'
import { backupNonce, backupRotationOf, castIdFor, snapshotImageOf } from '../../proto/subjects.js'
import { withReverter } from '../../proto/revert.js'
import { checkName } from '../identity/validate.js'
import type { Db } from '../store/db.js'
import type { ServerTable } from '../store/schema.js'
import { IMAGE_SERVICE as SERVICE, type ImageCatalog, type ImageViewer } from '../image/catalog.js'
import { beginAction, beginBackup } from './server-states.js'
import type { CastOutbox } from './cast-outbox.js'
import type { CastResultEvent } from './transport.js'
import type { ServerViews } from './server-views.js'
import { json, now, type Log, type ServerCaller, type ServerView } from './server-model.js'
import { checkMetadata } from './server-create-plan.js'
import type { SnapshotCatalog } from '../volume/snapshots.js'
import { imageMetadataOf } from '../volume/model.js'

/**
 * Properties a snapshot never inherits from its server's image (nova
 * `NON_INHERITABLE_IMAGE_PROPERTIES`, the default
 * `[DEFAULT]/non_inheritable_image_properties`, the `os_glance` namespace):
 * signatures and encryption keys describe the source's bytes, not the snapshot's.
 */
const NOT_INHERITED = new Set([
  'cinder_encryption_key_id', 'cinder_encryption_key_deletion_policy',
  'img_signature', 'img_signature_hash_method', 'img_signature_key_type', 'img_signature_certificate_uuid',
  'cache_in_nova', 'bittorrent',
])

export interface CreateServerImage {
  name?: string
  metadata?: Record<string, string>
  compress?: boolean
  /**
   * Nova's createBackup: the image is a backup of this type (image_type
   * backup, backup_type), and once it is made the server's oldest backups of
   * the type beyond `rotation` are deleted (0: all of them, this one too).
   */
  backup?: { type: string; rotation: number }
}

/** Keys of a volume's image metadata that describe the source image's bytes, not a snapshot's (Cinder's glance_core_properties). */
const IMAGE_CORE = new Set(Object.keys(imageMetadataOf({ id: '', name: '', diskFormat: '', containerFormat: '', checksum: '', minDisk: 0, minRam: 0, size: 0, properties: {} })))

export class ServerSnapshots {
  constructor(
    private readonly db: Db,
    private readonly deps: { views: ServerViews; outbox: CastOutbox; images: ImageCatalog; volumeSnapshots?: SnapshotCatalog },
    private readonly log: Log,
  ) {}

  /**
   * Records the snapshot's image and casts the snapshot to the server's host.
   * @throws FailedPrecondition when the server's state does not allow it (named), or it has no host.
   * @throws ResourceExhausted when the project's image quota is used up (nothing is changed).
   */
  async create(ref: string | undefined, req: CreateServerImage, caller: ServerCaller): Promise<{ imageId: string; server: ServerView }> {
    const first = await this.deps.views.find(ref, caller)
    if (!caller.isAdmin && !(caller.canWrite && first.project_id === caller.projectId)) throw new PermissionDenied(`server ${first.uuid} can be snapshotted only by members of its project or a cloud admin`)
    const name = checkName('name', req.name, 255)
    const metadata = checkMetadata(req.metadata ?? {})
    const action = req.compress ? 'snapshot_compressed' as const : 'snapshot' as const
    const backup = req.backup
    if (backup && (!Number.isInteger(backup.rotation) || backup.rotation < 0)) throw new InvalidArgument(`a backup's rotation is how many backups to keep, an integer ≥ 0; got ${backup.rotation}`, { field: 'rotation' })
    const begin = (row: ServerTable) => (backup ? beginBackup(row) : beginAction(action, row))
    // Checked before the image is made, so a refused snapshot changes nothing; checked again below.
    begin(first)
    if (!first.host) throw new FailedPrecondition(`server ${first.uuid} has no host: it never got one`)
    const boot = await this.db.selectFrom('volume_attachments').select(['volume_id']).where('server_id', '=', first.uuid).where('boot_index', '=', 0).executeTakeFirst()
    if (boot && backup) throw new InvalidArgument(`server ${first.uuid} boots from a volume: backups of volume-backed servers are not supported (as in Nova); snapshot it (createImage) or back up its volume`)
    if (boot) return this.volumeBacked(first, boot.volume_id, name, metadata, caller)
    const properties = await this.properties(first, caller, backup ? { ...metadata, backup_type: backup.type } : metadata, undefined, backup ? 'backup' : 'snapshot')
    const project = await this.db.selectFrom('projects').select('domain_id').where('id', '=', first.project_id).executeTakeFirst()
    const owner: ImageViewer = { projectId: first.project_id, domainId: project?.domain_id ?? '', isAdmin: false, canWrite: true }
    const requestId = caller.requestId ?? ''
    return withReverter(async (revert) => {
      const source = await this.source(first.image_id)
      const image = await this.deps.images.create({
        name, diskFormat: 'qcow2', containerFormat: 'bare', visibility: 'private',
        // Nova: the source's min_ram; min_disk at least the flavor's root disk (the snapshot is that big).
        minDisk: Math.max(source?.minDisk ?? 0, Number(first.disk)), minRam: source?.minRam ?? 0,
        properties,
      }, owner)
      revert.add(`delete image ${image.id}`, () => this.deps.images.delete(image.id, SERVICE))
      const castId = castIdFor(action, first.uuid, backup ? backupNonce(image.id, backup.rotation) : image.id)
      const plan = await this.db.transaction().execute(async (trx) => {
        const row = (await trx.selectFrom('servers').selectAll().where('uuid', '=', first.uuid).executeTakeFirst())!
        const task = begin(row)
        if (!row.host) throw new FailedPrecondition(`server ${row.uuid} has no host: it never got one`)
        await trx.updateTable('servers').set({ task_state: task, pending_cast_id: castId, pending_request_id: requestId, cast_sent_at: null, updated_at: now() }).where('uuid', '=', row.uuid).execute()
        return { host: row.host, row: await trx.selectFrom('servers').selectAll().where('uuid', '=', row.uuid).executeTakeFirstOrThrow() }
      })
      this.log.info({ instance: first.uuid, image: image.id, host: plan.host, compress: action === 'snapshot_compressed', backup, requestId }, backup ? 'server backup started' : 'server snapshot started')
      await this.deps.outbox.send({ uuid: first.uuid, host: plan.host, action, castId, requestId })
      return { imageId: image.id, server: (await this.deps.views.views([plan.row], caller))[0]! }
    }, { log: this.log, context: { instance: first.uuid, action: 'snapshot' } })
  }

  /**
   * The snapshot of a server booted from a volume (Nova's
   * snapshot_volume_backed): a snapshot of each of its volumes (forced: they
   * are in use), and an image with no data whose `block_device_mapping`
   * (bdm_v2) names them, with `root_device_name`; a server created from that
   * image boots from a new volume made from the root volume's snapshot
   * (`server-create-bdm.ts` imageBlockDevices). The image is active at once;
   * the snapshots become available as their backend makes them. What was
   * made is undone when a later step fails.
   */
  private async volumeBacked(row: ServerTable, bootVolumeId: string, name: string, metadata: Record<string, string>, caller: ServerCaller): Promise<{ imageId: string; server: ServerView }> {
    const snapshots = this.deps.volumeSnapshots
    if (!snapshots) throw new FailedPrecondition(`server ${row.uuid} boots from a volume, and this controller snapshots no volumes`)
    const attached = await this.db.selectFrom('volume_attachments').selectAll().where('server_id', '=', row.uuid).where('status', '=', 'attached').orderBy('device').execute()
    if (!attached.some((a) => a.volume_id === bootVolumeId)) throw new FailedPrecondition(`the root volume ${bootVolumeId} of server ${row.uuid} is not attached now; wait for the server to be built or its volumes to settle`)
    const bootVolume = await this.db.selectFrom('volumes').select(['volume_image_metadata']).where('id', '=', bootVolumeId).executeTakeFirstOrThrow()
    const inherited = Object.fromEntries(Object.entries(json<Record<string, string>>(bootVolume.volume_image_metadata, {})).filter(([k]) => !IMAGE_CORE.has(k)))
    const properties = await this.properties(row, caller, metadata, inherited)
    const project = await this.db.selectFrom('projects').select('domain_id').where('id', '=', row.project_id).executeTakeFirst()
    const owner: ImageViewer = { projectId: row.project_id, domainId: project?.domain_id ?? '', isAdmin: false, canWrite: true }
    const admin: ServerCaller = { ...caller, isAdmin: true }
    return withReverter(async (revert) => {
      const mapping: Array<Record<string, unknown>> = []
      for (const a of attached) {
        const snap = await snapshots.create({ volumeId: a.volume_id, name: `snapshot for ${name}`, force: true }, caller)
        revert.add(`delete snapshot ${snap.id}`, async () => {
          await snapshots.delete({ id: snap.id, force: true }, admin)
        })
        mapping.push({
          source_type: 'snapshot', destination_type: 'volume', snapshot_id: snap.id, volume_id: null, image_id: null, volume_size: snap.size,
          boot_index: a.boot_index >= 0 ? a.boot_index : null, device_name: `/dev/${a.device}`, delete_on_termination: a.delete_on_termination === 1,
          disk_bus: 'virtio', device_type: 'disk', guest_format: null, no_device: null, tag: null, volume_type: null,
        })
      }
      const image = await this.deps.images.create({
        name, diskFormat: 'qcow2', containerFormat: 'bare', visibility: 'private',
        properties: { ...properties, block_device_mapping: JSON.stringify(mapping), bdm_v2: 'True', root_device_name: '/dev/vda' },
      }, owner)
      revert.add(`delete image ${image.id}`, () => this.deps.images.delete(image.id, SERVICE))
      await this.deps.images.activateEmpty(image.id, SERVICE)
      this.log.info({ instance: row.uuid, image: image.id, snapshots: mapping.map((m) => m.snapshot_id), requestId: caller.requestId }, 'volume-backed server snapshot made')
      return { imageId: image.id, server: await this.deps.views.get(row.uuid, caller) }
    }, { log: this.log, context: { instance: row.uuid, action: 'snapshot' } })
  }

  /**
   * After a snapshot's result: a failed one leaves no image behind (Nova's
   * snapshot error handling deletes it); a backup that was made rotates the
   * server's backups. Also for a result no longer awaited (a delete took
   * over the server): its image is still the snapshot's.
   */
  async applyResult(r: CastResultEvent): Promise<void> {
    const imageId = snapshotImageOf(r.castId)
    const rotation = backupRotationOf(r.castId)
    if (!imageId || (r.ok && rotation === undefined)) return
    const row = await this.db.selectFrom('servers').select(['host', 'project_id']).where('uuid', '=', r.instanceUuid).executeTakeFirst()
    // Only the server's host speaks for its snapshots (cast ids are predictable).
    if (!row || row.host !== r.host) return
    if (!r.ok) {
      await this.deps.images.discardUnfinished(imageId, { what: rotation === undefined ? 'server snapshot' : 'server backup', why: r.message, log: this.log, context: { instance: r.instanceUuid } })
      return
    }
    await this.rotate(r.instanceUuid, row.project_id, imageId, rotation!)
  }

  /**
   * Nova's `_rotate_backups`: of the server's backups of the type the new
   * one `imageId` has, newest first, those beyond `rotation` are deleted. A
   * backup that cannot be deleted (protected, say) is logged and kept; the
   * others are still deleted.
   */
  private async rotate(uuid: string, projectId: string, imageId: string, rotation: number): Promise<void> {
    const made = await this.deps.images.get({ id: imageId }, SERVICE).catch(() => undefined)
    if (!made) return
    const properties = { image_type: 'backup', backup_type: made.properties.backup_type ?? '', instance_uuid: uuid }
    const backups: string[] = []
    for await (const i of this.deps.images.listAll({ owner: projectId, properties }, SERVICE)) backups.push(i.id)
    const excess = backups.slice(rotation)
    for (const id of excess) {
      await this.deps.images.delete(id, SERVICE).catch((err: Error) => this.log.warn({ instance: uuid, image: id, err: err.message }, 'a backup beyond the rotation could not be deleted; kept'))
    }
    if (excess.length) this.log.info({ instance: uuid, rotation, deleted: excess }, 'server backups rotated')
  }

  /** The server's image now, or undefined when it was deleted since (the snapshot then inherits nothing). */
  private async source(imageId: string) {
    if (!imageId) return undefined
    return this.deps.images.get({ id: imageId }, SERVICE).catch((err) => {
      if (err instanceof NotFound) return undefined
      throw err
    })
  }

  /**
   * The snapshot's properties (nova `initialize_instance_snapshot_metadata`):
   * the source image's, less those never inherited, then `instance_uuid`,
   * `user_id`, `image_type` (snapshot or backup), `base_image_ref`, the libvirt driver's
   * `image_location`/`image_state`/`owner_id`, and last the request's metadata.
   */
  private async properties(row: { uuid: string; image_id: string; project_id: string }, caller: ServerCaller, metadata: Record<string, string>, from?: Record<string, string>, imageType: 'snapshot' | 'backup' = 'snapshot'): Promise<Record<string, string>> {
    const source = from ? undefined : await this.source(row.image_id)
    const inherited = Object.fromEntries(Object.entries(from ?? source?.properties ?? {}).filter(([k]) => !NOT_INHERITED.has(k) && !k.startsWith('os_glance')))
    const props: Record<string, string> = {
      ...inherited,
      instance_uuid: row.uuid,
      user_id: caller.userId,
      image_type: imageType,
      base_image_ref: row.image_id,
      image_location: 'snapshot',
      image_state: 'available',
      owner_id: row.project_id,
      ...metadata,
    }
    for (const k of Object.keys(metadata)) if (!/^[\w.:-]{1,255}$/.test(k)) throw new InvalidArgument(`metadata key '${k}' cannot be an image property: 1-255 characters of letters, digits, _ . : -`, { field: `metadata.${k}` })
    return props
  }
}
