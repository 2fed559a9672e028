/**
 * `strato image …` — openstackclient's image (Glance v2) commands. The data of
 * `image create --file` goes up in one client-streaming UploadImage call (the
 * first message names the image and its size, then 1 MiB chunks), and
 * `image save` writes the server-streaming DownloadImage to a file.
 */
import { once } from 'node:events'
import { createReadStream, createWriteStream, renameSync, rmSync, statSync } from 'node:fs'
import path from 'node:path'
import { pipeline } from 'node:stream/promises'
import type { ClientWritableStream, ServiceError } from '@grpc/grpc-js'
import { StratoError } from '../../../proto/errors.js'
import { ImagesClient, type Image, type ImageChunk, type ImageMember, type UploadImageRequest } from '../../../proto/gen/strato/image/v1/image.js'
import { VolumesClient } from '../../../proto/gen/strato/volume/v1/volume.js'
import type { Context } from '../context.js'
import { CliError, UsageError } from '../errors.js'
import { findProject, flag, opt } from '../identity.js'
import { Dict } from '../output.js'
import type { Args, Command, OptionSpec } from '../registry.js'
import { choice, expandHome, findImage, intOpt, iso, keyValues } from '../resources.js'
import { deleteEach } from './delete.js'
import { findVolume } from './volume.js'

export const DISK_FORMATS = ['ami', 'ari', 'aki', 'vhd', 'vmdk', 'raw', 'qcow2', 'vhdx', 'vdi', 'iso', 'ploop'] as const
export const CONTAINER_FORMATS = ['ami', 'ari', 'aki', 'bare', 'docker', 'ova', 'ovf', 'compressed'] as const
/** Bytes per UploadImage data message. */
export const CHUNK_BYTES = 1 << 20
/** Files larger than this get a progress bar (when stderr is a terminal). */
export const PROGRESS_MIN_BYTES = 8 << 20

const visibilityOpts = (verb: string): OptionSpec[] => [
  flag('--public', 'visibility', `${verb} image as public (admin only)`, 'public'),
  flag('--private', 'visibility', `${verb} image as private`, 'private'),
  flag('--community', 'visibility', `${verb} image as community`, 'community'),
  flag('--shared', 'visibility', `${verb} image as shared`, 'shared'),
]
const protectOpts: OptionSpec[] = [
  flag('--protected', 'protected', 'Prevent image from being deleted'),
  flag('--unprotected', 'protected', 'Allow image to be deleted (default)', false),
]
const listOpt = (f: string, dest: string, metavar: string, help: string): OptionSpec => ({ ...opt(f, dest, metavar, help), kind: 'list' })

/** The Field/Value shape of `image show`, as the seed's table (and openstackclient) print it. */
export function imageFields(i: Image) {
  const props: Record<string, string> = { ...(i.properties ?? {}) }
  if (i.osHashAlgo) props.os_hash_algo = i.osHashAlgo
  if (i.osHashValue) props.os_hash_value = i.osHashValue
  return {
    checksum: i.checksum || null,
    container_format: i.containerFormat ?? '',
    created_at: iso(i.createdAt),
    disk_format: i.diskFormat ?? '',
    file: i.file || `/v2/images/${i.id ?? ''}/file`,
    id: i.id ?? '',
    min_disk: i.minDisk ?? 0,
    min_ram: i.minRam ?? 0,
    name: i.name ?? '',
    owner: i.owner ?? '',
    properties: new Dict(props),
    protected: i.protected ?? false,
    schema: i.schema || '/v2/schemas/image',
    size: i.size || null,
    status: i.status ?? '',
    tags: [...(i.tags ?? [])].sort(),
    updated_at: iso(i.updatedAt),
    virtual_size: i.virtualSize || null,
    visibility: i.visibility ?? '',
  }
}

const memberFields = (m: ImageMember) => ({
  created_at: iso(m.createdAt),
  image_id: m.imageId ?? '',
  member_id: m.memberId ?? '',
  schema: '/v2/schemas/member',
  status: m.status ?? '',
  updated_at: iso(m.updatedAt),
})

/** A text progress bar on stderr, redrawn at most ten times a second. */
class Progress {
  private shown = -1
  private last = 0
  constructor(
    private readonly ctx: Context,
    private readonly total: number,
  ) {}

