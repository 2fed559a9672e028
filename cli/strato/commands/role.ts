/** `strato role …`, `strato role assignment list`, `strato implied role …` — openstackclient's identity v3 role commands. */
import { AlreadyExists } from '../../../proto/errors.js'
import { RolesClient, type RoleAssignment } from '../../../proto/gen/strato/identity/v1/identity.js'
import type { Context } from '../context.js'
import { UsageError } from '../errors.js'
import { findDomain, findProject, findRole, findUser, flag, opt, orShow, roleFields } from '../identity.js'
import type { Args, Command, OptionSpec } from '../registry.js'
import { deleteEach } from './delete.js'

const grantOptions: OptionSpec[] = [
  opt('--project', 'project', '<project>', 'Include <project> (name or ID)'),
  opt('--domain', 'domain', '<domain>', 'Include <domain> (name or ID)'),
  opt('--user', 'user', '<user>', 'Include <user> (name or ID)'),
  opt('--user-domain', 'user_domain', '<user-domain>', 'Domain the user belongs to (name or ID), to resolve a user name'),
  opt('--project-domain', 'project_domain', '<project-domain>', 'Domain the project belongs to (name or ID), to resolve a project name'),
]

/** Resolves `--user` and exactly one of `--project`/`--domain` into a grant request. */
async function grantRequest(ctx: Context, a: Args, verb: string) {
  const user = a.str('user')
  const project = a.str('project')
  const domain = a.str('domain')
  if (!user) throw new UsageError(`strato role ${verb}: give the user with --user <user> (groups are not supported yet)`)
  if (!project === !domain) throw new UsageError(`strato role ${verb}: give exactly one of --project <project> or --domain <domain>`)
  const role = await findRole(ctx, a.pos('role'))
  const u = await findUser(ctx, user, a.str('user_domain'))
  const target = project ? { projectId: (await findProject(ctx, project, a.str('project_domain'))).id ?? '' } : { domainId: (await findDomain(ctx, domain!)).id ?? '' }
  return { roleId: role.id ?? '', userId: u.id ?? '', ...target }
}

function assignmentRow(r: RoleAssignment, names: boolean): unknown[] {
  const at = (n: string | undefined, d: string | undefined) => (n ? `${n}@${d ?? ''}` : '')
  if (names) {
    return [
      r.role?.name ?? '',
      at(r.user?.name, r.user?.domain?.name),
      '',
      at(r.project?.name, r.project?.domain?.name),
      r.domain?.name ?? '',
      '',
      false,
    ]
  }
  return [r.role?.id ?? '', r.user?.id ?? '', '', r.project?.id ?? '', r.domain?.id ?? '', '', false]
}

