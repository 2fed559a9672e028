/**
 * Volumes uploaded to images (Cinder's os-volume_upload_image,
 * `copy_volume_to_image`): the image is recorded at once (queued, in the
 * volume's project, private unless asked), then the volume becomes
 * `uploading` with the upload cast pending — its cast id names the image —
 * and the volume's host converts its data (qcow2 or raw, as asked) and
 * uploads it with an image-upload token the conductor issues
 * (`../conductor/conductor.ts` volumeUpload). The result puts the volume
 * back (available, or in-use when attached: `results.ts`); a failed upload
 * leaves no image behind (`ImageCatalog.discardUnfinished`, from `results.ts`) and says why in the volume's status
 * reason.
 */
import { InvalidArgument, NotFound } from '../../proto/errors.js'
import { uploadCastId } from '../../proto/volume-work.js'
import { withReverter } from '../../proto/revert.js'
import type { Db } from '../store/db.js'
import type { VolumeTable } from '../store/schema.js'
import { IMAGE_SERVICE, type ImageCatalog, type ImageViewer } from '../image/catalog.js'
import { now, json, type Log } from '../compute/server-model.js'
import { beginVolumeAction } from './states.js'
import { volumeWork, type VolumeCasts } from './casts.js'
import { checkWriter, findRow, volumeView, type VolumeCaller, type VolumeView } from './model.js'
import { attachmentsOfVolumes } from './attachments.js'
import { typeNameOf } from './types.js'
import type { VolumeBackends } from './backends.js'

/** The formats a volume's data is converted to (the native engine's). */
const UPLOAD_FORMATS = ['raw', 'qcow2'] as const

/** Keys of a volume's image metadata that describe its source image's bytes, not the new image's (Cinder's glance_core_properties). */
const CORE = new Set(['image_id', 'image_name', 'checksum', 'size', 'min_disk', 'min_ram', 'disk_format', 'container_format', 'os_hash_algo', 'os_hash_value'])

export interface UploadVolume {
  id?: string
  imageName?: string
  diskFormat?: string
  containerFormat?: string
  force?: boolean
  visibility?: string
  protected?: boolean
}

export interface VolumeUploadView {
  volume: VolumeView
  imageId: string
  imageName: string
  diskFormat: string
  containerFormat: string
  visibility: string
  protected: boolean
}

export class VolumeUploads {
  constructor(
    private readonly db: Db,
    private readonly deps: { images: ImageCatalog; casts: VolumeCasts; backends: VolumeBackends },
    private readonly log: Log,
  ) {}

  /**
   * Records the image and casts the upload to the volume's host.
   * @throws FailedPrecondition when the volume's status does not allow it (named).
   * @throws InvalidArgument for a format the volume cannot be converted to.
   * @throws ResourceExhausted when the project's image quota is used up (nothing changed).
   */
  async upload(req: UploadVolume, caller: VolumeCaller): Promise<VolumeUploadView> {
    const diskFormat = req.diskFormat || 'raw'
    if (!(UPLOAD_FORMATS as readonly string[]).includes(diskFormat)) throw new InvalidArgument(`disk_format must be ${UPLOAD_FORMATS.join(' or ')} (what a volume's data is converted to), got '${diskFormat}'`, { field: 'disk_format' })
    const containerFormat = req.containerFormat || 'bare'
    if (containerFormat !== 'bare') throw new InvalidArgument(`container_format must be bare for an image of a volume, got '${containerFormat}'`, { field: 'container_format' })
    const action = req.force ? 'upload_force' as const : 'upload' as const
    const first = await findRow(this.db, 'volumes', req.id, caller)
    checkWriter(first, caller, 'volume')
    // Checked before the image is made, so a refused upload changes nothing; checked again below.
    beginVolumeAction(action, first)
    const project = await this.db.selectFrom('projects').select('domain_id').where('id', '=', first.project_id).executeTakeFirst()
    const owner: ImageViewer = { projectId: first.project_id, domainId: project?.domain_id ?? '', isAdmin: caller.isAdmin, canWrite: true }
    const inherited = Object.fromEntries(Object.entries(json<Record<string, string>>(first.volume_image_metadata, {})).filter(([k]) => !CORE.has(k)))
    return withReverter(async (revert) => {
      const image = await this.deps.images.create({
        name: req.imageName ?? '', diskFormat, containerFormat, visibility: req.visibility || 'private', protected: Boolean(req.protected),
        // A volume's image needs a disk as large as the volume (its virtual size).
        minDisk: first.size, properties: inherited,
      }, owner)
      revert.add(`delete image ${image.id}`, () => this.deps.images.delete(image.id, IMAGE_SERVICE))
      const next = await this.db.transaction().execute(async (trx) => {
        const row = await trx.selectFrom('volumes').selectAll().where('id', '=', first.id).executeTakeFirst()
        if (!row) throw new NotFound(`volume '${first.id}' not found`, { field: 'id' })
        const status = beginVolumeAction(action, row)
        const next: VolumeTable = { ...row, status, status_reason: '', pending_cast_id: uploadCastId(row.id, image.id), pending_request_id: caller.requestId ?? '', cast_sent_at: null, updated_at: now() }
        await trx.updateTable('volumes').set(next).where('id', '=', row.id).execute()
        return next
      })
      await this.deps.casts.send({ table: 'volumes', id: next.id, host: next.host, work: volumeWork('upload_image', next), castId: next.pending_cast_id, requestId: next.pending_request_id })
      this.log.info({ volume: next.id, image: image.id, host: next.host, diskFormat, force: Boolean(req.force) }, 'volume upload to image cast')
      const volume = volumeView(next, await typeNameOf(this.db, next.volume_type_id), caller, (await attachmentsOfVolumes(this.db, [next.id])).get(next.id), await this.deps.backends.nameOf(this.db, next.host))
      return { volume, imageId: image.id, imageName: image.name, diskFormat, containerFormat, visibility: image.visibility, protected: image.protected }
    }, { log: this.log, context: { volume: first.id, action: 'upload_image' } })
  }
}