  update(done: number): void {
    const now = Date.now()
    const pct = this.total ? Math.floor((done * 100) / this.total) : 100
    if (pct === this.shown || (now - this.last < 100 && done < this.total)) return
    this.shown = pct
    this.last = now
    const width = 40
    const fill = Math.round((pct / 100) * width)
    const mib = (n: number) => (n / 1048576).toFixed(1)
    this.ctx.io.stderr(`\r[${'='.repeat(fill)}${' '.repeat(width - fill)}] ${String(pct).padStart(3)}% ${mib(done)}/${mib(this.total)} MiB`)
  }

  finish(): void {
    if (this.shown >= 0) this.ctx.io.stderr('\n')
  }
}

/** Streams `file` into the image: first {imageId, size}, then 1 MiB chunks, then an explicit end. */
export async function uploadFile(ctx: Context, imageId: string, file: string, size: number): Promise<Image> {
  const md = await ctx.metadata()
  const progress = ctx.io.stderrIsTTY && size > PROGRESS_MIN_BYTES ? new Progress(ctx, size) : undefined
  const client = ctx.client(ImagesClient)
  let settled = false
  let call!: ClientWritableStream<UploadImageRequest>
  // The executor runs at once, so `call` is set when the constructor returns.
  const result = new Promise<Image>((resolve, reject) => {
    call = client.uploadImage(md, {}, (err: ServiceError | null, res: Image) => {
      settled = true
      if (err) reject(ctx.convert(err))
      else resolve(res)
    })
  })
  // Keep the rejection observed while the data is still being written.
  result.catch(() => undefined)
  try {
    call.write({ imageId, size })
    let sent = 0
    const reader = createReadStream(file, { highWaterMark: CHUNK_BYTES })
    for await (const chunk of reader as AsyncIterable<Buffer>) {
      if (settled) break // the server refused the upload: stop sending, report its answer
      sent += chunk.length
      if (!call.write({ data: chunk })) await Promise.race([once(call, 'drain'), result.then(() => undefined, () => undefined)])
      progress?.update(sent)
    }
    if (!settled) call.write({ last: true })
    call.end()
  } catch (err) {
    // The server's answer, when it has given one, says more than the local failure it caused.
    if (settled) return result
    call.cancel()
    throw new CliError(`cannot read ${file}: ${(err as Error).message}`, { cause: err })
  } finally {
    progress?.finish()
  }
  return result
}

