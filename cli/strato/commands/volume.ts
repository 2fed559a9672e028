/** `strato volume …`, `volume snapshot …`, `volume type …` — openstackclient's block storage commands (Cinder v3 columns). */
import { SnapshotsClient, VolumesClient, VolumeTypesClient, type Snapshot, type Volume, type VolumeType } from '../../../proto/gen/strato/volume/v1/volume.js'
import { cinderVolumeHost } from '../../../proto/volume-host.js'
import type { Context } from '../context.js'
import { UsageError } from '../errors.js'
import { flag, opt } from '../identity.js'
import { Dict } from '../output.js'
import type { Command, OptionSpec } from '../registry.js'
import { findImage, intOpt, iso, keyValues, maybe, noSuch } from '../resources.js'
import { deleteEach } from './delete.js'

const listOpt = (f: string, dest: string, metavar: string, help: string): OptionSpec => ({ ...opt(f, dest, metavar, help), kind: 'list' })
const propertyOpt = (help: string) => listOpt('--property', 'property', '<key=value>', help)
const unsetPropertyOpt = (noun: string) => listOpt('--property', 'property', '<key>', `Remove a property from this ${noun} (repeat option to remove multiple properties)`)
const longOpt = flag('--long', 'long', 'List additional fields in output')
const allProjectsOpt = flag('--all-projects', 'all_projects', 'Include all projects (admin only)')

export async function findVolume(ctx: Context, ref: string): Promise<Volume> {
  const v = await maybe(ctx.call(VolumesClient, 'getVolume', { id: ref }))
  if (!v) throw noSuch('volume', ref)
  return v
}

async function findSnapshot(ctx: Context, ref: string): Promise<Snapshot> {
  const s = await maybe(ctx.call(SnapshotsClient, 'getSnapshot', { id: ref }))
  if (!s) throw noSuch('volume snapshot', ref)
  return s
}

async function findType(ctx: Context, ref: string): Promise<VolumeType> {
  const t = await maybe(ctx.call(VolumeTypesClient, 'getVolumeType', { id: ref }))
  if (!t) throw noSuch('volume type', ref)
  return t
}

/** "Attached to" as openstackclient prints it: `Attached to <server> on <device>` per attachment. */
const attachedTo = (v: Volume) => (v.attachments ?? []).map((a) => `Attached to ${a.serverId ?? ''} on ${a.device ?? ''} `).join('\n')

/** The Field/Value shape openstackclient prints for a volume (Cinder v3 `volume show`). */
function volumeFields(v: Volume): Record<string, unknown> {
  return {
    attachments: (v.attachments ?? []).map((a) => ({ id: a.id, attachment_id: a.attachmentId, volume_id: a.volumeId, server_id: a.serverId, host_name: a.hostName, device: a.device, attached_at: iso(a.attachedAt) })),
    availability_zone: v.availabilityZone ?? '',
    bootable: String(v.bootable ?? false),
    consistencygroup_id: null,
    created_at: iso(v.createdAt),
    description: v.description || null,
    encrypted: v.encrypted ?? false,
    id: v.id ?? '',
    migration_status: null,
    multiattach: v.multiattach ?? false,
    name: v.name ?? '',
    ...(v.host ? { 'os-vol-host-attr:host': cinderVolumeHost(v.host, v.backendName ?? '') } : {}),
    'os-vol-tenant-attr:tenant_id': v.projectId ?? '',
    properties: new Dict(v.metadata ?? {}),
    replication_status: null,
    size: v.size ?? 0,
    snapshot_id: v.snapshotId || null,
    source_volid: v.sourceVolid || null,
    status: v.status ?? '',
    ...(v.statusReason ? { status_reason: v.statusReason } : {}),
    type: v.volumeType ?? '',
    updated_at: iso(v.updatedAt),
    user_id: v.userId ?? '',
    ...(Object.keys(v.volumeImageMetadata ?? {}).length ? { volume_image_metadata: new Dict(v.volumeImageMetadata ?? {}) } : {}),
  }
}

function snapshotFields(s: Snapshot): Record<string, unknown> {
  return {
    created_at: iso(s.createdAt),
    description: s.description || null,
    id: s.id ?? '',
    name: s.name ?? '',
    'os-extended-snapshot-attributes:project_id': s.projectId ?? '',
    properties: new Dict(s.metadata ?? {}),
    size: s.size ?? 0,
    status: s.status ?? '',
    ...(s.statusReason ? { status_reason: s.statusReason } : {}),
    updated_at: iso(s.updatedAt),
    volume_id: s.volumeId ?? '',
  }
}

