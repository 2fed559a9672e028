/**
 * Images with Glance v2 semantics: metadata first (queued), data by upload
 * (saving → active; failures go back to queued with nothing kept), download,
 * visibility public/community/shared/private with members, protection,
 * deactivation, and the safety inspection of every upload: the detected format
 * must be the declared disk_format and the inspector must find nothing unsafe
 * (backing file, external data file, unknown features, polyglot files).
 */
import { createHash, randomUUID } from 'node:crypto'
import { AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, ResourceExhausted } from '../../proto/errors.js'
import { isUuid } from '../../proto/ids.js'
import type { Db } from '../store/db.js'
import type { ImageTable } from '../store/schema.js'
import { compiledOnce, jsonArray, jsonRows } from '../store/engine.js'
import type { QuotaEngine } from '../quota/quota.js'
import { checkName } from '../identity/validate.js'
import { CONTAINER_FORMATS, DETECTED_AS, DISK_FORMATS, VISIBILITIES, checkTransition, type ImageStatus } from './states.js'
import type { ImageStore, StoredData } from './store.js'
import type { FileSource } from '../../native/index.js'

export interface Image {
  id: string
  name: string
  status: string
  visibility: string
  owner: string
  diskFormat: string
  containerFormat: string
  checksum: string
  osHashAlgo: string
  osHashValue: string
  size: number
  virtualSize: number
  minDisk: number
  minRam: number
  protected: boolean
  tags: string[]
  properties: Record<string, string>
  createdAt: Date
  updatedAt: Date
  file: string
  schema: string
}

export interface ImageMember {
  imageId: string
  memberId: string
  status: string
  createdAt: Date
  updatedAt: Date
}

/** The caller, as the image rules need it. */
export interface ImageViewer {
  projectId: string | undefined
  domainId: string
  isAdmin: boolean
  /** Has the member role on its project (readers may only read). */
  canWrite: boolean
  /**
   * An image-read grant: this one image may be read whatever its visibility
   * (its server's owner could read it when the server was created), and no
   * other image at all.
   */
  onlyImage?: string
  /**
   * An image-upload grant (a server snapshot's host): the data of this one
   * image may be uploaded while it is queued; nothing else, not even reading it.
   */
  uploadOnly?: string
}

/** The controller itself as it uses the catalog: every image, whoever owns it (snapshots and uploads it makes, and their cleanup). */
export const IMAGE_SERVICE: ImageViewer = { projectId: undefined, domainId: '', isAdmin: true, canWrite: true }

/** The viewer of an image-read token's bearer. */
export function imageReader(imageId: string): ImageViewer {
  return { projectId: undefined, domainId: '', isAdmin: false, canWrite: false, onlyImage: imageId }
}

/** The viewer of an image-upload token's bearer. */
export function imageUploader(imageId: string): ImageViewer {
  return { projectId: undefined, domainId: '', isAdmin: false, canWrite: false, uploadOnly: imageId }
}

/** Where {@link ImageCatalog.discardUnfinished} says what it did (the caller's logger). */
export interface DiscardLog {
  info(o: object, m: string): void
  warn(o: object, m: string): void
}

/** Reads a file's real format and safety (the native engine's inspector). */
export type Inspector = (path: string) => Promise<{ format: string; virtualSize: number; safe: boolean; reasons: string }>

const MiB = 1024 * 1024
/** The largest page a listing gives (Glance's api_limit_max). */
const MAX_PAGE = 1000

function oneOf<T extends string>(field: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) throw new InvalidArgument(`${field} '${value}' is not one of ${allowed.join(', ')}`, { field })
  return value as T
}

function checkSmallInt(field: string, v: number | undefined): number {
  const n = v ?? 0
  if (!Number.isInteger(n) || n < 0 || n > 2 ** 31 - 1) throw new InvalidArgument(`${field} must be a non-negative integer, got ${n}`, { field })
  return n
}

function checkTags(tags: string[] | undefined): string[] {
  const out = [...new Set(tags ?? [])]
  for (const t of out) if (t.length === 0 || t.length > 255) throw new InvalidArgument(`tag '${t}' must be 1-255 characters`, { field: 'tags' })
  return out
}

const RESERVED_PROPERTIES = new Set(['id', 'name', 'status', 'visibility', 'owner', 'checksum', 'size', 'virtual_size', 'created_at', 'updated_at', 'file', 'schema', 'os_hash_algo', 'os_hash_value', 'disk_format', 'container_format', 'min_disk', 'min_ram', 'protected', 'tags', 'direct_url', 'locations'])

