/** `strato security group …`, `strato security group rule …` — openstackclient's network security group commands. */
import { SecurityGroupsClient, type SecurityGroup, type SecurityGroupRule } from '../../../proto/gen/strato/network/v1/network.js'
import type { Context } from '../context.js'
import { UsageError } from '../errors.js'
import { flag, opt } from '../identity.js'
import type { Command } from '../registry.js'
import { findSecurityGroup, intOpt, iso, noSuch } from '../resources.js'
import { deleteEach } from './delete.js'
import { namingOf, projectFilterOpts, projectIdOf, projectOpts } from './network.js'

export const ruleFields = (r: SecurityGroupRule) => ({
  created_at: iso(r.createdAt),
  description: r.description ?? '',
  direction: r.direction ?? '',
  ether_type: r.ethertype ?? '',
  id: r.id ?? '',
  name: null,
  port_range_max: r.portRangeMax ?? null,
  port_range_min: r.portRangeMin ?? null,
  project_id: r.projectId ?? '',
  protocol: r.protocol || null,
  remote_address_group_id: null,
  remote_group_id: r.remoteGroupId || null,
  remote_ip_prefix: r.remoteIpPrefix || null,
  revision_number: 0,
  security_group_id: r.securityGroupId ?? '',
  tags: [],
  updated_at: iso(r.createdAt),
})

/** One rule on one line, as openstackclient's `security group show` prints the `rules` field. */
const ruleLine = (r: SecurityGroupRule): string =>
  Object.entries({
    created_at: iso(r.createdAt),
    direction: r.direction,
    ethertype: r.ethertype,
    id: r.id,
    port_range_max: r.portRangeMax,
    port_range_min: r.portRangeMin,
    protocol: r.protocol,
    remote_group_id: r.remoteGroupId,
    remote_ip_prefix: r.remoteIpPrefix,
    standard_attr_id: undefined,
  })
    .filter(([, v]) => v !== undefined && v !== '' && v !== null)
    .map(([k, v]) => `${k}='${String(v)}'`)
    .join(', ')

const groupFields = (g: SecurityGroup) => ({
  created_at: iso(g.createdAt),
  description: g.description ?? '',
  id: g.id ?? '',
  name: g.name ?? '',
  project_id: g.projectId ?? '',
  revision_number: g.revisionNumber ?? 0,
  rules: (g.securityGroupRules ?? []).map(ruleLine).join('\n'),
  stateful: g.stateful ?? true,
  tags: [],
  updated_at: iso(g.updatedAt),
})

/** `22`, `1000:2000` → [min, max]. */
function portRange(c: string, v: string): [number, number] {
  const m = /^(\d+)(?::(\d+))?$/.exec(v.trim())
  if (!m) throw new UsageError(`strato ${c}: --dst-port '${v}' is not <port> or <port-min>:<port-max>`)
  const min = Number(m[1])
  return [min, m[2] !== undefined ? Number(m[2]) : min]
}

const portRangeText = (r: SecurityGroupRule): string =>
  r.portRangeMin === undefined && r.portRangeMax === undefined ? '' : `${r.portRangeMin ?? ''}:${r.portRangeMax ?? ''}`

async function findRule(ctx: Context, id: string): Promise<SecurityGroupRule> {
  const rules = (await ctx.call(SecurityGroupsClient, 'listSecurityGroupRules', {})).securityGroupRules ?? []
  const r = rules.find((x) => x.id === id)
  if (!r) throw noSuch('security group rule', id, 'an ID')
  return r
}