const typeFields = (t: VolumeType) => ({ description: t.description || null, id: t.id ?? '', is_public: t.isPublic ?? true, name: t.name ?? '', properties: new Dict(t.extraSpecs ?? {}) })

const bootableOpts = [
  flag('--bootable', 'bootable', 'Mark volume as bootable'),
  flag('--non-bootable', 'bootable', 'Mark volume as non-bootable', false),
]

const volumeCommandList: Command[] = [
  {
    name: 'volume create',
    summary: 'Create new volume',
    description: 'A blank volume needs --size; with --image, --snapshot or --source the size defaults to the source\'s.',
    output: 'show',
    positionals: [{ name: 'name', help: 'Volume name', optional: true }],
    options: [
      opt('--size', 'size', '<size>', 'Volume size in GB (required unless --snapshot or --source is given)'),
      opt('--type', 'type', '<volume-type>', 'Set the type of volume'),
      opt('--image', 'image', '<image>', 'Use <image> as source of volume (name or ID)'),
      opt('--snapshot', 'snapshot', '<snapshot>', 'Use <snapshot> as source of volume (name or ID)'),
      opt('--source', 'source', '<volume>', 'Volume to clone (name or ID)'),
      opt('--description', 'description', '<description>', 'Volume description'),
      opt('--availability-zone', 'availability_zone', '<availability-zone>', 'Create volume in <availability-zone>'),
      propertyOpt('Set a property to this volume (repeat option to set multiple properties)'),
      ...bootableOpts,
    ],
    async run(ctx, a) {
      const c = 'volume create'
      const sources = ['image', 'snapshot', 'source'].filter((k) => a.str(k) !== undefined)
      if (sources.length > 1) throw new UsageError(`strato ${c}: argument --${sources[1]}: not allowed with argument --${sources[0]}`)
      const size = intOpt(c, a, 'size', '--size')
      if (size === undefined && !sources.length) throw new UsageError(`strato ${c}: --size is required unless --image, --snapshot or --source is given`)
      const image = a.str('image') !== undefined ? await findImage(ctx, a.str('image')!) : undefined
      const snapshot = a.str('snapshot') !== undefined ? await findSnapshot(ctx, a.str('snapshot')!) : undefined
      const source = a.str('source') !== undefined ? await findVolume(ctx, a.str('source')!) : undefined
      const v = await ctx.call(VolumesClient, 'createVolume', {
        size: size ?? 0,
        name: a.positionals.name === undefined ? '' : a.pos('name'),
        description: a.str('description') ?? '',
        volumeType: a.str('type') ?? '',
        availabilityZone: a.str('availability_zone') ?? '',
        imageId: image?.id ?? '',
        snapshotId: snapshot?.id ?? '',
        sourceVolid: source?.id ?? '',
        metadata: keyValues(c, '--property', a.list('property')),
        ...(a.bool('bootable') !== undefined ? { bootable: a.bool('bootable') } : {}),
      })
      return { kind: 'show', data: volumeFields(v) }
    },
  },
  {
    name: 'volume list',
    summary: 'List volumes',
    output: 'list',
    options: [
      longOpt, allProjectsOpt,
      opt('--name', 'name', '<name>', 'Filter results by volume name'),
      opt('--status', 'status', '<status>', 'Filter results by status'),
    ],
    async run(ctx, a) {
      const vols = (await ctx.call(VolumesClient, 'listVolumes', { allProjects: a.flag('all_projects'), name: a.str('name') ?? '', status: a.str('status') ?? '', projectId: '' })).volumes ?? []
      if (a.flag('long')) {
        return {
          kind: 'list',
          columns: ['ID', 'Name', 'Status', 'Size', 'Type', 'Bootable', 'Attached to', 'Properties'],
          rows: vols.map((v) => [v.id ?? '', v.name ?? '', v.status ?? '', v.size ?? 0, v.volumeType ?? '', String(v.bootable ?? false), attachedTo(v), new Dict(v.metadata ?? {})]),
        }
      }
      return { kind: 'list', columns: ['ID', 'Name', 'Status', 'Size', 'Attached to'], rows: vols.map((v) => [v.id ?? '', v.name ?? '', v.status ?? '', v.size ?? 0, attachedTo(v)]) }
    },
  },
  {
    name: 'volume show',
    summary: 'Display volume details',
    output: 'show',
    positionals: [{ name: 'volume', help: 'Volume to display (name or ID)' }],
    async run(ctx, a) {
      return { kind: 'show', data: volumeFields(await findVolume(ctx, a.pos('volume'))) }
    },
  },
  {
    name: 'volume set',
    summary: 'Set volume properties',
    description: '--size extends the volume (it must grow); --state resets its status in the database only (admins).',
    output: 'none',
    positionals: [{ name: 'volume', help: 'Volume to modify (name or ID)' }],
    options: [
      opt('--name', 'name', '<name>', 'New volume name'),
      opt('--description', 'description', '<description>', 'New volume description'),
      opt('--size', 'size', '<size>', 'Extend volume size in GB'),
      propertyOpt('Set a property on this volume (repeat option to set multiple properties)'),
      opt('--state', 'state', '<state>', 'New volume state (admin only; only the database changes)'),
      ...bootableOpts,
    ],
    async run(ctx, a) {
      const c = 'volume set'
      const v = await findVolume(ctx, a.pos('volume'))
      const id = v.id ?? ''
      const props = keyValues(c, '--property', a.list('property'))
      const size = intOpt(c, a, 'size', '--size', 1)
      if (a.str('name') !== undefined || a.str('description') !== undefined || Object.keys(props).length || a.bool('bootable') !== undefined) {
        await ctx.call(VolumesClient, 'updateVolume', {
          id,
          ...(a.str('name') !== undefined ? { name: a.str('name') } : {}),
          ...(a.str('description') !== undefined ? { description: a.str('description') } : {}),
          ...(a.bool('bootable') !== undefined ? { bootable: a.bool('bootable') } : {}),
          setMetadata: props,
          unsetMetadata: [],
        })
      }
      if (size !== undefined) await ctx.call(VolumesClient, 'extendVolume', { id, newSize: size })
      if (a.str('state') !== undefined) await ctx.call(VolumesClient, 'resetVolumeState', { id, status: a.str('state')! })
      return { kind: 'none' }
    },
  },
  {
    name: 'volume unset',
    summary: 'Unset volume properties',
    output: 'none',
    positionals: [{ name: 'volume', help: 'Volume to modify (name or ID)' }],
    options: [unsetPropertyOpt('volume')],
    async run(ctx, a) {
      const v = await findVolume(ctx, a.pos('volume'))
      await ctx.call(VolumesClient, 'updateVolume', { id: v.id ?? '', setMetadata: {}, unsetMetadata: a.list('property') })
      return { kind: 'none' }
    },
  },
  {
    name: 'volume delete',
    summary: 'Delete volume(s)',
    output: 'none',
    positionals: [{ name: 'volume', help: 'Volume(s) to delete (name or ID)', variadic: true }],
    options: [
      flag('--force', 'force', 'Attempt forced removal of volume(s), regardless of state (admin only)'),
      flag('--purge', 'cascade', 'Remove any snapshots along with volume(s)'),
      flag('--cascade', 'cascade', 'Remove any snapshots along with volume(s) (same as --purge)'),
    ],
    async run(ctx, a) {
      await deleteEach(ctx, 'volume', 'volumes', a.posList('volume'), async (ref) => {
        const v = await findVolume(ctx, ref)
        await ctx.call(VolumesClient, 'deleteVolume', { id: v.id ?? '', cascade: a.flag('cascade'), force: a.flag('force') })
      })
      return { kind: 'none' }
    },
  },
]