/** Writes the image's data to `file` (through a temporary file beside it, renamed once complete). */
async function downloadTo(ctx: Context, imageId: string, file: string): Promise<void> {
  const md = await ctx.metadata()
  const stream = ctx.client(ImagesClient).downloadImage({ id: imageId }, md)
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.part-${process.pid}`)
  const out = createWriteStream(tmp, { mode: 0o644 })
  try {
    await pipeline(
      stream,
      async function* (source: AsyncIterable<ImageChunk>) {
        for await (const c of source) if (c.data && c.data.length) yield c.data
      },
      out,
    )
    renameSync(tmp, file)
  } catch (err) {
    // A download that fails at once can beat the file's open: wait for the stream to close, or the file appears after the removal.
    if (!out.closed) await new Promise<void>((resolve) => out.once('close', () => resolve()))
    rmSync(tmp, { force: true })
    if (err instanceof StratoError || err instanceof CliError) throw err
    if (typeof (err as ServiceError).code === 'number' && 'details' in (err as object)) throw ctx.convert(err as ServiceError)
    throw new CliError(`cannot write ${file}: ${(err as Error).message}`, { cause: err })
  }
}

async function listAll(ctx: Context, a: Args, visibility: string | undefined): Promise<Image[]> {
  const limit = intOpt('image list', a, 'limit', '--limit', 1)
  const base = {
    name: a.str('name') ?? '',
    status: a.str('status') ?? '',
    visibility: visibility ?? '',
    tags: a.list('tag'),
    memberStatus: a.str('member_status') ?? '',
    owner: a.str('project') ? (await findProject(ctx, a.str('project')!, a.str('project_domain'))).id ?? '' : '',
  }
  let marker = a.str('marker') ?? ''
  if (marker) marker = (await findImage(ctx, marker)).id ?? marker
  if (limit !== undefined) {
    return (await ctx.call(ImagesClient, 'listImages', { ...base, limit: Math.min(limit, 1000), marker })).images ?? []
  }
  const out: Image[] = []
  for (;;) {
    const page = await ctx.call(ImagesClient, 'listImages', { ...base, limit: 1000, marker })
    out.push(...(page.images ?? []))
    if (!page.nextMarker) break
    marker = page.nextMarker
  }
  return out.sort((x, y) => (x.name ?? '').localeCompare(y.name ?? ''))
}

/**
 * `image create --volume`: the volume's data becomes the image (Volumes
 * UploadVolumeToImage), shown as openstackclient shows Cinder's answer.
 */
async function imageFromVolume(ctx: Context, a: Args, diskFormat: string, containerFormat: string): Promise<Record<string, unknown>> {
  const c = 'image create'
  const unsupported = [['id', '--id'], ['file', '--file'], ['min_disk', '--min-disk'], ['min_ram', '--min-ram']].filter(([dest]) => a.str(dest!) !== undefined)
    .concat(a.list('property').length ? [['property', '--property']] : [], a.list('tag').length ? [['tag', '--tag']] : [])
  if (unsupported.length) throw new UsageError(`${c}: ${unsupported.map(([, f]) => f).join(', ')} cannot be used with --volume (the image takes the volume's data and properties)`)
  const volume = await findVolume(ctx, a.str('volume')!)
  const r = await ctx.call(VolumesClient, 'uploadVolumeToImage', {
    id: volume.id ?? '', imageName: a.pos('image-name'), diskFormat, containerFormat, force: a.flag('force'),
    visibility: a.str('visibility') ?? '', protected: a.bool('protected') ?? false,
  })
  const v = r.volume ?? {}
  return {
    container_format: r.containerFormat ?? '', disk_format: r.diskFormat ?? '', display_description: v.description || null, id: v.id ?? '',
    image_id: r.imageId ?? '', image_name: r.imageName ?? '', protected: Boolean(r.protected), size: v.size ?? 0, status: v.status ?? '',
    updated_at: iso(v.updatedAt), visibility: r.visibility ?? '', volume_type: v.volumeType || null,
  }
}

export const imageCommands: Command[] = [
  {
    name: 'image create',
    summary: 'Create/upload an image',
    description: `With --file, the data is uploaded in 1 MiB chunks; a file over ${PROGRESS_MIN_BYTES >> 20} MiB shows a progress bar when stderr is a terminal. Data whose real format is not --disk-format, or that is unsafe (backing file, external data file), is refused. With --volume, the volume's data becomes the image (Cinder's upload to image: --disk-format raw or qcow2; the volume is uploading until the image is active).`,
    output: 'show',
    positionals: [{ name: 'image-name', help: 'New image name' }],
    options: [
      opt('--id', 'id', '<id>', 'Image ID to reserve (a UUID)'),
      opt('--container-format', 'container_format', '<container-format>', `Image container format: ${CONTAINER_FORMATS.join(', ')} (default: bare)`),
      opt('--disk-format', 'disk_format', '<disk-format>', `Image disk format: ${DISK_FORMATS.join(', ')} (default: raw)`),
      opt('--min-disk', 'min_disk', '<disk-gb>', 'Minimum disk size needed to boot image, in gigabytes'),
      opt('--min-ram', 'min_ram', '<ram-mb>', 'Minimum RAM size needed to boot image, in megabytes'),
      opt('--file', 'file', '<file>', 'Upload image from local file'),
      opt('--volume', 'volume', '<volume>', 'Create image from a volume'),
      flag('--force', 'force', 'Force image creation if volume is in use (only meaningful with --volume)'),
      ...protectOpts,
      ...visibilityOpts('Create'),
      listOpt('--property', 'property', '<key=value>', 'Set a property on this image (repeat option to set multiple properties)'),
      listOpt('--tag', 'tag', '<tag>', 'Set a tag on this image (repeat option to set multiple tags)'),
    ],
    async run(ctx, a) {
      const c = 'image create'
      const diskFormat = choice(c, '--disk-format', a.str('disk_format') ?? 'raw', DISK_FORMATS)
      const containerFormat = choice(c, '--container-format', a.str('container_format') ?? 'bare', CONTAINER_FORMATS)
      if (a.str('volume') !== undefined) return { kind: 'show', data: await imageFromVolume(ctx, a, diskFormat, containerFormat) }
      if (a.flag('force')) throw new UsageError(`${c}: --force is only meaningful with --volume`)
      const fileArg = a.str('file')
      const file = fileArg ? expandHome(fileArg, ctx.env) : undefined
      let size = 0
      if (file) {
        try {
          const st = statSync(file)
          if (!st.isFile()) throw new Error('not a regular file')
          size = st.size
        } catch (err) {
          throw new CliError(`cannot read --file ${fileArg}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`, { cause: err })
        }
      }
      const created = await ctx.call(ImagesClient, 'createImage', {
        name: a.pos('image-name'),
        id: a.str('id') ?? '',
        diskFormat,
        containerFormat,
        visibility: a.str('visibility') ?? '',
        minDisk: intOpt(c, a, 'min_disk', '--min-disk') ?? 0,
        minRam: intOpt(c, a, 'min_ram', '--min-ram') ?? 0,
        ...(a.bool('protected') !== undefined ? { protected: a.bool('protected') } : {}),
        tags: a.list('tag'),
        properties: keyValues(c, '--property', a.list('property')),
      })
      if (!file) return { kind: 'show', data: imageFields(created) }
      try {
        return { kind: 'show', data: imageFields(await uploadFile(ctx, created.id ?? '', file, size)) }
      } catch (err) {
        // The record without its data is of no use to whoever typed this: do not leave it behind.
        await ctx.call(ImagesClient, 'deleteImage', { id: created.id ?? '' }).catch(() => undefined)
        throw err
      }
    },
  },
  {
    name: 'image list',
    summary: 'List available images',
    description: 'Lists every image (following the pages) unless --limit is given.',
    output: 'list',
    options: [
      ...visibilityOpts('List only').map((o) => ({ ...o, help: o.help.replace('image as', 'images that are').replace(' (admin only)', '') })),
      opt('--name', 'name', '<name>', 'Filter images based on name'),
      opt('--status', 'status', '<status>', 'Filter images based on status'),
      listOpt('--tag', 'tag', '<tag>', 'Filter images based on tag (repeat for images having every tag)'),
      opt('--member-status', 'member_status', '<member-status>', 'Filter shared images by member status: accepted (default), pending, rejected, all'),
      opt('--project', 'project', '<project>', 'Search by project (owner) (name or ID)'),
      opt('--project-domain', 'project_domain', '<project-domain>', 'Domain the project belongs to, to resolve a project name'),
      flag('--long', 'long', 'List additional fields in output'),
      opt('--limit', 'limit', '<num-images>', 'Maximum number of images to display'),
      opt('--marker', 'marker', '<image>', 'The last image of the previous page (name or ID); display the list of images after it'),
    ],
    async run(ctx, a) {
      const images = await listAll(ctx, a, a.str('visibility'))
      if (a.flag('long')) {
        return {
          kind: 'list',
          columns: ['ID', 'Name', 'Disk Format', 'Container Format', 'Size', 'Checksum', 'Status', 'Visibility', 'Protected', 'Project', 'Tags'],
          rows: images.map((i) => [
            i.id ?? '', i.name ?? '', i.diskFormat ?? '', i.containerFormat ?? '', i.size || null, i.checksum || null, i.status ?? '',
            i.visibility ?? '', i.protected ?? false, i.owner ?? '', [...(i.tags ?? [])].sort(),
          ]),
        }
      }
      return { kind: 'list', columns: ['ID', 'Name', 'Status'], rows: images.map((i) => [i.id ?? '', i.name ?? '', i.status ?? '']) }
    },
  },
  {
    name: 'image show',
    summary: 'Display image details',
    output: 'show',
    positionals: [{ name: 'image', help: 'Image to display (name or ID)' }],
    options: [flag('--human-readable', 'human', 'Print image size in a human-friendly format')],
    async run(ctx, a) {
      const f: Record<string, unknown> = imageFields(await findImage(ctx, a.pos('image')))
      if (a.flag('human') && typeof f.size === 'number') f.size = human(f.size)
      return { kind: 'show', data: f }
    },
  },
  {
    name: 'image set',
    summary: 'Set image properties',
    description: '--accept, --reject and --pending set the membership of the caller\'s project (or --project) in a shared image.',
    output: 'none',
    positionals: [{ name: 'image', help: 'Image to modify (name or ID)' }],
    options: [
      opt('--name', 'name', '<name>', 'New image name'),
      opt('--min-disk', 'min_disk', '<disk-gb>', 'Minimum disk size needed to boot image, in gigabytes'),
      opt('--min-ram', 'min_ram', '<ram-mb>', 'Minimum RAM size needed to boot image, in megabytes'),
      opt('--container-format', 'container_format', '<container-format>', 'Image container format (only before data is uploaded)'),
      opt('--disk-format', 'disk_format', '<disk-format>', 'Image disk format (only before data is uploaded)'),
      ...protectOpts,
      ...visibilityOpts('Set'),
      listOpt('--property', 'property', '<key=value>', 'Set a property on this image (repeat option to set multiple properties)'),
      listOpt('--tag', 'tag', '<tag>', 'Set a tag on this image (repeat option to set multiple tags)'),
      flag('--deactivate', 'active', 'Deactivate the image (admin only)', false),
      flag('--activate', 'active', 'Activate the image (admin only)'),
      flag('--accept', 'membership', 'Accept the image membership', 'accepted'),
      flag('--reject', 'membership', 'Reject the image membership', 'rejected'),
      flag('--pending', 'membership', 'Reset the image membership to pending', 'pending'),
      opt('--project', 'project', '<project>', 'Project whose membership --accept/--reject/--pending sets (name or ID; default: the caller\'s)'),
      opt('--project-domain', 'project_domain', '<project-domain>', 'Domain the project belongs to, to resolve a project name'),
    ],
    async run(ctx, a) {
      const c = 'image set'
      const img = await findImage(ctx, a.pos('image'))
      const id = img.id ?? ''
      const visibility = a.str('visibility')
      const props = keyValues(c, '--property', a.list('property'))
      const diskFormat = a.str('disk_format')
      const containerFormat = a.str('container_format')
      const patch = {
        ...(a.str('name') !== undefined ? { name: a.str('name') } : {}),
        ...(a.str('min_disk') !== undefined ? { minDisk: intOpt(c, a, 'min_disk', '--min-disk') } : {}),
        ...(a.str('min_ram') !== undefined ? { minRam: intOpt(c, a, 'min_ram', '--min-ram') } : {}),
        ...(a.bool('protected') !== undefined ? { protected: a.bool('protected') } : {}),
        ...(visibility ? { visibility } : {}),
        ...(diskFormat !== undefined ? { diskFormat: choice(c, '--disk-format', diskFormat, DISK_FORMATS) } : {}),
        ...(containerFormat !== undefined ? { containerFormat: choice(c, '--container-format', containerFormat, CONTAINER_FORMATS) } : {}),
      }
      const newTags = a.list('tag').filter((t) => !(img.tags ?? []).includes(t))
      if (Object.keys(patch).length || Object.keys(props).length || newTags.length) {
        await ctx.call(ImagesClient, 'updateImage', { id, ...patch, addTags: newTags, setProperties: props })
      }
      const active = a.bool('active')
      if (active === false && img.status !== 'deactivated') await ctx.call(ImagesClient, 'deactivateImage', { id })
      if (active === true && img.status === 'deactivated') await ctx.call(ImagesClient, 'reactivateImage', { id })
      const status = a.str('membership')
      if (status) {
        const project = a.str('project')
        const memberId = project ? (await findProject(ctx, project, a.str('project_domain'))).id ?? '' : (await ctx.tokenInfo()).projectId ?? ''
        if (!memberId) throw new UsageError('strato image set: --accept/--reject/--pending need a project-scoped token, or --project')
        await ctx.call(ImagesClient, 'updateImageMember', { imageId: id, memberId, status })
      }
      return { kind: 'none' }
    },
  },
  {
    name: 'image unset',
    summary: 'Unset image tags and properties',
    output: 'none',
    positionals: [{ name: 'image', help: 'Image to modify (name or ID)' }],
    options: [
      listOpt('--tag', 'tag', '<key>', 'Unset a tag on this image (repeat option to unset multiple tags)'),
      listOpt('--property', 'property', '<key>', 'Unset a property on this image (repeat option to unset multiple properties)'),
    ],
    async run(ctx, a) {
      const img = await findImage(ctx, a.pos('image'))
      const tags = a.list('tag')
      const props = a.list('property')
      const missingTag = tags.filter((t) => !(img.tags ?? []).includes(t))
      const missingProp = props.filter((p) => !(p in (img.properties ?? {})))
      if (missingTag.length || missingProp.length) {
        const what = [...missingTag.map((t) => `tag '${t}'`), ...missingProp.map((p) => `property '${p}'`)].join(', ')
        throw new CliError(`image ${img.name || img.id} has no ${what}; nothing was changed`)
      }
      if (tags.length || props.length) await ctx.call(ImagesClient, 'updateImage', { id: img.id ?? '', removeTags: tags, unsetProperties: props })
      return { kind: 'none' }
    },
  },
  {
    name: 'image delete',
    summary: 'Delete image(s)',
    output: 'none',
    positionals: [{ name: 'image', help: 'Image(s) to delete (name or ID)', variadic: true }],
    async run(ctx, a) {
      await deleteEach(ctx, 'image', 'images', a.posList('image'), async (ref) => {
        const img = await findImage(ctx, ref)
        await ctx.call(ImagesClient, 'deleteImage', { id: img.id ?? '' })
      })
      return { kind: 'none' }
    },
  },
  {
    name: 'image save',
    summary: 'Save an image locally',
    output: 'none',
    positionals: [{ name: 'image', help: 'Image to save (name or ID)' }],
    options: [opt('--file', 'file', '<filename>', 'Downloaded image save filename')],
    async run(ctx, a) {
      const file = a.str('file')
      if (!file) throw new UsageError('strato image save: give the file to write with --file <filename>')
      const img = await findImage(ctx, a.pos('image'))
      await downloadTo(ctx, img.id ?? '', expandHome(file, ctx.env))
      return { kind: 'none' }
    },
  },
  {
    name: 'image add project',
    summary: 'Associate project with image',
    output: 'show',
    positionals: [
      { name: 'image', help: 'Image to share (name or ID)' },
      { name: 'project', help: 'Project to associate with image (name or ID)' },
    ],
    options: [opt('--project-domain', 'project_domain', '<project-domain>', 'Domain the project belongs to, to resolve a project name')],
    async run(ctx, a) {
      const img = await findImage(ctx, a.pos('image'))
      const p = await findProject(ctx, a.pos('project'), a.str('project_domain'))
      return { kind: 'show', data: memberFields(await ctx.call(ImagesClient, 'addImageMember', { imageId: img.id ?? '', memberId: p.id ?? '' })) }
    },
  },
  {
    name: 'image remove project',
    summary: 'Disassociate project with image',
    output: 'none',
    positionals: [
      { name: 'image', help: 'Image to unshare (name or ID)' },
      { name: 'project', help: 'Project to disassociate with image (name or ID)' },
    ],
    options: [opt('--project-domain', 'project_domain', '<project-domain>', 'Domain the project belongs to, to resolve a project name')],
    async run(ctx, a) {
      const img = await findImage(ctx, a.pos('image'))
      const p = await findProject(ctx, a.pos('project'), a.str('project_domain'))
      await ctx.call(ImagesClient, 'deleteImageMember', { imageId: img.id ?? '', memberId: p.id ?? '' })
      return { kind: 'none' }
    },
  },
  {
    name: 'image member list',
    summary: 'List projects associated with image',
    output: 'list',
    positionals: [{ name: 'image', help: 'Image (name or ID)' }],
    async run(ctx, a) {
      const img = await findImage(ctx, a.pos('image'))
      const members = (await ctx.call(ImagesClient, 'listImageMembers', { id: img.id ?? '' })).members ?? []
      return { kind: 'list', columns: ['Image ID', 'Member ID', 'Status'], rows: members.map((m) => [m.imageId ?? '', m.memberId ?? '', m.status ?? '']) }
    },
  },
]

function human(n: number): string {
  const units = ['', 'K', 'M', 'G', 'T']
  let i = 0
  let v = n
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return i === 0 ? String(n) : `${v.toFixed(1).replace(/\.0$/, '')}${units[i]}`
}