export const roleCommands: Command[] = [
  {
    name: 'role create',
    summary: 'Create new role',
    output: 'show',
    positionals: [{ name: 'role-name', help: 'New role name' }],
    options: [opt('--description', 'description', '<description>', 'Add description about the role'), orShow('role')],
    async run(ctx, a) {
      const name = a.pos('role-name')
      try {
        return { kind: 'show', data: roleFields(await ctx.call(RolesClient, 'createRole', { name, description: a.str('description') ?? '' })) }
      } catch (err) {
        if (err instanceof AlreadyExists && a.flag('or_show')) return { kind: 'show', data: roleFields(await findRole(ctx, name)) }
        throw err
      }
    },
  },
  {
    name: 'role list',
    summary: 'List roles',
    output: 'list',
    async run(ctx) {
      const roles = (await ctx.call(RolesClient, 'listRoles', {})).roles ?? []
      return { kind: 'list', columns: ['ID', 'Name'], rows: roles.map((r) => [r.id ?? '', r.name ?? '']) }
    },
  },
  {
    name: 'role show',
    summary: 'Display role details',
    output: 'show',
    positionals: [{ name: 'role', help: 'Role to display (name or ID)' }],
    async run(ctx, a) {
      return { kind: 'show', data: roleFields(await findRole(ctx, a.pos('role'))) }
    },
  },
  {
    name: 'role set',
    summary: 'Set role properties',
    output: 'none',
    positionals: [{ name: 'role', help: 'Role to modify (name or ID)' }],
    options: [opt('--name', 'name', '<name>', 'Set role name'), opt('--description', 'description', '<description>', 'Set role description')],
    async run(ctx, a) {
      const r = await findRole(ctx, a.pos('role'))
      await ctx.call(RolesClient, 'updateRole', {
        id: r.id ?? '',
        ...(a.str('name') !== undefined ? { name: a.str('name') } : {}),
        ...(a.str('description') !== undefined ? { description: a.str('description') } : {}),
      })
      return { kind: 'none' }
    },
  },
  {
    name: 'role delete',
    summary: 'Delete role(s)',
    output: 'none',
    positionals: [{ name: 'role', help: 'Role(s) to delete (name or ID)', variadic: true }],
    async run(ctx, a) {
      await deleteEach(ctx, 'role', 'roles', a.posList('role'), async (ref) => {
        const r = await findRole(ctx, ref)
        await ctx.call(RolesClient, 'deleteRole', { id: r.id ?? '' })
      })
      return { kind: 'none' }
    },
  },
  {
    name: 'role add',
    summary: 'Adds a role assignment to a user on a project or domain',
    output: 'none',
    positionals: [{ name: 'role', help: 'Role to add to <user> (name or ID)' }],
    options: grantOptions,
    async run(ctx, a) {
      await ctx.call(RolesClient, 'grantRole', await grantRequest(ctx, a, 'add'))
      return { kind: 'none' }
    },
  },
  {
    name: 'role remove',
    summary: 'Removes a role assignment from a user on a project or domain',
    output: 'none',
    positionals: [{ name: 'role', help: 'Role to remove (name or ID)' }],
    options: grantOptions,
    async run(ctx, a) {
      await ctx.call(RolesClient, 'revokeRole', await grantRequest(ctx, a, 'remove'))
      return { kind: 'none' }
    },
  },
  {
    name: 'role assignment list',
    summary: 'List role assignments',
    output: 'list',
    options: [
      opt('--role', 'role', '<role>', 'Role to filter (name or ID)'),
      opt('--user', 'user', '<user>', 'User to filter (name or ID)'),
      opt('--user-domain', 'user_domain', '<user-domain>', 'Domain the user belongs to, to resolve a user name'),
      opt('--project', 'project', '<project>', 'Project to filter (name or ID)'),
      opt('--project-domain', 'project_domain', '<project-domain>', 'Domain the project belongs to, to resolve a project name'),
      opt('--domain', 'domain', '<domain>', 'Domain to filter (name or ID)'),
      flag('--effective', 'effective', 'Returns only effective role assignments (implied roles expanded)'),
      flag('--names', 'names', 'Display names instead of IDs'),
      flag('--auth-user', 'auth_user', 'Only list assignments for the authenticated user'),
      flag('--auth-project', 'auth_project', 'Only list assignments for the project of the authenticated token'),
    ],
    async run(ctx, a) {
      const user = a.str('user')
      const role = a.str('role')
      const project = a.str('project')
      const domain = a.str('domain')
      const info = a.flag('auth_user') || a.flag('auth_project') ? await ctx.tokenInfo() : undefined
      const res = await ctx.call(RolesClient, 'listRoleAssignments', {
        userId: user ? (await findUser(ctx, user, a.str('user_domain'))).id ?? '' : a.flag('auth_user') ? info!.userId : '',
        roleId: role ? (await findRole(ctx, role)).id ?? '' : '',
        projectId: project ? (await findProject(ctx, project, a.str('project_domain'))).id ?? '' : a.flag('auth_project') ? info?.projectId ?? '' : '',
        domainId: domain ? (await findDomain(ctx, domain)).id ?? '' : '',
        effective: a.flag('effective'),
        includeNames: a.flag('names'),
      })
      return {
        kind: 'list',
        columns: ['Role', 'User', 'Group', 'Project', 'Domain', 'System', 'Inherited'],
        rows: (res.roleAssignments ?? []).map((r) => assignmentRow(r, a.flag('names'))),
      }
    },
  },
  {
    name: 'implied role create',
    summary: 'Creates an association between prior and implied roles',
    output: 'show',
    positionals: [{ name: 'role', help: 'Role (name or ID) that implies another role' }],
    options: [opt('--implied-role', 'implied_role', '<role>', '<role> (name or ID) implied by another role')],
    async run(ctx, a) {
      const impliedRef = a.str('implied_role')
      if (!impliedRef) throw new UsageError('strato implied role create: give the implied role with --implied-role <role>')
      const prior = await findRole(ctx, a.pos('role'))
      const implied = await findRole(ctx, impliedRef)
      await ctx.call(RolesClient, 'createImpliedRole', { priorRoleId: prior.id ?? '', impliedRoleId: implied.id ?? '' })
      return { kind: 'show', data: { prior_role: prior.id ?? '', implies: implied.id ?? '' } }
    },
  },
  {
    name: 'implied role delete',
    summary: 'Deletes an association between prior and implied roles',
    output: 'none',
    positionals: [{ name: 'role', help: 'Role (name or ID) that implies another role' }],
    options: [opt('--implied-role', 'implied_role', '<role>', '<role> (name or ID) implied by another role')],
    async run(ctx, a) {
      const impliedRef = a.str('implied_role')
      if (!impliedRef) throw new UsageError('strato implied role delete: give the implied role with --implied-role <role>')
      const prior = await findRole(ctx, a.pos('role'))
      const implied = await findRole(ctx, impliedRef)
      await ctx.call(RolesClient, 'deleteImpliedRole', { priorRoleId: prior.id ?? '', impliedRoleId: implied.id ?? '' })
      return { kind: 'none' }
    },
  },
  {
    name: 'implied role list',
    summary: 'List implied roles',
    output: 'list',
    async run(ctx) {
      const roles = (await ctx.call(RolesClient, 'listRoles', {})).roles ?? []
      const byId = new Map(roles.map((r) => [r.id, r.name]))
      const rows = roles.flatMap((r) => (r.implies ?? []).map((i) => [r.id ?? '', r.name ?? '', i.id ?? '', i.name || byId.get(i.id) || '']))
      return { kind: 'list', columns: ['Prior Role ID', 'Prior Role Name', 'Implied Role ID', 'Implied Role Name'], rows }
    },
  },
]