const snapshotCommands: Command[] = [
  {
    name: 'volume snapshot create',
    summary: 'Create new volume snapshot',
    output: 'show',
    positionals: [{ name: 'snapshot-name', help: 'Name of the new snapshot' }],
    options: [
      opt('--volume', 'volume', '<volume>', 'Volume to snapshot (name or ID) (default is <snapshot-name>)'),
      opt('--description', 'description', '<description>', 'Description of the snapshot'),
      flag('--force', 'force', 'Create a snapshot attached to an instance'),
      propertyOpt('Set a property to this snapshot (repeat option to set multiple properties)'),
    ],
    async run(ctx, a) {
      const name = a.pos('snapshot-name')
      const v = await findVolume(ctx, a.str('volume') ?? name)
      const s = await ctx.call(SnapshotsClient, 'createSnapshot', {
        volumeId: v.id ?? '', name, description: a.str('description') ?? '', force: a.flag('force'), metadata: keyValues('volume snapshot create', '--property', a.list('property')),
      })
      return { kind: 'show', data: snapshotFields(s) }
    },
  },
  {
    name: 'volume snapshot list',
    summary: 'List volume snapshots',
    output: 'list',
    options: [
      longOpt, allProjectsOpt,
      opt('--volume', 'volume', '<volume>', 'Filters results by a volume (name or ID)'),
      opt('--name', 'name', '<name>', 'Filters results by a name'),
      opt('--status', 'status', '<status>', 'Filters results by a status'),
    ],
    async run(ctx, a) {
      const volumeId = a.str('volume') !== undefined ? (await findVolume(ctx, a.str('volume')!)).id ?? '' : ''
      const snaps = (await ctx.call(SnapshotsClient, 'listSnapshots', { allProjects: a.flag('all_projects'), volumeId, status: a.str('status') ?? '', name: a.str('name') ?? '' })).snapshots ?? []
      const row = (s: Snapshot) => [s.id ?? '', s.name ?? '', s.description ?? '', s.status ?? '', s.size ?? 0]
      if (a.flag('long')) {
        return { kind: 'list', columns: ['ID', 'Name', 'Description', 'Status', 'Size', 'Created At', 'Volume', 'Properties'], rows: snaps.map((s) => [...row(s), iso(s.createdAt), s.volumeId ?? '', new Dict(s.metadata ?? {})]) }
      }
      return { kind: 'list', columns: ['ID', 'Name', 'Description', 'Status', 'Size'], rows: snaps.map(row) }
    },
  },
  {
    name: 'volume snapshot show',
    summary: 'Display volume snapshot details',
    output: 'show',
    positionals: [{ name: 'snapshot', help: 'Snapshot to display (name or ID)' }],
    async run(ctx, a) {
      return { kind: 'show', data: snapshotFields(await findSnapshot(ctx, a.pos('snapshot'))) }
    },
  },
  {
    name: 'volume snapshot set',
    summary: 'Set volume snapshot properties',
    output: 'none',
    positionals: [{ name: 'snapshot', help: 'Snapshot to modify (name or ID)' }],
    options: [
      opt('--name', 'name', '<name>', 'New snapshot name'),
      opt('--description', 'description', '<description>', 'New snapshot description'),
      propertyOpt('Property to add/change for this snapshot (repeat option to set multiple properties)'),
    ],
    async run(ctx, a) {
      const s = await findSnapshot(ctx, a.pos('snapshot'))
      await ctx.call(SnapshotsClient, 'updateSnapshot', {
        id: s.id ?? '',
        ...(a.str('name') !== undefined ? { name: a.str('name') } : {}),
        ...(a.str('description') !== undefined ? { description: a.str('description') } : {}),
        setMetadata: keyValues('volume snapshot set', '--property', a.list('property')),
        unsetMetadata: [],
      })
      return { kind: 'none' }
    },
  },
  {
    name: 'volume snapshot delete',
    summary: 'Delete volume snapshot(s)',
    output: 'none',
    positionals: [{ name: 'snapshot', help: 'Snapshot(s) to delete (name or ID)', variadic: true }],
    options: [flag('--force', 'force', 'Attempt forced removal of snapshot(s), regardless of state (admin only)')],
    async run(ctx, a) {
      await deleteEach(ctx, 'snapshot', 'snapshots', a.posList('snapshot'), async (ref) => {
        const s = await findSnapshot(ctx, ref)
        await ctx.call(SnapshotsClient, 'deleteSnapshot', { id: s.id ?? '', force: a.flag('force') })
      })
      return { kind: 'none' }
    },
  },
]

