/** `strato server …`, `strato console log show` — openstackclient's compute server commands. */
import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { ServersClient, type BlockDeviceMapping, type NetworkRequest, type Server } from '../../../proto/gen/strato/compute/v1/servers.js'
import { FloatingIpsClient, PortsClient } from '../../../proto/gen/strato/network/v1/network.js'
import { NotFound } from '../../../proto/errors.js'
import { powerStateLabel } from '../../../proto/power-state.js'
import type { Context } from '../context.js'
import { CliError, UsageError } from '../errors.js'
import { flag, opt } from '../identity.js'
import { Dict, DictList } from '../output.js'
import type { Args, Command } from '../registry.js'
import {
  expandHome, findFlavor, findFloatingIp, findImage, findNetwork, findPort, findServer, intOpt, iso, keyValues, maybe, multiKeyValue, novaTime,
} from '../resources.js'
import { deleteEach } from './delete.js'
import { findVolume } from './volume.js'
import { listOpt, projectFilterOpts, projectIdOf } from './network.js'

/** openstackclient's PowerStateColumn. */
const powerState = powerStateLabel

/** `provider=192.168.201.203` (several networks: `a=…; b=…`), as the API's `addresses` dict. */
function addressesOf(s: Server): DictList {
  const byNet: Record<string, string[]> = {}
  for (const a of s.addresses ?? []) (byNet[a.networkName || a.networkId || ''] ??= []).push(a.addr ?? '')
  return new DictList(byNet)
}

/** Nova's hostId: sha224(project_id + host), known only when the host is shown. */
const hostIdOf = (s: Server) => (s.host ? createHash('sha224').update((s.projectId ?? '') + s.host).digest('hex') : '')

const flavorText = (s: Server) => `${s.flavor?.name ?? ''} (${s.flavor?.id ?? ''})`
// openstackclient's words for a server that boots from a volume (Nova's image "").
const imageText = (s: Server) => (s.imageName ? `${s.imageName} (${s.imageId ?? ''})` : (s.imageId || 'N/A (booted from volume)'))

/** The Field/Value shape openstackclient prints for `server show` and `server create` (adminPass left out). */
export const serverFields = (s: Server) => ({
  'OS-DCF:diskConfig': 'MANUAL',
  'OS-EXT-AZ:availability_zone': s.availabilityZone ?? '',
  'OS-EXT-SRV-ATTR:host': s.host || null,
  'OS-EXT-SRV-ATTR:hypervisor_hostname': s.hypervisorHostname || null,
  'OS-EXT-SRV-ATTR:instance_name': s.instanceName ?? '',
  'OS-EXT-STS:power_state': powerState(s.powerState),
  'OS-EXT-STS:task_state': s.taskState || null,
  'OS-EXT-STS:vm_state': s.vmState ?? '',
  'OS-SRV-USG:launched_at': novaTime(s.launchedAt),
  'OS-SRV-USG:terminated_at': novaTime(s.terminatedAt),
  accessIPv4: '',
  accessIPv6: '',
  addresses: addressesOf(s),
  config_drive: s.configDrive ?? '',
  created: iso(s.createdAt),
  description: s.description || null,
  ...(s.fault?.message ? { fault: new Dict({ code: s.fault.code ?? '', created: iso(s.fault.createdAt), message: s.fault.message }) } : {}),
  flavor: flavorText(s),
  hostId: hostIdOf(s),
  id: s.id ?? '',
  image: imageText(s),
  key_name: s.keyName || null,
  name: s.name ?? '',
  progress: 0,
  project_id: s.projectId ?? '',
  properties: new Dict(s.metadata ?? {}),
  security_groups: (s.securityGroups ?? []).map((g) => `name='${g}'`).join('\n'),
  status: s.status ?? '',
  updated: iso(s.updatedAt),
  user_id: s.userId ?? '',
  // openstackclient's ListDictColumn: one id='…' per volume.
  volumes_attached: (s.volumesAttached ?? []).map((id) => `id='${id}'`).join('\n'),
})