function checkProperties(props: Record<string, string> | undefined): Record<string, string> {
  for (const [k, v] of Object.entries(props ?? {})) {
    if (RESERVED_PROPERTIES.has(k)) throw new InvalidArgument(`'${k}' is a reserved attribute, not a custom property`, { field: `properties.${k}` })
    if (!/^[\w.:-]{1,255}$/.test(k)) throw new InvalidArgument(`property name '${k}' must be 1-255 characters of letters, digits, _ . : -`, { field: `properties.${k}` })
    if (v.length > 65535) throw new InvalidArgument(`property '${k}' is too long`, { field: `properties.${k}` })
  }
  return props ?? {}
}

/**
 * How uploads show they are alive, for {@link ImageCatalog.recoverAbandonedUploads}.
 */
export interface UploadLease {
  /**
   * An upload that sends nothing for this long is aborted (the transports'
   * idle limit, `grpc.uploadIdleTimeoutMs`). @default 60000
   */
  idleTimeoutMs: number
}

/** An image row, with its tags and properties when read with it. */
type ImageRow = ImageTable & { tags?: Array<{ tag: string }> | string; properties?: Array<{ key: string; value: string }> | string }

export class ImageCatalog {
  /** A receiving upload touches its image's updated_at at least this often. */
  private readonly touchMs: number
  /** A saving image untouched for this long has nobody receiving its data. */
  readonly abandonedAfterMs: number
  private sweepTimer: NodeJS.Timeout | undefined

  constructor(
    private readonly db: Db,
    private readonly store: ImageStore,
    private readonly quota: QuotaEngine,
    private readonly inspect: Inspector,
    lease: UploadLease = { idleTimeoutMs: 60_000 },
  ) {
    this.touchMs = Math.min(5_000, Math.max(100, lease.idleTimeoutMs / 4))
    // A live upload is touched as it receives, or aborted after the idle limit: twice that, and one touch more, is beyond any live upload.
    this.abandonedAfterMs = 2 * lease.idleTimeoutMs + this.touchMs
    quota.registerRowCount('images', 'images', 'owner')
    quota.registerCounter('image_size_total', async (trx, owner) => {
      const r = await trx.selectFrom('images').select((eb) => eb.fn.sum<number>('size').as('n')).where('owner', '=', owner.projectId).executeTakeFirst()
      return Math.ceil(Number(r?.n ?? 0) / MiB)
    })
  }

  // ------------------------------------------------------------------ metadata

  async create(
    req: { id?: string; name?: string; diskFormat?: string; containerFormat?: string; visibility?: string; minDisk?: number; minRam?: number; protected?: boolean; tags?: string[]; properties?: Record<string, string> },
    viewer: ImageViewer,
  ): Promise<Image> {
    if (!viewer.projectId) throw new FailedPrecondition('images belong to projects: use a project-scoped token')
    if (!viewer.isAdmin && !viewer.canWrite) throw new PermissionDenied('creating images needs the member role on the project; readers can only read')
    const id = req.id?.trim() || randomUUID()
    if (!isUuid(id)) throw new InvalidArgument(`image id '${id}' must be a UUID`, { field: 'id' })
    const visibility = oneOf('visibility', req.visibility || 'shared', VISIBILITIES)
    if (visibility === 'public' && !viewer.isAdmin) throw new PermissionDenied('only a cloud admin may create a public image (Glance\'s publicize_image rule)')
    const now = new Date().toISOString()
    const row: ImageTable = {
      id,
      // Glance's name is optional (null): an image created without one keeps ''. A name given must be one.
      name: req.name === undefined ? '' : checkName('name', req.name, 255),
      status: 'queued',
      visibility,
      owner: viewer.projectId,
      owner_domain_id: viewer.domainId,
      // Both may wait until the data comes (Glance): '' is not set yet, and upload asks for them.
      disk_format: req.diskFormat ? oneOf('disk_format', req.diskFormat, DISK_FORMATS) : '',
      container_format: req.containerFormat ? oneOf('container_format', req.containerFormat, CONTAINER_FORMATS) : '',
      checksum: '',
      os_hash_value: '',
      size: 0,
      virtual_size: 0,
      min_disk: checkSmallInt('min_disk', req.minDisk),
      min_ram: checkSmallInt('min_ram', req.minRam),
      protected: req.protected ? 1 : 0,
      created_at: now,
      updated_at: now,
    }
    const tags = checkTags(req.tags)
    const props = checkProperties(req.properties)
    await this.db.transaction().execute(async (trx) => {
      if (await trx.selectFrom('images').select('id').where('id', '=', id).executeTakeFirst()) throw new AlreadyExists(`an image with id ${id} already exists`)
      await this.quota.check(trx, { projectId: viewer.projectId! }, { images: 1 })
      await trx.insertInto('images').values(row).execute()
      for (const tag of tags) await trx.insertInto('image_tags').values({ image_id: id, tag }).execute()
      for (const [key, value] of Object.entries(props)) await trx.insertInto('image_properties').values({ image_id: id, key, value }).execute()
    })
    return this.get({ id }, viewer)
  }