const typeCommands: Command[] = [
  {
    name: 'volume type create',
    summary: 'Create new volume type',
    output: 'show',
    positionals: [{ name: 'name', help: 'Volume type name' }],
    options: [
      opt('--description', 'description', '<description>', 'Volume type description'),
      flag('--public', 'is_public', 'Volume type is accessible to the public (default)'),
      flag('--private', 'is_public', 'Volume type is not accessible to the public', false),
      propertyOpt('Set a property on this volume type (repeat option to set multiple properties)'),
    ],
    async run(ctx, a) {
      const t = await ctx.call(VolumeTypesClient, 'createVolumeType', {
        name: a.pos('name'), description: a.str('description') ?? '', isPublic: a.bool('is_public') ?? true, extraSpecs: keyValues('volume type create', '--property', a.list('property')),
      })
      return { kind: 'show', data: typeFields(t) }
    },
  },
  {
    name: 'volume type list',
    summary: 'List volume types',
    output: 'list',
    options: [
      longOpt,
      flag('--public', 'which', 'List only public types'),
      flag('--private', 'which', 'List only private types (admin only)', false),
    ],
    async run(ctx, a) {
      const which = a.bool('which') === undefined ? 'all' : a.bool('which') ? 'public' : 'private'
      const types = (await ctx.call(VolumeTypesClient, 'listVolumeTypes', { isPublic: which })).volumeTypes ?? []
      if (a.flag('long')) {
        return { kind: 'list', columns: ['ID', 'Name', 'Is Public', 'Description', 'Properties'], rows: types.map((t) => [t.id ?? '', t.name ?? '', t.isPublic ?? true, t.description ?? '', new Dict(t.extraSpecs ?? {})]) }
      }
      return { kind: 'list', columns: ['ID', 'Name', 'Is Public'], rows: types.map((t) => [t.id ?? '', t.name ?? '', t.isPublic ?? true]) }
    },
  },
  {
    name: 'volume type show',
    summary: 'Display volume type details',
    output: 'show',
    positionals: [{ name: 'volume-type', help: 'Volume type to display (name or ID)' }],
    async run(ctx, a) {
      return { kind: 'show', data: typeFields(await findType(ctx, a.pos('volume-type'))) }
    },
  },
  {
    name: 'volume type set',
    summary: 'Set volume type properties',
    output: 'none',
    positionals: [{ name: 'volume-type', help: 'Volume type to modify (name or ID)' }],
    options: [
      opt('--name', 'name', '<name>', 'Set volume type name'),
      opt('--description', 'description', '<description>', 'Set volume type description'),
      propertyOpt('Set a property on this volume type (repeat option to set multiple properties)'),
      flag('--public', 'is_public', 'Volume type is accessible to the public'),
      flag('--private', 'is_public', 'Volume type is not accessible to the public', false),
    ],
    async run(ctx, a) {
      const t = await findType(ctx, a.pos('volume-type'))
      await ctx.call(VolumeTypesClient, 'updateVolumeType', {
        id: t.id ?? '',
        ...(a.str('name') !== undefined ? { name: a.str('name') } : {}),
        ...(a.str('description') !== undefined ? { description: a.str('description') } : {}),
        ...(a.bool('is_public') !== undefined ? { isPublic: a.bool('is_public') as boolean } : {}),
        setExtraSpecs: keyValues('volume type set', '--property', a.list('property')),
        unsetExtraSpecs: [],
      })
      return { kind: 'none' }
    },
  },
  {
    name: 'volume type unset',
    summary: 'Unset volume type properties',
    output: 'none',
    positionals: [{ name: 'volume-type', help: 'Volume type to modify (name or ID)' }],
    options: [unsetPropertyOpt('volume type')],
    async run(ctx, a) {
      const t = await findType(ctx, a.pos('volume-type'))
      await ctx.call(VolumeTypesClient, 'updateVolumeType', { id: t.id ?? '', setExtraSpecs: {}, unsetExtraSpecs: a.list('property') })
      return { kind: 'none' }
    },
  },
  {
    name: 'volume type delete',
    summary: 'Delete volume type(s)',
    output: 'none',
    positionals: [{ name: 'volume-type', help: 'Volume type(s) to delete (name or ID)', variadic: true }],
    async run(ctx, a) {
      await deleteEach(ctx, 'volume type', 'volume types', a.posList('volume-type'), async (ref) => {
        const t = await findType(ctx, ref)
        await ctx.call(VolumeTypesClient, 'deleteVolumeType', { id: t.id ?? '' })
      })
      return { kind: 'none' }
    },
  },
]

export const volumeCommands: Command[] = [...volumeCommandList, ...snapshotCommands, ...typeCommands]