export const securityGroupCommands: Command[] = [
  {
    name: 'security group create',
    summary: 'Create a new security group',
    output: 'show',
    positionals: [{ name: 'name', help: 'New security group name' }],
    options: [
      opt('--description', 'description', '<description>', 'Security group description'),
      flag('--stateful', 'stateful', 'Security group is stateful (default)'),
      flag('--stateless', 'stateful', 'Security group is stateless', false),
      ...projectOpts,
    ],
    async run(ctx, a) {
      const g = await ctx.call(SecurityGroupsClient, 'createSecurityGroup', {
        name: a.pos('name'),
        description: a.str('description') ?? '',
        ...(a.bool('stateful') !== undefined ? { stateful: a.bool('stateful') } : {}),
        projectId: await projectIdOf(ctx, a),
      })
      return { kind: 'show', data: groupFields(g) }
    },
  },
  {
    name: 'security group list',
    summary: 'List security groups',
    output: 'list',
    options: projectFilterOpts('List only security groups of this project (name or ID)'),
    async run(ctx, a) {
      const groups = (await ctx.call(SecurityGroupsClient, 'listSecurityGroups', { projectId: await projectIdOf(ctx, a) })).securityGroups ?? []
      return {
        kind: 'list',
        columns: ['ID', 'Name', 'Description', 'Project', 'Tags'],
        rows: groups.map((g) => [g.id ?? '', g.name ?? '', g.description ?? '', g.projectId ?? '', []]),
      }
    },
  },
  {
    name: 'security group show',
    summary: 'Display security group details',
    output: 'show',
    positionals: [{ name: 'group', help: 'Security group to display (name or ID)' }],
    async run(ctx, a) {
      return { kind: 'show', data: groupFields(await findSecurityGroup(ctx, a.pos('group'))) }
    },
  },
  {
    name: 'security group set',
    summary: 'Set security group properties',
    output: 'none',
    positionals: [{ name: 'group', help: 'Security group to modify (name or ID)' }],
    options: [
      opt('--name', 'name', '<new-name>', 'New security group name'),
      opt('--description', 'description', '<description>', 'New security group description'),
      flag('--stateful', 'stateful', 'Security group is stateful'),
      flag('--stateless', 'stateful', 'Security group is stateless', false),
    ],
    async run(ctx, a) {
      const g = await findSecurityGroup(ctx, a.pos('group'))
      await ctx.call(SecurityGroupsClient, 'updateSecurityGroup', {
        id: g.id ?? '',
        ...namingOf(a),
        ...(a.bool('stateful') !== undefined ? { stateful: a.bool('stateful') } : {}),
      })
      return { kind: 'none' }
    },
  },
  {
    name: 'security group delete',
    summary: 'Delete security group(s)',
    output: 'none',
    positionals: [{ name: 'group', help: 'Security group(s) to delete (name or ID)', variadic: true }],
    async run(ctx, a) {
      await deleteEach(ctx, 'security group', 'groups', a.posList('group'), async (ref) => {
        const g = await findSecurityGroup(ctx, ref)
        await ctx.call(SecurityGroupsClient, 'deleteSecurityGroup', { id: g.id ?? '' })
      })
      return { kind: 'none' }
    },
  },
  {
    name: 'security group rule create',
    summary: 'Create a new security group rule',
    description: "With neither --remote-ip nor --remote-group, the rule admits the whole address family (0.0.0.0/0 or ::/0).",
    output: 'show',
    positionals: [{ name: 'group', help: 'Create rule in this security group (name or ID)' }],
    options: [
      { ...opt('--protocol', 'protocol', '<protocol>', 'IP protocol (icmp, tcp, udp, ipv6-icmp, any, another IANA name, or a number 0-255; default: any)'), flags: ['--protocol', '--proto'] },
      opt('--dst-port', 'dst_port', '<port-range>', 'Destination port, may be a single port or a starting and ending port range: 137:139. Required for --protocol tcp and udp ranges'),
      opt('--icmp-type', 'icmp_type', '<icmp-type>', 'ICMP type for ICMP IP protocols'),
      opt('--icmp-code', 'icmp_code', '<icmp-code>', 'ICMP code for ICMP IP protocols'),
      flag('--ingress', 'direction', 'Rule applies to incoming network traffic (default)', 'ingress'),
      flag('--egress', 'direction', 'Rule applies to outgoing network traffic', 'egress'),
      opt('--ethertype', 'ethertype', '<ethertype>', 'Ethertype of network traffic: IPv4 (default) or IPv6'),
      opt('--remote-ip', 'remote_ip', '<ip-address>', 'Remote IP address block (may use CIDR notation; default for IPv4 rule: 0.0.0.0/0, for IPv6 rule: ::/0)'),
      opt('--remote-group', 'remote_group', '<group>', 'Remote security group (name or ID)'),
      opt('--description', 'description', '<description>', 'Set security group rule description'),
    ],
    async run(ctx, a) {
      const c = 'security group rule create'
      if (a.str('remote_ip') !== undefined && a.str('remote_group') !== undefined) throw new UsageError(`strato ${c}: give --remote-ip or --remote-group, not both`)
      let protocol = a.str('protocol') ?? ''
      if (protocol === 'any') protocol = ''
      const ethertype = a.str('ethertype') ?? 'IPv4'
      if (ethertype.toLowerCase() === 'ipv6' && protocol.toLowerCase() === 'icmp') protocol = 'ipv6-icmp'
      const icmp = ['icmp', 'ipv6-icmp', 'icmpv6', '1', '58'].includes(protocol.toLowerCase())
      let range: { portRangeMin?: number; portRangeMax?: number } = {}
      const dst = a.str('dst_port')
      if (dst !== undefined) {
        if (icmp) throw new UsageError(`strato ${c}: --dst-port is for tcp, udp and other port protocols; for ICMP give --icmp-type and --icmp-code`)
        const [min, max] = portRange(c, dst)
        range = { portRangeMin: min, portRangeMax: max }
      }
      const type = intOpt(c, a, 'icmp_type', '--icmp-type')
      const code = intOpt(c, a, 'icmp_code', '--icmp-code')
      if ((type !== undefined || code !== undefined) && !icmp) throw new UsageError(`strato ${c}: --icmp-type and --icmp-code need --protocol icmp (or ipv6-icmp)`)
      if (code !== undefined && type === undefined) throw new UsageError(`strato ${c}: --icmp-code needs --icmp-type`)
      if (type !== undefined) range = { portRangeMin: type, ...(code !== undefined ? { portRangeMax: code } : {}) }
      const group = await findSecurityGroup(ctx, a.pos('group'))
      const remoteGroup = a.str('remote_group')
      const r = await ctx.call(SecurityGroupsClient, 'createSecurityGroupRule', {
        securityGroupId: group.id ?? '',
        direction: a.str('direction') ?? 'ingress',
        ethertype,
        protocol,
        ...range,
        remoteIpPrefix: a.str('remote_ip') ?? '',
        remoteGroupId: remoteGroup ? (await findSecurityGroup(ctx, remoteGroup)).id ?? '' : '',
        description: a.str('description') ?? '',
      })
      return { kind: 'show', data: ruleFields(r) }
    },
  },
  {
    name: 'security group rule list',
    summary: 'List security group rules',
    output: 'list',
    positionals: [{ name: 'group', help: 'List all rules in this security group (name or ID)', optional: true }],
    options: [
      opt('--protocol', 'protocol', '<protocol>', 'List only rules with this IP protocol'),
      opt('--ethertype', 'ethertype', '<ethertype>', 'List only rules with this ethertype (IPv4 or IPv6)'),
      flag('--ingress', 'direction', 'List only rules applied to incoming network traffic', 'ingress'),
      flag('--egress', 'direction', 'List only rules applied to outgoing network traffic', 'egress'),
      flag('--long', 'long', 'List additional fields in output (accepted; all fields are shown)'),
    ],
    async run(ctx, a) {
      const ref = a.positionals.group === undefined ? undefined : a.pos('group')
      const group = ref ? await findSecurityGroup(ctx, ref) : undefined
      const rules = (await ctx.call(SecurityGroupsClient, 'listSecurityGroupRules', {
        securityGroupId: group?.id ?? '',
        direction: a.str('direction') ?? '',
        ethertype: a.str('ethertype') ?? '',
        protocol: a.str('protocol') ?? '',
      })).securityGroupRules ?? []
      const columns = ['ID', 'IP Protocol', 'Ethertype', 'IP Range', 'Port Range', 'Direction', 'Remote Security Group']
      const row = (r: SecurityGroupRule) => [r.id ?? '', r.protocol || null, r.ethertype ?? '', r.remoteIpPrefix || null, portRangeText(r), r.direction ?? '', r.remoteGroupId || null]
      if (group) return { kind: 'list', columns, rows: rules.map(row) }
      return { kind: 'list', columns: [...columns, 'Security Group'], rows: rules.map((r) => [...row(r), r.securityGroupId ?? '']) }
    },
  },
  {
    name: 'security group rule show',
    summary: 'Display security group rule details',
    output: 'show',
    positionals: [{ name: 'rule', help: 'Security group rule to display (ID only)' }],
    async run(ctx, a) {
      return { kind: 'show', data: ruleFields(await findRule(ctx, a.pos('rule'))) }
    },
  },
  {
    name: 'security group rule delete',
    summary: 'Delete security group rule(s)',
    output: 'none',
    positionals: [{ name: 'rule', help: 'Security group rule(s) to delete (ID only)', variadic: true }],
    async run(ctx, a) {
      await deleteEach(ctx, 'rule', 'rules', a.posList('rule'), async (id) => {
        await ctx.call(SecurityGroupsClient, 'deleteSecurityGroupRule', { id })
      })
      return { kind: 'none' }
    },
  },
]