  async get(ref: { id?: string; name?: string }, viewer: ImageViewer): Promise<Image> {
    return this.toImage(await this.visibleRow(ref, viewer, true))
  }

  async list(
    filter: { name?: string; status?: string; visibility?: string; owner?: string; tags?: string[]; limit?: number; marker?: string; memberStatus?: string; properties?: Record<string, string> },
    viewer: ImageViewer,
  ): Promise<{ images: Image[]; nextMarker: string }> {
    if (viewer.onlyImage !== undefined) throw new PermissionDenied(`an image-read token (image ${viewer.onlyImage}) cannot list images`)
    if (viewer.uploadOnly !== undefined) throw new PermissionDenied(`an image-upload token (image ${viewer.uploadOnly}) cannot list images`)
    const limit = filter.limit || 25
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) throw new InvalidArgument(`limit must be 1-${MAX_PAGE}, got ${limit}`, { field: 'limit' })
    if (filter.visibility) oneOf('visibility', filter.visibility, [...VISIBILITIES, 'all'])
    const memberStatus = filter.memberStatus || 'accepted'
    oneOf('member_status', memberStatus, ['accepted', 'pending', 'rejected', 'all'])
    // Each image's tags and properties come with it (one statement for the page, not two more per image).
    let q = this.rows(true).orderBy('created_at', 'desc').orderBy('id', 'desc')
    if (filter.name) q = q.where('name', '=', filter.name)
    if (filter.status) q = q.where('status', '=', filter.status)
    if (filter.owner) q = q.where('owner', '=', filter.owner)
    if (filter.visibility && filter.visibility !== 'all') q = q.where('visibility', '=', filter.visibility)
    for (const tag of filter.tags ?? []) q = q.where('id', 'in', this.db.selectFrom('image_tags').select('image_id').where('tag', '=', tag))
    for (const [key, value] of Object.entries(filter.properties ?? {})) {
      q = q.where('id', 'in', this.db.selectFrom('image_properties').select('image_id').where('key', '=', key).where('value', '=', value))
    }
    if (!viewer.isAdmin) {
      const project = viewer.projectId ?? ''
      const members = this.db.selectFrom('image_members').select('image_id').where('member_id', '=', project)
      const memberFilter = memberStatus === 'all' ? members : members.where('status', '=', memberStatus)
      q = q.where((eb) =>
        eb.or([
          eb('owner', '=', project),
          eb('visibility', '=', 'public'),
          // Community images are usable by all but listed only when asked for, within the owner's domain.
          eb.and([eb('visibility', '=', 'community'), eb('owner_domain_id', '=', viewer.domainId), eb.lit(filter.visibility === 'community')]),
          eb.and([eb('visibility', '=', 'shared'), eb('id', 'in', memberFilter)]),
        ]),
      )
    }
    if (filter.marker) {
      const m = await this.db.selectFrom('images').select(['id', 'created_at']).where('id', '=', filter.marker).executeTakeFirst()
      if (!m) throw new InvalidArgument(`marker ${filter.marker} is not an image id`, { field: 'marker' })
      q = q.where((eb) => eb.or([eb('created_at', '<', m.created_at), eb.and([eb('created_at', '=', m.created_at), eb('id', '<', m.id)])]))
    }
    const rows = await q.limit(limit + 1).execute()
    const page = rows.slice(0, limit)
    return { images: await Promise.all(page.map((r) => this.toImage(r))), nextMarker: rows.length > limit ? page[page.length - 1]!.id : '' }
  }

  /**
   * Every image `list` gives for `filter`, from `filter.marker` on, a page of
   * the largest size at a time: for callers that filter, sort or rotate beyond
   * what one page answers (they stop reading by leaving the loop).
   */
  async *listAll(filter: Omit<Parameters<ImageCatalog['list']>[0], 'limit'>, viewer: ImageViewer): AsyncGenerator<Image> {
    for (let marker = filter.marker; ;) {
      const page = await this.list({ ...filter, limit: MAX_PAGE, ...(marker ? { marker } : {}) }, viewer)
      yield* page.images
      if (!page.nextMarker) return
      marker = page.nextMarker
    }
  }

  async update(
    id: string | undefined,
    patch: { name?: string; minDisk?: number; minRam?: number; protected?: boolean; visibility?: string; addTags?: string[]; removeTags?: string[]; setProperties?: Record<string, string>; unsetProperties?: string[]; diskFormat?: string; containerFormat?: string },
    viewer: ImageViewer,
  ): Promise<Image> {
    const row = await this.writableRow(id, viewer)
    const set: Partial<ImageTable> = { updated_at: new Date().toISOString() }
    if (patch.name !== undefined) set.name = checkName('name', patch.name, 255)
    if (patch.minDisk !== undefined) set.min_disk = checkSmallInt('min_disk', patch.minDisk)
    if (patch.minRam !== undefined) set.min_ram = checkSmallInt('min_ram', patch.minRam)
    if (patch.protected !== undefined) set.protected = patch.protected ? 1 : 0
    if (patch.visibility !== undefined) {
      set.visibility = oneOf('visibility', patch.visibility, VISIBILITIES)
      if (set.visibility === 'public' && !viewer.isAdmin) throw new PermissionDenied('only a cloud admin may make an image public')
      if (set.visibility === 'private' && (await this.db.selectFrom('image_members').select('member_id').where('image_id', '=', row.id).executeTakeFirst())) {
        throw new FailedPrecondition('the image has members; remove them before making it private')
      }
    }
    for (const [field, value, allowed] of [['disk_format', patch.diskFormat, DISK_FORMATS], ['container_format', patch.containerFormat, CONTAINER_FORMATS]] as const) {
      if (value === undefined) continue
      if (row.status !== 'queued') throw new FailedPrecondition(`${field} can only change before data is uploaded (the image is ${row.status})`)
      set[field] = oneOf(field, value, allowed)
    }
    const addTags = checkTags(patch.addTags)
    const props = checkProperties(patch.setProperties)
    await this.db.transaction().execute(async (trx) => {
      await trx.updateTable('images').set(set).where('id', '=', row.id).execute()
      for (const tag of addTags) await trx.insertInto('image_tags').values({ image_id: row.id, tag }).onConflict((oc) => oc.doNothing()).execute()
      for (const tag of patch.removeTags ?? []) await trx.deleteFrom('image_tags').where('image_id', '=', row.id).where('tag', '=', tag).execute()
      for (const [key, value] of Object.entries(props)) {
        await trx.insertInto('image_properties').values({ image_id: row.id, key, value }).onConflict((oc) => oc.columns(['image_id', 'key']).doUpdateSet({ value })).execute()
      }
      for (const key of patch.unsetProperties ?? []) {
        const r = await trx.deleteFrom('image_properties').where('image_id', '=', row.id).where('key', '=', key).executeTakeFirst()
        if (Number(r.numDeletedRows) === 0) throw new NotFound(`image ${row.id} has no property '${key}'`)
      }
    })
    return this.get({ id: row.id }, viewer)
  }

  async delete(id: string | undefined, viewer: ImageViewer): Promise<void> {
    const row = await this.writableRow(id, viewer)
    if (row.protected) throw new FailedPrecondition(`image ${row.id} is protected; unset protected first`)
    checkTransition(row.status, 'deleted', 'delete')
    await this.db.deleteFrom('images').where('id', '=', row.id).execute()
    await this.store.remove(row.id)
  }

  /**
   * Deletes an image that never became active — the image of a server
   * snapshot or a volume upload that failed — saying why in `log`. An active
   * image is kept (its data is whole, and the user's); one already gone is
   * nothing to do. Never throws: a delete that fails is logged.
   * @param what what the image was made for, e.g. `server snapshot`, `volume upload`
   * @param context the operation's log context (instance, volume, request id)
   * @returns whether the image was deleted
   */
  async discardUnfinished(id: string, o: { what: string; why: string; log: DiscardLog; context?: object }): Promise<boolean> {
    const row = await this.db.selectFrom('images').select(['id', 'status']).where('id', '=', id).executeTakeFirst()
    if (!row || row.status === 'active') return false
    try {
      await this.delete(id, IMAGE_SERVICE)
      o.log.info({ ...o.context, image: id, status: row.status, why: o.why }, `image of a failed ${o.what} deleted`)
      return true
    } catch (err) {
      if (!(err instanceof NotFound)) o.log.warn({ ...o.context, image: id, err: (err as Error).message }, `image of a failed ${o.what} not deleted`)
      return false
    }
  }

  async setActive(id: string | undefined, active: boolean, viewer: ImageViewer): Promise<Image> {
    const row = await this.visibleRow({ id }, viewer)
    const to: ImageStatus = active ? 'active' : 'deactivated'
    if (row.status === to) return this.toImage(row)
    checkTransition(row.status, to, active ? 'reactivate' : 'deactivate')
    await this.db.updateTable('images').set({ status: to, updated_at: new Date().toISOString() }).where('id', '=', row.id).where('status', '=', row.status).execute()
    return this.get({ id: row.id }, viewer)
  }

  // ------------------------------------------------------------------ data

  /**
   * Makes a queued image active with no data (Nova's volume-backed snapshot
   * images: their data is in the volume snapshots their block_device_mapping
   * names; Nova uploads nothing, Glance records size 0 and the empty data's hashes).
   */
  async activateEmpty(id: string | undefined, viewer: ImageViewer): Promise<Image> {
    const row = await this.writableRow(id, viewer)
    checkTransition(row.status, 'saving', 'activate')
    checkTransition('saving', 'active', 'activate')
    const r = await this.db.updateTable('images')
      .set({ status: 'active', checksum: createHash('md5').digest('hex'), os_hash_value: createHash('sha512').digest('hex'), size: 0, virtual_size: 0, updated_at: new Date().toISOString() })
      .where('id', '=', row.id).where('status', '=', 'queued').executeTakeFirst()
    if (Number(r.numUpdatedRows) !== 1) throw new FailedPrecondition(`cannot activate image ${row.id}: an upload is in progress`)
    return this.get({ id: row.id }, viewer)
  }

  /** Receives the image data: queued → saving → active, or back to queued with nothing kept. */
  async upload(id: string | undefined, chunks: AsyncIterable<Buffer[]>, viewer: ImageViewer, announcedSize = 0): Promise<Image> {
    const row = await this.writableRow(id, viewer, { upload: true })
    checkTransition(row.status, 'saving', 'upload data to')
    const unset = [row.disk_format ? '' : 'disk_format', row.container_format ? '' : 'container_format'].filter(Boolean)
    if (unset.length) throw new InvalidArgument(`image ${row.id} needs ${unset.join(' and ')} set before its data is uploaded (the data is checked against disk_format)`, { field: unset[0] })
    // queued → saving atomically: a second concurrent upload finds it saving.
    const claimed = await this.db.updateTable('images').set({ status: 'saving', updated_at: new Date().toISOString() }).where('id', '=', row.id).where('status', '=', 'queued').executeTakeFirst()
    if (Number(claimed.numUpdatedRows) !== 1) throw new FailedPrecondition(`cannot upload data to image ${row.id}: another upload is in progress`)
    let data: StoredData | undefined
    try {
      const limits = await this.quota.limits(this.db, row.owner)
      const budgetMiB = limits.image_size_total!
      const usedBytes = Number((await this.db.selectFrom('images').select((eb) => eb.fn.sum<number>('size').as('n')).where('owner', '=', row.owner).executeTakeFirst())?.n ?? 0)
      // With a known size, refuse before reading any data.
      if (announcedSize > 0 && budgetMiB >= 0 && usedBytes + announcedSize > budgetMiB * MiB) {
        throw new ResourceExhausted(`quota exceeded for image_size_total: ${announcedSize} more bytes would take the project's images past ${budgetMiB} MiB; delete some or ask an admin to raise the quota`)
      }
      data = await this.store.receive(row.id, this.touching(row.id, chunks), (total) => {
        if (budgetMiB >= 0 && usedBytes + total > budgetMiB * MiB) {
          throw new ResourceExhausted(`quota exceeded for image_size_total: the project's images would take more than ${budgetMiB} MiB; delete some or ask an admin to raise the quota`)
        }
      })
      const found = await this.inspect(data.partialPath)
      const expected = DETECTED_AS[row.disk_format as keyof typeof DETECTED_AS]
      if (!found.safe) throw new InvalidArgument(`the uploaded data is unsafe (${found.reasons}); it was discarded`, { field: 'data' })
      if (found.format !== expected) {
        throw new InvalidArgument(`the uploaded data is ${found.format} but the image's disk_format is ${row.disk_format}; it was discarded`, { field: 'disk_format' })
      }
      await this.store.commit(row.id, data)
      await this.db
        .updateTable('images')
        .set({ status: 'active', checksum: data.md5, os_hash_value: data.sha512, size: data.size, virtual_size: found.virtualSize, updated_at: new Date().toISOString() })
        .where('id', '=', row.id)
        .execute()
    } catch (err) {
      if (data) await this.store.discard(data)
      await this.store.remove(row.id)
      await this.db.updateTable('images').set({ status: 'queued', updated_at: new Date().toISOString() }).where('id', '=', row.id).where('status', '=', 'saving').execute()
      throw err
    }
    // The bearer of an upload grant reads no image, but learns what its upload became.
    if (viewer.uploadOnly !== undefined) return this.toImage((await this.db.selectFrom('images').selectAll().where('id', '=', row.id).executeTakeFirstOrThrow()))
    return this.get({ id: row.id }, viewer)
  }

  /** `chunks`, touching the saving image's updated_at as they come (the upload's lease: {@link recoverAbandonedUploads}). */
  private async *touching(id: string, chunks: AsyncIterable<Buffer[]>): AsyncIterable<Buffer[]> {
    let touched = Date.now()
    for await (const c of chunks) {
      if (Date.now() - touched >= this.touchMs) {
        touched = Date.now()
        await this.db.updateTable('images').set({ updated_at: new Date(touched).toISOString() }).where('id', '=', id).where('status', '=', 'saving').execute()
      }
      yield c
    }
  }

  /**
   * Images left `saving` by an upload whose controller died (SIGKILL, power
   * loss: nothing ran its rollback) go back to `queued` with their partial
   * data removed, as a failed Glance v2 upload does, and the reason is
   * logged. A live upload touches its image as it receives (or is aborted
   * after the idle limit), so only images untouched for `abandonedAfterMs`
   * are taken, whichever controller received them. The work that made the
   * upload (a server snapshot's or volume upload's cast, redelivered to its
   * host) then uploads again, or fails and discards the image. Returns the
   * ids of the images put back.
   */
  async recoverAbandonedUploads(log: DiscardLog, now = Date.now()): Promise<string[]> {
    const before = new Date(now - this.abandonedAfterMs).toISOString()
    const stale = await this.db.selectFrom('images').select(['id', 'owner', 'updated_at']).where('status', '=', 'saving').where('updated_at', '<', before).execute()
    const back: string[] = []
    for (const row of stale) {
      const r = await this.db.updateTable('images').set({ status: 'queued', updated_at: new Date().toISOString() })
        .where('id', '=', row.id).where('status', '=', 'saving').where('updated_at', '=', row.updated_at).executeTakeFirst()
      if (Number(r.numUpdatedRows) !== 1) continue // touched or finished meanwhile: alive after all
      await this.store.remove(row.id)
      log.warn({ image: row.id, project: row.owner, savingSince: row.updated_at }, `image upload abandoned: nothing received for ${Math.round(this.abandonedAfterMs / 1000)} s (its controller stopped mid-upload); back to queued, partial data removed`)
      back.push(row.id)
    }
    return back
  }

  /** Recovers abandoned uploads now (a controller starting) and then every half of `abandonedAfterMs` (1 s to 60 s). */
  startUploadSweep(log: DiscardLog): void {
    if (this.sweepTimer) return
    const sweep = () => void this.recoverAbandonedUploads(log).catch((err) => log.warn({ err: (err as Error).message }, 'abandoned image uploads not recovered'))
    sweep()
    this.sweepTimer = setInterval(sweep, Math.min(60_000, Math.max(1_000, this.abandonedAfterMs / 2)))
    this.sweepTimer.unref()
  }

  stop(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer)
    this.sweepTimer = undefined
  }

  /** The image and its data, opened for reading; the caller closes the source. */
  async download(id: string | undefined, viewer: ImageViewer): Promise<{ image: Image; source: FileSource }> {
    const row = await this.visibleRow({ id }, viewer)
    if (row.status === 'deactivated' && !viewer.isAdmin) throw new FailedPrecondition(`image ${row.id} is deactivated; only admins can download it`)
    if (row.status !== 'active' && row.status !== 'deactivated') throw new FailedPrecondition(`image ${row.id} has no data yet (it is ${row.status})`)
    const image = await this.toImage(row)
    return { image, source: this.store.open(row.id) }
  }

  // ------------------------------------------------------------------ members

  async addMember(imageId: string | undefined, memberId: string | undefined, viewer: ImageViewer): Promise<ImageMember> {
    const row = await this.writableRow(imageId, viewer)
    if (row.visibility !== 'shared') throw new FailedPrecondition(`image ${row.id} is ${row.visibility}; only shared images have members`)
    const project = await this.db.selectFrom('projects').select(['id', 'domain_id']).where('id', '=', memberId ?? '').executeTakeFirst()
    if (!project) throw new NotFound(`project ${memberId} not found`)
    if (project.domain_id !== row.owner_domain_id && !viewer.isAdmin) throw new PermissionDenied('images are shared within their domain; only a cloud admin can share across domains')
    if (project.id === row.owner) throw new InvalidArgument('the owner is not a member of its own image', { field: 'member_id' })
    const now = new Date().toISOString()
    const r = await this.db.insertInto('image_members').values({ image_id: row.id, member_id: project.id, status: 'pending', created_at: now, updated_at: now }).onConflict((oc) => oc.doNothing()).executeTakeFirst()
    if (Number(r.numInsertedOrUpdatedRows ?? 0) === 0) throw new AlreadyExists(`project ${project.id} is already a member of image ${row.id}`)
    return this.member(row.id, project.id)
  }

  /** The member itself accepts or rejects (or resets to pending). */
  async updateMember(imageId: string | undefined, memberId: string | undefined, status: string | undefined, viewer: ImageViewer): Promise<ImageMember> {
    const st = oneOf('status', status ?? '', ['accepted', 'rejected', 'pending'])
    const m = await this.member(imageId ?? '', memberId ?? '')
    if (!viewer.isAdmin && (viewer.projectId !== m.memberId || !viewer.canWrite)) throw new PermissionDenied('only the member project itself can accept or reject a shared image')
    await this.db.updateTable('image_members').set({ status: st, updated_at: new Date().toISOString() }).where('image_id', '=', m.imageId).where('member_id', '=', m.memberId).execute()
    return this.member(m.imageId, m.memberId)
  }

  async listMembers(imageId: string | undefined, viewer: ImageViewer): Promise<ImageMember[]> {
    const row = await this.visibleRow({ id: imageId }, viewer)
    let q = this.db.selectFrom('image_members').selectAll().where('image_id', '=', row.id).orderBy('member_id')
    // A member sees only its own membership; the owner sees all.
    if (!viewer.isAdmin && row.owner !== viewer.projectId) q = q.where('member_id', '=', viewer.projectId ?? '')
    return (await q.execute()).map((m) => ({ imageId: m.image_id, memberId: m.member_id, status: m.status, createdAt: new Date(m.created_at), updatedAt: new Date(m.updated_at) }))
  }

  async deleteMember(imageId: string | undefined, memberId: string | undefined, viewer: ImageViewer): Promise<void> {
    const row = await this.writableRow(imageId, viewer)
    const r = await this.db.deleteFrom('image_members').where('image_id', '=', row.id).where('member_id', '=', memberId ?? '').executeTakeFirst()
    if (Number(r.numDeletedRows) === 0) throw new NotFound(`project ${memberId} is not a member of image ${row.id}`)
  }

  // ------------------------------------------------------------------ helpers

  private canSee(row: ImageTable, viewer: ImageViewer, membership: string | undefined): boolean {
    if (viewer.isAdmin || row.owner === viewer.projectId || row.visibility === 'public') return true
    if (row.visibility === 'community') return row.owner_domain_id === viewer.domainId
    if (row.visibility === 'shared') return membership !== undefined
    return false
  }

  /**
   * The image `ref` names that `viewer` may see; with `details`, its tags and
   * properties read with it. One statement (the row, the viewer's membership
   * and the details together): a server create reads its image this way.
   */
  private async visibleRow(ref: { id?: string; name?: string }, viewer: ImageViewer, details = false): Promise<ImageRow> {
    if (viewer.uploadOnly !== undefined) throw new PermissionDenied(`an image-upload token (image ${viewer.uploadOnly}) reads no image`)
    if (viewer.onlyImage !== undefined) {
      if (ref.id !== viewer.onlyImage) throw new PermissionDenied(`the image-read token reads image ${viewer.onlyImage} only, not ${ref.id || `'${ref.name ?? ''}'`}`)
      const [found] = await this.lookup(details, 'id')({ ref: ref.id, projectId: '' })
      if (!found) throw new NotFound(`image ${ref.id} not found (deleted since the build spec was made?)`)
      const { membership: _, ...row } = found
      return row
    }
    let rows: Array<ImageRow & { membership: string | null }>
    if (ref.id) rows = await this.lookup(details, 'id')({ ref: ref.id, projectId: viewer.projectId ?? '' })
    else if (ref.name) rows = await this.lookup(details, 'name')({ ref: ref.name, projectId: viewer.projectId ?? '' })
    else throw new InvalidArgument('image: give an id or a name', { field: 'id|name' })
    for (const { membership, ...row } of rows) if (this.canSee(row, viewer, membership ?? undefined)) return row
    throw new NotFound(`image ${ref.id ?? `'${ref.name}'`} not found`)
  }

  /** visibleRow's statements (by id or by name, with details or without), each compiled once. */
  private readonly lookups = new Map<string, (v: { ref: unknown; projectId: unknown }) => Promise<Array<ImageRow & { membership: string | null }>>>()

  /** Images by id or name (newest first), each with the viewer's membership status, and with their details when `details`. */
  private lookup(details: boolean, by: 'id' | 'name') {
    const key = `${details}:${by}`
    let f = this.lookups.get(key)
    if (!f) {
      f = compiledOnce(this.db, ['ref', 'projectId'], (p) => {
        const q = this.rows(details)
          .select((eb) => eb.selectFrom('image_members').select('status').whereRef('image_members.image_id', '=', 'images.id').where('member_id', '=', p.projectId).as('membership'))
          .where(by, '=', p.ref)
        return by === 'name' ? q.orderBy('created_at', 'desc') : q
      }) as (v: { ref: unknown; projectId: unknown }) => Promise<Array<ImageRow & { membership: string | null }>>
      this.lookups.set(key, f)
    }
    return f
  }

  /** Images, with their tags and properties when `details` (each a JSON array column). */
  private rows(details: boolean) {
    const q = this.db.selectFrom('images').selectAll('images')
    if (!details) return q
    return q.select((eb) => [
      jsonArray(this.db, eb.selectFrom('image_tags').select('tag').whereRef('image_tags.image_id', '=', 'images.id').orderBy('tag')).as('tags'),
      jsonArray(this.db, eb.selectFrom('image_properties').select(['key', 'value']).whereRef('image_properties.image_id', '=', 'images.id')).as('properties'),
    ])
  }

  /** The image, if the caller may change it: a cloud admin, or a member (not reader) of the owning project. */
  private async writableRow(id: string | undefined, viewer: ImageViewer, o: { upload?: boolean } = {}): Promise<ImageTable> {
    if (viewer.uploadOnly !== undefined) {
      if (!o.upload) throw new PermissionDenied(`an image-upload token (image ${viewer.uploadOnly}) can only upload that image's data`)
      if (id !== viewer.uploadOnly) throw new PermissionDenied(`the image-upload token uploads image ${viewer.uploadOnly} only, not ${id || "''"}`)
      const own = await this.db.selectFrom('images').selectAll().where('id', '=', id).executeTakeFirst()
      if (!own) throw new NotFound(`image ${id} not found (deleted since the snapshot began?)`)
      return own
    }
    const row = await this.visibleRow({ id }, viewer)
    if (viewer.isAdmin || (row.owner === viewer.projectId && viewer.canWrite)) return row
    throw new PermissionDenied(`image ${row.id} belongs to project ${row.owner}; only its members (not readers) or a cloud admin can change it`)
  }

  private async member(imageId: string, memberId: string): Promise<ImageMember> {
    const m = await this.db.selectFrom('image_members').selectAll().where('image_id', '=', imageId).where('member_id', '=', memberId).executeTakeFirst()
    if (!m) throw new NotFound(`project ${memberId} is not a member of image ${imageId}`)
    return { imageId: m.image_id, memberId: m.member_id, status: m.status, createdAt: new Date(m.created_at), updatedAt: new Date(m.updated_at) }
  }

  /** The API's image of a row: its tags and properties as read with it (`rows(true)`), else read now. */
  private async toImage(r: ImageRow): Promise<Image> {
    const tags = r.tags !== undefined ? jsonRows(r.tags) : await this.db.selectFrom('image_tags').select('tag').where('image_id', '=', r.id).orderBy('tag').execute()
    const props = r.properties !== undefined ? jsonRows(r.properties) : await this.db.selectFrom('image_properties').select(['key', 'value']).where('image_id', '=', r.id).execute()
    return {
      id: r.id,
      name: r.name,
      status: r.status,
      visibility: r.visibility,
      owner: r.owner,
      diskFormat: r.disk_format,
      containerFormat: r.container_format,
      checksum: r.checksum,
      osHashAlgo: r.os_hash_value ? 'sha512' : '',
      osHashValue: r.os_hash_value,
      size: Number(r.size),
      virtualSize: Number(r.virtual_size),
      minDisk: r.min_disk,
      minRam: r.min_ram,
      protected: r.protected !== 0,
      tags: tags.map((t) => t.tag),
      properties: Object.fromEntries(props.map((p) => [p.key, p.value])),
      createdAt: new Date(r.created_at),
      updatedAt: new Date(r.updated_at),
      file: `/v2/images/${r.id}/file`,
      schema: '/v2/schemas/image',
    }
  }
}
