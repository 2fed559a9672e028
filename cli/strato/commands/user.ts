/** `strato user …` — openstackclient's identity v3 user commands. */
import { AlreadyExists } from '../../../proto/errors.js'
import { RolesClient, UsersClient } from '../../../proto/gen/strato/identity/v1/identity.js'
import { enableDisable, findDomain, findProject, findUser, flag, opt, orShow, userFields } from '../identity.js'
import type { Command } from '../registry.js'
import { deleteEach } from './delete.js'

const domainOpt = opt('--domain', 'domain', '<domain>', 'Domain the user belongs to (name or ID)')
const projectOpts = [
  opt('--project', 'project', '<project>', 'Default project (name or ID)'),
  opt('--project-domain', 'project_domain', '<project-domain>', 'Domain the project belongs to (name or ID), to resolve a project name'),
]

export const userCommands: Command[] = [
  {
    name: 'user create',
    summary: 'Create new user',
    output: 'show',
    positionals: [{ name: 'name', help: 'New user name' }],
    options: [
      domainOpt,
      ...projectOpts,
      opt('--password', 'password', '<password>', 'Set user password'),
      opt('--email', 'email', '<email-address>', 'Set user email address'),
      opt('--description', 'description', '<description>', 'User description'),
      ...enableDisable('user'),
      orShow('user'),
    ],
    async run(ctx, a) {
      const name = a.pos('name')
      const domain = a.str('domain')
      const domainId = domain ? (await findDomain(ctx, domain)).id ?? '' : ''
      const project = a.str('project')
      const projectId = project ? (await findProject(ctx, project, a.str('project_domain') ?? domain)).id ?? '' : ''
      try {
        const u = await ctx.call(UsersClient, 'createUser', {
          name,
          domainId,
          password: a.str('password') ?? '',
          defaultProjectId: projectId,
          email: a.str('email') ?? '',
          description: a.str('description') ?? '',
          ...(a.bool('enabled') !== undefined ? { enabled: a.bool('enabled') } : {}),
        })
        return { kind: 'show', data: userFields(u) }
      } catch (err) {
        if (err instanceof AlreadyExists && a.flag('or_show')) return { kind: 'show', data: userFields(await findUser(ctx, name, domain)) }
        throw err
      }
    },
  },
  {
    name: 'user list',
    summary: 'List users',
    output: 'list',
    options: [
      opt('--domain', 'domain', '<domain>', 'Filter users by domain (name or ID)'),
      opt('--project', 'project', '<project>', 'Filter users by project: those with a role on it (name or ID)'),
      opt('--project-domain', 'project_domain', '<project-domain>', 'Domain the project belongs to, to resolve a project name'),
      flag('--long', 'long', 'List additional fields in output'),
    ],
    async run(ctx, a) {
      const domain = a.str('domain')
      let users = (await ctx.call(UsersClient, 'listUsers', { domainId: domain ? (await findDomain(ctx, domain)).id ?? '' : '' })).users ?? []
      const project = a.str('project')
      if (project) {
        const p = await findProject(ctx, project, a.str('project_domain'))
        const assignments = (await ctx.call(RolesClient, 'listRoleAssignments', { projectId: p.id ?? '' })).roleAssignments ?? []
        const ids = new Set(assignments.map((r) => r.user?.id))
        users = users.filter((u) => ids.has(u.id))
      }
      if (a.flag('long')) {
        return {
          kind: 'list',
          columns: ['ID', 'Name', 'Project', 'Domain', 'Description', 'Email', 'Enabled'],
          rows: users.map((u) => [u.id ?? '', u.name ?? '', u.defaultProjectId ?? '', u.domainId ?? '', u.description ?? '', u.email ?? '', u.enabled ?? false]),
        }
      }
      return { kind: 'list', columns: ['ID', 'Name'], rows: users.map((u) => [u.id ?? '', u.name ?? '']) }
    },
  },
  {
    name: 'user show',
    summary: 'Display user details',
    output: 'show',
    positionals: [{ name: 'user', help: 'User to display (name or ID)' }],
    options: [domainOpt],
    async run(ctx, a) {
      return { kind: 'show', data: userFields(await findUser(ctx, a.pos('user'), a.str('domain'))) }
    },
  },
  {
    name: 'user set',
    summary: 'Set user properties',
    output: 'none',
    positionals: [{ name: 'user', help: 'User to modify (name or ID)' }],
    options: [
      opt('--name', 'name', '<name>', 'Set user name'),
      domainOpt,
      ...projectOpts,
      opt('--password', 'password', '<password>', 'Set user password'),
      opt('--email', 'email', '<email-address>', 'Set user email address'),
      opt('--description', 'description', '<description>', 'Set user description'),
      ...enableDisable('user'),
    ],
    async run(ctx, a) {
      const u = await findUser(ctx, a.pos('user'), a.str('domain'))
      const project = a.str('project')
      const projectId = project ? (await findProject(ctx, project, a.str('project_domain'))).id ?? '' : undefined
      await ctx.call(UsersClient, 'updateUser', {
        id: u.id ?? '',
        ...(a.str('name') !== undefined ? { name: a.str('name') } : {}),
        ...(a.str('password') !== undefined ? { password: a.str('password') } : {}),
        ...(a.str('email') !== undefined ? { email: a.str('email') } : {}),
        ...(a.str('description') !== undefined ? { description: a.str('description') } : {}),
        ...(projectId !== undefined ? { defaultProjectId: projectId } : {}),
        ...(a.bool('enabled') !== undefined ? { enabled: a.bool('enabled') } : {}),
      })
      return { kind: 'none' }
    },
  },
  {
    name: 'user delete',
    summary: 'Delete user(s)',
    output: 'none',
    positionals: [{ name: 'user', help: 'User(s) to delete (name or ID)', variadic: true }],
    options: [domainOpt],
    async run(ctx, a) {
      await deleteEach(ctx, 'user', 'users', a.posList('user'), async (ref) => {
        const u = await findUser(ctx, ref, a.str('domain'))
        await ctx.call(UsersClient, 'deleteUser', { id: u.id ?? '' })
      })
      return { kind: 'none' }
    },
  },
]
