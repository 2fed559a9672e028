/**
 * `strato host …`, `strato hypervisor …`, `strato compute service …`,
 * `strato availability zone list` — openstackclient's views of compute hosts,
 * and `host discover` for `nova-manage cell_v2 discover_hosts`. In Strato one
 * agent is one host, one hypervisor and one nova-compute service.
 */
import { AvailabilityZonesClient } from '../../../proto/gen/strato/compute/v1/compute.js'
import { HostsClient, type Host, type JoinToken } from '../../../proto/gen/strato/compute/v1/hosts.js'
import { PlacementClient } from '../../../proto/gen/strato/placement/v1/placement.js'
import type { Context } from '../context.js'
import { UsageError } from '../errors.js'
import { flag, opt } from '../identity.js'
import { Dict } from '../output.js'
import type { Command } from '../registry.js'
import { deleteEach } from './delete.js'
import { iso, noSuch, novaTime } from '../resources.js'

/** The only service a Strato host runs (Nova's compute service binary). */
const BINARY = 'nova-compute'

const listHosts = async (ctx: Context, zone = ''): Promise<Host[]> => (await ctx.call(HostsClient, 'listHosts', { availabilityZone: zone })).hosts ?? []

async function findHost(ctx: Context, ref: string, kind: string): Promise<Host> {
  const h = (await listHosts(ctx)).find((x) => x.id === ref || x.host === ref)
  if (!h) throw noSuch(kind, ref)
  return h
}

/** Nova's integer hypervisor_version: "8.0.0" → 8000000. */
function versionNumber(v: string | undefined): number {
  const [major = 0, minor = 0, micro = 0] = (v ?? '').split('.').map((x) => Number.parseInt(x, 10) || 0)
  return major * 1_000_000 + minor * 1_000 + micro
}

/**
 * What a hypervisor has and uses: totals as the host reports them, used as
 * placement counts it. As in Nova, memory and disk kept for the host itself
 * (placement's `reserved`) count as used.
 */
async function usageOf(ctx: Context, h: Host) {
  const rp = h.id ?? ''
  const [inv, use, allocs] = await Promise.all([
    ctx.call(PlacementClient, 'getInventories', { resourceProviderUuid: rp }),
    ctx.call(PlacementClient, 'getUsages', { resourceProviderUuid: rp }),
    ctx.call(PlacementClient, 'listAllocations', { resourceProviderUuid: rp }),
  ])
  const used = (rc: string) => (use.usages?.[rc] ?? 0) + (inv.inventories?.[rc]?.reserved ?? 0)
  const cap = h.capabilities ?? {}
  return {
    vcpus: cap.vcpus ?? 0,
    vcpusUsed: used('VCPU'),
    memoryMb: cap.memoryMb ?? 0,
    memoryMbUsed: used('MEMORY_MB'),
    localGb: cap.diskGb ?? 0,
    localGbUsed: used('DISK_GB'),
    runningVms: (allocs.allocations ?? []).length,
  }
}