/**
 * Polls a server until `done` holds, as openstackclient's `--wait` does (as
 * long as it takes): quickly at first, then every 2 s. A server left in
 * ERROR with no task in progress ends the wait with its fault.
 */
async function waitFor(ctx: Context, s: Server, doing: string, done: (now: Server | undefined) => boolean): Promise<Server | undefined> {
  for (let n = 0; ; n++) {
    const now = await maybe(ctx.call(ServersClient, 'getServer', { id: s.id ?? '' }))
    if (done(now)) return now
    if (!now) throw new CliError(`Error ${doing} server ${s.name} (${s.id}): it is gone`)
    if (now.vmState === 'error' && !now.taskState) throw new CliError(`Error ${doing} server ${s.name} (${s.id}): ${now.fault?.message || 'it is in ERROR'}`)
    await sleep(Math.min(2000, 100 * 2 ** n))
  }
}

const waitActive = async (ctx: Context, s: Server, doing: string): Promise<Server> => (await waitFor(ctx, s, doing, (now) => now?.status === 'ACTIVE'))!

/**
 * `--nic`, `--network` and `--port` → the request's NICs (in that order), or
 * network_mode for `--nic none|auto`. Networks and ports are names or IDs.
 */
async function nicsOf(ctx: Context, c: string, a: Args): Promise<{ networks: NetworkRequest[]; networkMode: string }> {
  const nics = a.list('nic')
  const mode = nics.find((n) => n === 'none' || n === 'auto')
  if (mode) {
    if (nics.length > 1 || a.list('network').length || a.list('port').length) throw new UsageError(`strato ${c}: --nic ${mode} cannot be used with other --nic, --network or --port options`)
    return { networks: [], networkMode: mode }
  }
  const networks: NetworkRequest[] = []
  for (const v of nics) {
    const kv = multiKeyValue(c, '--nic', v, [], ['net-id', 'port-id', 'v4-fixed-ip', 'v6-fixed-ip'])
    const net = kv['net-id']
    const port = kv['port-id']
    if (!net === !port) throw new UsageError(`strato ${c}: --nic '${v}': give net-id=<network> or port-id=<port> (exactly one)`)
    if (kv['v4-fixed-ip'] !== undefined && kv['v6-fixed-ip'] !== undefined) throw new UsageError(`strato ${c}: --nic '${v}': give v4-fixed-ip or v6-fixed-ip, not both`)
    const fixedIp = kv['v4-fixed-ip'] ?? kv['v6-fixed-ip'] ?? ''
    if (port && fixedIp) throw new UsageError(`strato ${c}: --nic '${v}': a port has its addresses already; v4-fixed-ip and v6-fixed-ip go with net-id`)
    networks.push(port ? { port: (await findPort(ctx, port)).id ?? '' } : { uuid: (await findNetwork(ctx, net!)).id ?? '', fixedIp })
  }
  for (const n of a.list('network')) networks.push({ uuid: (await findNetwork(ctx, n)).id ?? '' })
  for (const p of a.list('port')) networks.push({ port: (await findPort(ctx, p)).id ?? '' })
  return { networks, networkMode: '' }
}

/**
 * `--config-drive` as openstackclient reads it: true/1 and false/0/no; any
 * other value would name a config-drive volume there, which Strato has not.
 */
function configDriveOf(c: string, v: string | undefined): boolean | undefined {
  if (v === undefined) return undefined
  const s = v.toLowerCase()
  if (s === 'true' || s === '1') return true
  if (s === 'false' || s === '0' || s === 'no' || s === '') return false
  throw new UsageError(`strato ${c}: --config-drive '${v}': use True or False (config drives on volumes are not supported)`)
}