/** `3600`, `90s`, `30m`, `1h`, `2d` → seconds (kubeadm's --ttl takes a duration too). */
function ttlSeconds(cmd: string, raw: string | undefined): number {
  if (raw === undefined) return 0
  const m = /^(\d+)([smhd]?)$/.exec(raw.trim())
  if (!m || Number(m[1]) === 0) throw new UsageError(`strato ${cmd}: --ttl must be a positive duration such as 3600, 90s, 30m, 1h or 2d, got '${raw}'`)
  return Number(m[1]) * { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd']
}

const joinTokenRow = (t: JoinToken) => [t.id ?? '', t.description ?? '', t.host || null, iso(t.expiresAt), t.usedAt ? `used by ${t.usedByHost}` : t.expiresAt && t.expiresAt.getTime() <= Date.now() ? 'expired' : 'unused']

export const hostCommands: Command[] = [
  {
    name: 'host join-token create',
    summary: 'Create a token with which one new compute host joins the cloud (kubeadm token create)',
    description:
      'The token lets one host, once, before it expires, fetch its own bus credentials and the cloud\'s CA (strato-agent join). ' +
      'The printed join command carries the controller address and the hash of the CA, which the new host checks before it trusts the controller. ' +
      'The joined host then waits to be mapped (strato host discover). The secret is shown only now.',
    output: 'show',
    options: [
      opt('--ttl', 'ttl', '<duration>', 'How long the token is valid: seconds, or with s/m/h/d (default: 1h)'),
      opt('--description', 'description', '<text>', 'What the token is for'),
      opt('--host', 'host', '<host-name>', 'Only a host of this name may join with it'),
    ],
    async run(ctx, a) {
      const t = await ctx.call(HostsClient, 'createJoinToken', { ttlSeconds: ttlSeconds('host join-token create', a.str('ttl')), description: a.str('description') ?? '', host: a.str('host') ?? '' })
      // The controller gives its URL (grpcs:// with TLS); an older one gave host:port.
      const address = t.controllerAddress ?? ''
      const controller = /^grpcs?:\/\//.test(address) ? address : `${t.caCertHash ? 'grpcs' : 'grpc'}://${address}`
      const command = ['strato-agent join', `--controller ${controller}`, `--token ${t.token}`, ...(t.caCertHash ? [`--ca-cert-hash ${t.caCertHash}`] : []), ...(t.host ? [`--host ${t.host}`] : [])].join(' ')
      return { kind: 'show', data: { id: t.id ?? '', token: t.token ?? '', description: t.description ?? '', host: t.host || null, expires_at: iso(t.expiresAt), ca_cert_hash: t.caCertHash || null, join_command: command } }
    },
  },
  {
    name: 'host join-token list',
    summary: 'List join tokens (without their secrets)',
    output: 'list',
    async run(ctx) {
      const tokens = (await ctx.call(HostsClient, 'listJoinTokens', {})).joinTokens ?? []
      return { kind: 'list', columns: ['ID', 'Description', 'Host', 'Expires At', 'Status'], rows: tokens.map(joinTokenRow) }
    },
  },
  {
    name: 'host join-token delete',
    summary: 'Delete join token(s), so no host can join with them',
    output: 'none',
    positionals: [{ name: 'token', help: 'Join token(s) to delete (ID)', variadic: true }],
    async run(ctx, a) {
      await deleteEach(ctx, 'join token', 'join tokens', a.posList('token'), async (ref) => {
        await ctx.call(HostsClient, 'deleteJoinToken', { id: ref.split('.')[0] ?? ref })
      })
      return { kind: 'none' }
    },
  },
  {
    name: 'host list',
    summary: 'List hosts',
    output: 'list',
    options: [opt('--zone', 'zone', '<zone>', 'Only return hosts in the availability zone')],
    async run(ctx, a) {
      const hosts = await listHosts(ctx, a.str('zone'))
      return { kind: 'list', columns: ['Host Name', 'Service', 'Zone'], rows: hosts.map((h) => [h.host ?? '', 'compute', h.availabilityZone ?? '']) }
    },
  },
  {
    name: 'host discover',
    summary: 'Map compute hosts waiting to be mapped (nova-manage cell_v2 discover_hosts)',
    description:
      "A new agent's host is known but not schedulable until it is mapped, as with Nova's cells v2 (the seed's 'Host is not mapped to any cell'). " +
      'This maps every waiting host; with --verbose it prints what it checked and mapped, as nova-manage does.',
    output: 'none',
    options: [flag('--verbose', 'verbose', 'Print what was checked and mapped')],
    async run(ctx, a) {
      const r = await ctx.call(HostsClient, 'discoverHosts', {})
      if (a.flag('verbose')) ctx.io.stdout((r.lines ?? []).map((l) => l + '\n').join(''))
      return { kind: 'none' }
    },
  },
  {
    name: 'hypervisor list',
    summary: 'List hypervisors',
    output: 'list',
    options: [
      opt('--matching', 'matching', '<hostname>', 'Filter hypervisors using <hostname> substring'),
      flag('--long', 'long', 'List additional fields in output'),
    ],
    async run(ctx, a) {
      const matching = a.str('matching')
      const hosts = (await listHosts(ctx)).filter((h) => !matching || (h.host ?? '').includes(matching))
      const columns = ['ID', 'Hypervisor Hostname', 'Hypervisor Type', 'Host IP', 'State']
      const row = (h: Host) => [h.id ?? '', h.host ?? '', h.capabilities?.hypervisorType ?? '', h.capabilities?.hostIp || null, h.state ?? '']
      if (!a.flag('long')) return { kind: 'list', columns, rows: hosts.map(row) }
      const rows: unknown[][] = []
      for (const h of hosts) {
        const u = await usageOf(ctx, h)
        rows.push([...row(h), u.vcpusUsed, u.vcpus, u.memoryMbUsed, u.memoryMb])
      }
      return { kind: 'list', columns: [...columns, 'vCPUs Used', 'vCPUs', 'Memory MB Used', 'Memory MB'], rows }
    },
  },
  {
    name: 'hypervisor show',
    summary: 'Display hypervisor details',
    output: 'show',
    positionals: [{ name: 'hypervisor', help: 'Hypervisor to display (name or ID)' }],
    async run(ctx, a) {
      const h = await findHost(ctx, a.pos('hypervisor'), 'hypervisor')
      const u = await usageOf(ctx, h)
      const cap = h.capabilities ?? {}
      return {
        kind: 'show',
        data: {
          aggregates: [],
          cpu_info: new Dict({ arch: cap.arch ?? '', model: cap.cpuModel ?? '' }),
          current_workload: 0,
          disk_available_least: u.localGb - u.localGbUsed,
          free_disk_gb: u.localGb - u.localGbUsed,
          free_ram_mb: u.memoryMb - u.memoryMbUsed,
          host_ip: cap.hostIp || null,
          hypervisor_hostname: h.host ?? '',
          hypervisor_type: cap.hypervisorType ?? '',
          hypervisor_version: versionNumber(cap.hypervisorVersion),
          id: h.id ?? '',
          local_gb: u.localGb,
          local_gb_used: u.localGbUsed,
          memory_mb: u.memoryMb,
          memory_mb_used: u.memoryMbUsed,
          running_vms: u.runningVms,
          service_host: h.host ?? '',
          service_id: h.id ?? '',
          state: h.state ?? '',
          status: h.status ?? '',
          vcpus: u.vcpus,
          vcpus_used: u.vcpusUsed,
        },
      }
    },
  },
  {
    name: 'compute service list',
    summary: 'List compute services',
    output: 'list',
    options: [
      opt('--host', 'host', '<host>', 'List services on specified host (name only)'),
      opt('--service', 'service', '<service>', `List only specified service binaries (name only); Strato hosts run ${BINARY}`),
      flag('--long', 'long', 'List additional fields in output'),
    ],
    async run(ctx, a) {
      const host = a.str('host')
      const service = a.str('service')
      const hosts = (await listHosts(ctx)).filter((h) => (!host || h.host === host) && (!service || service === BINARY))
      const columns = ['ID', 'Binary', 'Host', 'Zone', 'Status', 'State', 'Updated At']
      const row = (h: Host) => [h.id ?? '', BINARY, h.host ?? '', h.availabilityZone ?? '', h.status ?? '', h.state ?? '', novaTime(h.lastHeartbeatAt)]
      if (a.flag('long')) return { kind: 'list', columns: [...columns, 'Disabled Reason'], rows: hosts.map((h) => [...row(h), h.disabledReason || null]) }
      return { kind: 'list', columns, rows: hosts.map(row) }
    },
  },
  {
    name: 'compute service set',
    summary: 'Set compute service properties',
    description: 'A disabled host keeps its servers but gets no new ones; --disable-reason says why (shown by compute service list --long).',
    output: 'none',
    positionals: [
      { name: 'host', help: 'Name of host' },
      { name: 'service', help: `Name of service (binary name): ${BINARY}` },
    ],
    options: [
      flag('--enable', 'enabled', 'Enable service'),
      flag('--disable', 'enabled', 'Disable service', false),
      opt('--disable-reason', 'disable_reason', '<reason>', 'Reason for disabling the service (in quotes); should be used with --disable option'),
    ],
    async run(ctx, a) {
      const c = 'compute service set'
      const reason = a.str('disable_reason')
      if (reason !== undefined && a.bool('enabled') !== false) throw new UsageError(`strato ${c}: Cannot specify option --disable-reason without --disable specified.`)
      const service = a.pos('service')
      if (service !== BINARY) throw new UsageError(`strato ${c}: service '${service}' is not on Strato hosts; each runs one service, ${BINARY}`)
      const h = await findHost(ctx, a.pos('host'), 'compute host')
      const enabled = a.bool('enabled')
      await ctx.call(HostsClient, 'updateHost', { host: h.host ?? '', ...(enabled !== undefined ? { enabled } : {}), disabledReason: reason ?? '' })
      return { kind: 'none' }
    },
  },
  {
    name: 'availability zone list',
    summary: 'List availability zones and their status',
    description: 'Strato zones are compute zones (hosts announce theirs); --long lists their hosts to cloud admins.',
    output: 'list',
    options: [
      flag('--compute', 'compute', 'List compute availability zones (the only kind in Strato)'),
      flag('--long', 'long', 'List additional fields in output'),
    ],
    async run(ctx, a) {
      const zones = (await ctx.call(AvailabilityZonesClient, 'listAvailabilityZones', {})).availabilityZones ?? []
      const status = (available: boolean | undefined) => (available ? 'available' : 'not available')
      if (!a.flag('long')) return { kind: 'list', columns: ['Zone Name', 'Zone Status'], rows: zones.map((z) => [z.name ?? '', status(z.available)]) }
      const rows: unknown[][] = []
      for (const z of zones) {
        const hosts = z.hosts ?? []
        if (hosts.length === 0) rows.push([z.name ?? '', status(z.available), '', '', '', ''])
        for (const h of hosts) {
          // openstackclient's service status: "enabled :-) <updated_at>".
          const service = `${h.active ? 'enabled' : 'disabled'} ${h.available ? ':-)' : 'XXX'} ${novaTime(h.updatedAt) ?? 'None'}`
          rows.push([z.name ?? '', status(z.available), '', h.host ?? '', h.service ?? BINARY, service])
        }
      }
      return { kind: 'list', columns: ['Zone Name', 'Zone Status', 'Zone Resource', 'Host Name', 'Service Name', 'Service Status'], rows }
    },
  },
]