/** `--user-data FILE` → base64, as the API takes it. */
function userDataOf(ctx: Context, file: string | undefined): string {
  if (file === undefined) return ''
  try {
    return readFileSync(expandHome(file, ctx.env)).toString('base64')
  } catch (err) {
    throw new CliError(`Can't open '${file}': ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err })
  }
}

/** `server start` and `server stop`: each server named in turn, stopping at the first failure (as openstackclient does). */
const powerCommand = (verb: 'start' | 'stop', method: 'startServer' | 'stopServer'): Command => ({
  name: `server ${verb}`,
  summary: `${verb === 'start' ? 'Start' : 'Stop'} server(s)`,
  output: 'none',
  positionals: [{ name: 'server', help: `Server(s) to ${verb} (name or ID)`, variadic: true }],
  async run(ctx, a) {
    for (const ref of a.posList('server')) await ctx.call(ServersClient, method, { id: (await findServer(ctx, ref)).id ?? '' })
    return { kind: 'none' }
  },
})

/** The keys of `--block-device` (openstackclient 6.0's; those Strato cannot honour are refused by the API, by name). */
const BLOCK_DEVICE_KEYS = ['uuid', 'source_type', 'destination_type', 'disk_bus', 'device_type', 'device_name', 'volume_size', 'guest_format', 'boot_index', 'delete_on_termination', 'tag', 'volume_type']

/**
 * The boot source and block devices of `server create`, as openstackclient
 * 6.0 builds them: `--volume`/`--snapshot` boot from a volume (a mapping of
 * boot index 0), `--boot-from-volume SIZE` with `--image` makes one from the
 * image, `--block-device` adds mappings (CSV or a JSON file), and the
 * deprecated `--block-device-mapping dev=id:type:size:delete`.
 */
async function bootOf(ctx: Context, c: string, a: Args): Promise<{ imageRef: string; blockDeviceMappings: BlockDeviceMapping[] }> {
  const sources = (['image', 'volume', 'snapshot'] as const).filter((k) => a.str(k))
  if (sources.length > 1) throw new UsageError(`strato ${c}: argument --${sources[1]}: not allowed with argument --${sources[0]}`)
  const mappings: BlockDeviceMapping[] = []
  const size = intOpt(c, a, 'boot_from_volume', '--boot-from-volume', 1)
  let imageRef = ''
  const imageArg = a.str('image')
  if (imageArg) {
    const image = await findImage(ctx, imageArg)
    if (size === undefined) imageRef = image.id ?? ''
    else mappings.push({ sourceType: 'image', destinationType: 'volume', uuid: image.id ?? '', bootIndex: 0, volumeSize: size, deviceName: '', volumeType: '' })
  } else if (size !== undefined) {
    throw new UsageError(`strato ${c}: --boot-from-volume is only allowed with --image`)
  }
  const volume = a.str('volume')
  if (volume) mappings.push({ sourceType: 'volume', destinationType: 'volume', uuid: (await findVolume(ctx, volume)).id ?? '', bootIndex: 0, volumeSize: 0, deviceName: '', volumeType: '' })
  const snapshot = a.str('snapshot')
  if (snapshot) mappings.push({ sourceType: 'snapshot', destinationType: 'volume', uuid: snapshot, bootIndex: 0, volumeSize: 0, deviceName: '', volumeType: '' })
  for (const v of a.list('block_device_mapping')) {
    // <dev-name>=<id>:<type>:<size(GB)>:<delete-on-terminate>
    const eq = v.indexOf('=')
    const [id = '', type = 'volume', gb = '', dot = ''] = eq > 0 ? v.slice(eq + 1).split(':') : []
    if (eq <= 0 || !id) throw new UsageError(`strato ${c}: --block-device-mapping '${v}': expected <dev-name>=<id>:<type>:<size(GB)>:<delete-on-terminate>`)
    if (!['volume', 'snapshot', 'image'].includes(type)) throw new UsageError(`strato ${c}: --block-device-mapping '${v}': type must be volume, snapshot or image, got '${type}'`)
    if (gb && !/^\d+$/.test(gb)) throw new UsageError(`strato ${c}: --block-device-mapping '${v}': size must be a whole number of GB, got '${gb}'`)
    const uuid = type === 'volume' ? (await findVolume(ctx, id)).id ?? '' : type === 'image' ? (await findImage(ctx, id)).id ?? '' : id
    mappings.push({
      sourceType: type, destinationType: 'volume', uuid, volumeSize: gb ? Number(gb) : 0, deviceName: v.slice(0, eq), volumeType: '',
      ...(dot ? { deleteOnTermination: boolText(c, '--block-device-mapping', dot) } : {}),
    })
  }
  for (const v of a.list('block_device')) {
    let fields: Record<string, unknown>
    if (existsSync(expandHome(v, ctx.env))) {
      try {
        fields = JSON.parse(readFileSync(expandHome(v, ctx.env), 'utf8')) as Record<string, unknown>
      } catch (err) {
        throw new UsageError(`strato ${c}: --block-device ${v}: not a JSON object: ${(err as Error).message}`)
      }
      const extra = Object.keys(fields).find((k) => !BLOCK_DEVICE_KEYS.includes(k))
      if (extra) throw new UsageError(`strato ${c}: --block-device ${v}: unknown key '${extra}'`)
    } else {
      fields = multiKeyValue(c, '--block-device', v, [], BLOCK_DEVICE_KEYS)
    }
    const text = (k: string) => (fields[k] === undefined || fields[k] === null ? undefined : String(fields[k]))
    const int = (k: string) => {
      const x = text(k)
      if (x === undefined || x === '') return undefined
      if (!/^-?\d+$/.test(x)) throw new UsageError(`strato ${c}: --block-device '${v}': ${k} must be an integer, got '${x}'`)
      return Number(x)
    }
    for (const k of ['tag', 'guest_format']) if (text(k)) throw new UsageError(`strato ${c}: --block-device '${v}': Strato does not support ${k}`)
    if (text('disk_bus') && text('disk_bus') !== 'virtio') throw new UsageError(`strato ${c}: --block-device '${v}': disk_bus must be virtio (Strato's disks are virtio), got '${text('disk_bus')}'`)
    if (text('device_type') && text('device_type') !== 'disk') throw new UsageError(`strato ${c}: --block-device '${v}': device_type must be disk, got '${text('device_type')}'`)
    const bootIndex = int('boot_index')
    const dot = text('delete_on_termination')
    mappings.push({
      sourceType: text('source_type') ?? '', destinationType: text('destination_type') ?? '', uuid: text('uuid') ?? '',
      volumeSize: int('volume_size') ?? 0, deviceName: text('device_name') ?? '', volumeType: text('volume_type') ?? '',
      ...(bootIndex !== undefined ? { bootIndex } : {}),
      ...(dot ? { deleteOnTermination: boolText(c, '--block-device', dot) } : {}),
    })
  }
  if (!imageRef && !mappings.some((m) => m.bootIndex === 0)) {
    throw new UsageError(`strato ${c}: an image (--image) or bootable volume (--volume, --snapshot, --block-device with boot_index=0) is required`)
  }
  return { imageRef, blockDeviceMappings: mappings }
}

function boolText(c: string, flag: string, v: string): boolean {
  const t = v.toLowerCase()
  if (!['true', 'false', '1', '0', 'yes', 'no'].includes(t)) throw new UsageError(`strato ${c}: ${flag}: delete_on_termination must be true or false, got '${v}'`)
  return ['true', '1', 'yes'].includes(t)
}

export const serverCommands: Command[] = [
  {
    name: 'server create',
    summary: 'Create a new server',
    description:
      "NICs are made in this order: each --nic, then each --network, then each --port. With none of them, the server gets a port on the only network the project can use ('--nic auto'); '--nic none' makes no NIC. " +
      'With --wait, the command returns once the server is ACTIVE, and fails with the fault when it ends in ERROR.',
    output: 'show',
    positionals: [{ name: 'server-name', help: 'New server name' }],
    options: [
      opt('--flavor', 'flavor', '<flavor>', 'Create server with this flavor (name or ID)'),
      opt('--image', 'image', '<image>', 'Create server boot disk from this image (name or ID)'),
      opt('--volume', 'volume', '<volume>', 'Create server using this volume as the boot disk (name or ID); it must be available and bootable, and stays when the server is deleted'),
      opt('--snapshot', 'snapshot', '<snapshot>', 'Create server using a new volume made from this volume snapshot as the boot disk (ID); deleted with the server'),
      opt('--boot-from-volume', 'boot_from_volume', '<volume-size>',
        'With --image: make a volume of this size (GiB) from the image and boot from it (boot index 0, vda). Strato deletes it with the server, as every volume a server makes; keep it with --block-device …,delete_on_termination=false'),
      listOpt('--block-device-mapping', 'block_device_mapping', '<dev-name=mapping>',
        '**Deprecated** Create a block device on the server: <dev-name>=<id>:<type>:<size(GB)>:<delete-on-terminate> (type volume, snapshot or image; default volume). Replaced by --block-device'),
      listOpt('--block-device', 'block_device', '<key=value,…>|<file.json>',
        'Create a block device on the server: uuid=, source_type= (image, snapshot, volume, blank), destination_type= (volume; local only for the image root), device_name=, volume_size= (GiB), boot_index= (0 to boot from it), delete_on_termination=, volume_type=, disk_bus=virtio, device_type=disk; or a JSON file with those keys. Repeat option to add more'),
      listOpt('--nic', 'nic', '<net-id=net-uuid,v4-fixed-ip=ip-addr,v6-fixed-ip=ip-addr,port-id=port-uuid,auto,none>',
        "Create a NIC on the server: net-id=<network> (name or ID) with an optional v4-fixed-ip or v6-fixed-ip, or port-id=<port> (name or ID); 'auto' or 'none' alone. Repeat option to create multiple NICs"),
      listOpt('--network', 'network', '<network>', 'Create a NIC on the server and connect it to network (name or ID); the same as --nic net-id=<network>. Repeat option to create multiple NICs'),
      listOpt('--port', 'port', '<port>', 'Create a NIC on the server and connect it to port (name or ID); the same as --nic port-id=<port>. Repeat option to create multiple NICs'),
      listOpt('--security-group', 'security_group', '<security-group>', "Security group to assign to this server (name or ID) (repeat option to set multiple groups; default: the project's 'default')"),
      opt('--key-name', 'key_name', '<key-name>', 'Keypair of the server (its public key goes on the config drive)'),
      opt('--availability-zone', 'availability_zone', '<zone-name>', "Select an availability zone for the server; cloud admins may pick the host with '<zone-name>:<host-name>'"),
      opt('--host', 'host', '<host>', 'Requested host to create servers (admin only)'),
      opt('--config-drive', 'config_drive', '<config-drive>|True', "Give the server a config drive ('True', the default) or none ('False': its guest reads the metadata service at 169.254.169.254)"),
      opt('--user-data', 'user_data', '<user-data>', 'User data file for the server (sent base64-encoded, at most 65535 bytes once encoded (about 48 KiB of file); on the config drive as openstack/latest/user_data)'),
      listOpt('--property', 'property', '<key=value>', 'Set a property on this server (repeat option to set multiple values)'),
      opt('--description', 'description', '<description>', 'Set description for the server'),
      listOpt('--hint', 'hint', '<key=value>', 'Hints for the scheduler: group=<server group> (name or ID) is the one Strato knows'),
      opt('--min', 'min', '<count>', 'Minimum number of servers to launch (default=1)'),
      opt('--max', 'max', '<count>', 'Maximum number of servers to launch (default=1)'),
      flag('--wait', 'wait', 'Wait for build to complete'),
    ],
    async run(ctx, a) {
      const c = 'server create'
      const flavorRef = a.str('flavor')
      if (!flavorRef) throw new UsageError(`strato ${c}: give the flavor with --flavor <flavor> (see 'strato flavor list')`)
      const min = intOpt(c, a, 'min', '--min', 1)
      const max = intOpt(c, a, 'max', '--max', 1)
      if (min !== undefined && max !== undefined && min > max) throw new UsageError(`strato ${c}: min instances should be <= max instances`)
      const metadata = keyValues(c, '--property', a.list('property'))
      const hints = keyValues(c, '--hint', a.list('hint'))
      for (const k of Object.keys(hints)) if (k !== 'group') throw new UsageError(`strato ${c}: --hint '${k}' is not a hint Strato knows; use --hint group=<server group>`)
      const userData = userDataOf(ctx, a.str('user_data'))
      const configDrive = configDriveOf(c, a.str('config_drive'))
      const host = a.str('host')
      const zone = host ? `${a.str('availability_zone') ?? ''}:${host}` : (a.str('availability_zone') ?? '')
      const flavor = await findFlavor(ctx, flavorRef)
      const boot = await bootOf(ctx, c, a)
      const r = await ctx.call(ServersClient, 'createServer', {
        name: a.pos('server-name'),
        flavorRef: flavor.id ?? '',
        ...boot,
        ...(await nicsOf(ctx, c, a)),
        securityGroups: a.list('security_group'),
        keyName: a.str('key_name') ?? '',
        availabilityZone: zone,
        minCount: min ?? max ?? 1,
        maxCount: max ?? min ?? 1,
        userData,
        metadata,
        description: a.str('description') ?? '',
        group: hints.group ?? '',
        ...(configDrive === undefined ? {} : { configDrive }),
      })
      const servers = r.servers ?? []
      if (!a.flag('wait')) return { kind: 'show', data: serverFields(servers[0]!) }
      const ready: Server[] = []
      for (const s of servers) ready.push(await waitActive(ctx, s, 'creating'))
      return { kind: 'show', data: serverFields(ready[0]!) }
    },
  },
  {
    name: 'server list',
    summary: 'List servers',
    output: 'list',
    options: [
      opt('--name', 'name', '<name-regex>', 'Regular expression to match names'),
      opt('--status', 'status', '<status>', 'Search by server status (ACTIVE, BUILD, SHUTOFF, REBOOT, HARD_REBOOT, ERROR, DELETED)'),
      opt('--flavor', 'flavor', '<flavor>', 'Search by flavor (name or ID)'),
      opt('--image', 'image', '<image>', 'Search by image (name or ID)'),
      opt('--host', 'host', '<hostname>', 'Search by hostname (admin only)'),
      opt('--availability-zone', 'availability_zone', '<availability-zone>', 'Search by availability zone'),
      flag('--all-projects', 'all_projects', 'Include all projects (admin only)'),
      ...projectFilterOpts('Search by project (admin only) (name or ID)'),
      flag('--deleted', 'deleted', 'Only display deleted servers (admin only)'),
      flag('--long', 'long', 'List additional fields in output'),
      { ...flag('--no-name-lookup', 'no_name_lookup', 'Show the IDs of images and flavors, not their names'), flags: ['--no-name-lookup', '-n'] },
      opt('--marker', 'marker', '<server>', 'The last server of the previous page; display the servers after it (name or ID)'),
      opt('--limit', 'limit', '<num-servers>', "Maximum number of servers to display (-1: no limit)"),
    ],
    async run(ctx, a) {
      const c = 'server list'
      const flavor = a.str('flavor')
      const image = a.str('image')
      const marker = a.str('marker')
      const servers = (await ctx.call(ServersClient, 'listServers', {
        name: a.str('name') ?? '',
        status: a.str('status') ?? '',
        flavor: flavor ? (await findFlavor(ctx, flavor)).id ?? '' : '',
        image: image ? (await findImage(ctx, image)).id ?? '' : '',
        host: a.str('host') ?? '',
        availabilityZone: a.str('availability_zone') ?? '',
        allProjects: a.flag('all_projects'),
        projectId: await projectIdOf(ctx, a),
        deleted: a.flag('deleted'),
        limit: Math.max(0, intOpt(c, a, 'limit', '--limit', -1) ?? 0),
        marker: marker ? (await findServer(ctx, marker)).id ?? '' : '',
      })).servers ?? []
      const ids = a.flag('no_name_lookup')
      const imageCol = (s: Server) => (ids ? s.imageId : s.imageName || s.imageId) ?? ''
      const flavorCol = (s: Server) => (ids ? s.flavor?.id : s.flavor?.name) ?? ''
      if (a.flag('long')) {
        return {
          kind: 'list',
          columns: ['ID', 'Name', 'Status', 'Task State', 'Power State', 'Networks', 'Image Name', 'Image ID', 'Flavor Name', 'Flavor ID', 'Availability Zone', 'Host', 'Properties'],
          rows: servers.map((s) => [
            s.id ?? '', s.name ?? '', s.status ?? '', s.taskState || null, powerState(s.powerState), addressesOf(s), s.imageName ?? '', s.imageId ?? '',
            s.flavor?.name ?? '', s.flavor?.id ?? '', s.availabilityZone ?? '', s.host ?? '', new Dict(s.metadata ?? {}),
          ]),
        }
      }
      return { kind: 'list', columns: ['ID', 'Name', 'Status', 'Networks', 'Image', 'Flavor'], rows: servers.map((s) => [s.id ?? '', s.name ?? '', s.status ?? '', addressesOf(s), imageCol(s), flavorCol(s)]) }
    },
  },
  {
    name: 'server show',
    summary: 'Show server details',
    output: 'show',
    positionals: [{ name: 'server', help: 'Server to show (name or ID)' }],
    async run(ctx, a) {
      return { kind: 'show', data: serverFields(await findServer(ctx, a.pos('server'))) }
    },
  },
  {
    name: 'server delete',
    summary: 'Delete server(s)',
    output: 'none',
    positionals: [{ name: 'server', help: 'Server(s) to delete (name or ID)', variadic: true }],
    options: [flag('--wait', 'wait', 'Wait for delete to complete')],
    async run(ctx, a) {
      await deleteEach(ctx, 'server', 'servers', a.posList('server'), async (ref) => {
        const s = await findServer(ctx, ref)
        await ctx.call(ServersClient, 'deleteServer', { id: s.id ?? '' })
        if (a.flag('wait')) await waitFor(ctx, s, 'deleting', (now) => !now || now.status === 'DELETED')
      })
      return { kind: 'none' }
    },
  },
  powerCommand('start', 'startServer'),
  powerCommand('stop', 'stopServer'),
  {
    name: 'server reboot',
    summary: 'Perform a hard or soft server reboot',
    description: 'A soft reboot asks the guest to restart and needs an ACTIVE server; a hard reboot power-cycles it, and also works on SHUTOFF and ERROR servers.',
    output: 'none',
    positionals: [{ name: 'server', help: 'Server (name or ID)' }],
    options: [
      flag('--hard', 'type', 'Perform a hard reboot', 'HARD'),
      flag('--soft', 'type', 'Perform a soft reboot (default)', 'SOFT'),
      flag('--wait', 'wait', 'Wait for reboot to complete'),
    ],
    async run(ctx, a) {
      const s = await findServer(ctx, a.pos('server'))
      await ctx.call(ServersClient, 'rebootServer', { id: s.id ?? '', type: a.str('type') ?? 'SOFT' })
      if (a.flag('wait')) await waitActive(ctx, s, 'rebooting')
      return { kind: 'none' }
    },
  },
  {
    name: 'console log show',
    summary: "Show server's console output",
    output: 'none',
    positionals: [{ name: 'server', help: 'Server to show console log (name or ID)' }],
    options: [opt('--lines', 'lines', '<num-lines>', 'Number of lines to display from the end of the log (default=all)')],
    async run(ctx, a) {
      const lines = intOpt('console log show', a, 'lines', '--lines')
      const s = await findServer(ctx, a.pos('server'))
      const out = await ctx.call(ServersClient, 'getConsoleOutput', { id: s.id ?? '', length: lines ?? 0 })
      ctx.io.stdout(out.output ?? '')
      return { kind: 'none' }
    },
  },
  {
    name: 'server add floating ip',
    summary: 'Add floating IP address to server',
    output: 'none',
    positionals: [
      { name: 'server', help: 'Server to receive the floating IP address (name or ID)' },
      { name: 'ip-address', help: 'Floating IP address to assign to the first available server port (IP only)' },
    ],
    options: [opt('--fixed-ip-address', 'fixed_ip_address', '<ip-address>', 'Fixed IP address to associate with this floating IP address. The first server port containing the fixed IP address will be used')],
    async run(ctx, a) {
      const fip = await findFloatingIp(ctx, a.pos('ip-address'))
      const s = await findServer(ctx, a.pos('server'))
      const ports = (await ctx.call(PortsClient, 'listPorts', { deviceId: s.id ?? '' })).ports ?? []
      if (ports.length === 0) throw new CliError('No attached ports found to associate floating IP with')
      const fixed = a.str('fixed_ip_address')
      if (fixed) {
        const port = ports.find((p) => (p.fixedIps ?? []).some((f) => f.ipAddress === fixed))
        if (!port) throw new CliError(`No port found for fixed IP address ${fixed}`)
        await ctx.call(FloatingIpsClient, 'updateFloatingIp', { id: fip.id ?? '', portId: port.id ?? '', fixedIpAddress: fixed })
        return { kind: 'none' }
      }
      // As openstackclient: a port whose subnet has no router to the floating IP's network (404) is skipped for the next.
      let last: unknown
      for (const port of ports) {
        try {
          await ctx.call(FloatingIpsClient, 'updateFloatingIp', { id: fip.id ?? '', portId: port.id ?? '' })
          return { kind: 'none' }
        } catch (err) {
          if (!(err instanceof NotFound)) throw err
          last = err
        }
      }
      throw last
    },
  },
  {
    name: 'server remove floating ip',
    summary: 'Remove floating IP address from server',
    output: 'none',
    positionals: [
      { name: 'server', help: 'Server to remove the floating IP address from (name or ID)' },
      { name: 'ip-address', help: 'Floating IP address to remove from server (IP only)' },
    ],
    async run(ctx, a) {
      // openstackclient looks at the floating IP only (the server is not checked).
      await findServer(ctx, a.pos('server'))
      const fip = await findFloatingIp(ctx, a.pos('ip-address'))
      await ctx.call(FloatingIpsClient, 'updateFloatingIp', { id: fip.id ?? '', portId: '' })
      return { kind: 'none' }
    },
  },

  // ---------------------------------------------------------------- volumes (Nova os-volume_attachments)
  {
    name: 'server add volume',
    summary: 'Add volume to server',
    output: 'show',
    positionals: [{ name: 'server', help: 'Server (name or ID)' }, { name: 'volume', help: 'Volume to add (name or ID)' }],
    options: [opt('--device', 'device', '<device>', 'Server internal device name for volume (/dev/vdb … /dev/vdz; default: the next free one)')],
    async run(ctx, a) {
      const s = await findServer(ctx, a.pos('server'))
      const v = await findVolume(ctx, a.pos('volume'))
      const sv = await ctx.call(ServersClient, 'attachVolume', { serverId: s.id ?? '', volumeId: v.id ?? '', device: a.str('device') ?? '' })
      return { kind: 'show', data: { ID: sv.id ?? '', 'Server ID': sv.serverId ?? '', 'Volume ID': sv.volumeId ?? '', Device: sv.device ?? '' } }
    },
  },
  {
    name: 'server remove volume',
    summary: 'Remove volume from server',
    output: 'none',
    positionals: [{ name: 'server', help: 'Server (name or ID)' }, { name: 'volume', help: 'Volume to remove (name or ID)' }],
    options: [],
    async run(ctx, a) {
      const s = await findServer(ctx, a.pos('server'))
      const v = await findVolume(ctx, a.pos('volume'))
      await ctx.call(ServersClient, 'detachVolume', { serverId: s.id ?? '', volumeId: v.id ?? '' })
      return { kind: 'none' }
    },
  },
  {
    name: 'server volume list',
    summary: 'List all the volumes attached to a server',
    output: 'list',
    positionals: [{ name: 'server', help: 'Server to list volume attachments for (name or ID)' }],
    options: [],
    async run(ctx, a) {
      const s = await findServer(ctx, a.pos('server'))
      const r = await ctx.call(ServersClient, 'listServerVolumes', { serverId: s.id ?? '' })
      return { kind: 'list', columns: ['ID', 'Device', 'Server ID', 'Volume ID'], rows: (r.volumeAttachments ?? []).map((x) => [x.id ?? '', x.device ?? '', x.serverId ?? '', x.volumeId ?? '']) }
    },
  },
]
