/** `strato project …` — openstackclient's identity v3 project commands. */
import { AlreadyExists } from '../../../proto/errors.js'
import { ProjectsClient } from '../../../proto/gen/strato/identity/v1/identity.js'
import { enableDisable, findDomain, findProject, findUser, flag, opt, orShow, projectFields } from '../identity.js'
import type { Command } from '../registry.js'
import { deleteEach } from './delete.js'

const domainOpt = (what: string) => opt('--domain', 'domain', '<domain>', `Domain owning ${what} (name or ID)`)

export const projectCommands: Command[] = [
  {
    name: 'project create',
    summary: 'Create new project',
    output: 'show',
    positionals: [{ name: 'project-name', help: 'New project name' }],
    options: [domainOpt('the project'), opt('--description', 'description', '<description>', 'Project description'), ...enableDisable('project'), orShow('project')],
    async run(ctx, a) {
      const name = a.pos('project-name')
      const domain = a.str('domain')
      const domainId = domain ? (await findDomain(ctx, domain)).id ?? '' : ''
      try {
        const p = await ctx.call(ProjectsClient, 'createProject', {
          name,
          domainId,
          description: a.str('description') ?? '',
          ...(a.bool('enabled') !== undefined ? { enabled: a.bool('enabled') } : {}),
        })
        return { kind: 'show', data: projectFields(p) }
      } catch (err) {
        if (err instanceof AlreadyExists && a.flag('or_show')) return { kind: 'show', data: projectFields(await findProject(ctx, name, domain)) }
        throw err
      }
    },
  },
  {
    name: 'project list',
    summary: 'List projects',
    output: 'list',
    options: [
      opt('--domain', 'domain', '<domain>', 'Filter projects by domain (name or ID)'),
      opt('--user', 'user', '<user>', 'Filter projects by user (name or ID)'),
      opt('--user-domain', 'user_domain', '<user-domain>', 'Domain the user belongs to, to resolve a user name'),
      flag('--my-projects', 'my_projects', "List projects of the authenticated user"),
      opt('--name', 'name', '<name>', 'Filter projects by name'),
      flag('--enabled', 'enabled', 'List only enabled projects'),
      flag('--long', 'long', 'List additional fields in output'),
    ],
    async run(ctx, a) {
      const domain = a.str('domain')
      const user = a.str('user')
      const userId = user ? (await findUser(ctx, user, a.str('user_domain'))).id ?? '' : a.flag('my_projects') ? (await ctx.tokenInfo()).userId : ''
      const res = await ctx.call(ProjectsClient, 'listProjects', {
        domainId: domain ? (await findDomain(ctx, domain)).id ?? '' : '',
        userId,
        name: a.str('name') ?? '',
        ...(a.flag('enabled') ? { enabled: true } : {}),
      })
      const projects = res.projects ?? []
      if (a.flag('long')) {
        return {
          kind: 'list',
          columns: ['ID', 'Name', 'Domain ID', 'Description', 'Enabled'],
          rows: projects.map((p) => [p.id ?? '', p.name ?? '', p.domainId ?? '', p.description ?? '', p.enabled ?? false]),
        }
      }
      return { kind: 'list', columns: ['ID', 'Name'], rows: projects.map((p) => [p.id ?? '', p.name ?? '']) }
    },
  },
  {
    name: 'project show',
    summary: 'Display project details',
    output: 'show',
    positionals: [{ name: 'project', help: 'Project to display (name or ID)' }],
    options: [domainOpt('the project')],
    async run(ctx, a) {
      return { kind: 'show', data: projectFields(await findProject(ctx, a.pos('project'), a.str('domain'))) }
    },
  },
  {
    name: 'project set',
    summary: 'Set project properties',
    output: 'none',
    positionals: [{ name: 'project', help: 'Project to modify (name or ID)' }],
    options: [
      opt('--name', 'name', '<name>', 'Set project name'),
      domainOpt('the project'),
      opt('--description', 'description', '<description>', 'Set project description'),
      ...enableDisable('project'),
    ],
    async run(ctx, a) {
      const p = await findProject(ctx, a.pos('project'), a.str('domain'))
      await ctx.call(ProjectsClient, 'updateProject', {
        id: p.id ?? '',
        ...(a.str('name') !== undefined ? { name: a.str('name') } : {}),
        ...(a.str('description') !== undefined ? { description: a.str('description') } : {}),
        ...(a.bool('enabled') !== undefined ? { enabled: a.bool('enabled') } : {}),
      })
      return { kind: 'none' }
    },
  },
  {
    name: 'project delete',
    summary: 'Delete project(s)',
    output: 'none',
    positionals: [{ name: 'project', help: 'Project(s) to delete (name or ID)', variadic: true }],
    options: [domainOpt('the project(s)')],
    async run(ctx, a) {
      await deleteEach(ctx, 'project', 'projects', a.posList('project'), async (ref) => {
        const p = await findProject(ctx, ref, a.str('domain'))
        await ctx.call(ProjectsClient, 'deleteProject', { id: p.id ?? '' })
      })
      return { kind: 'none' }
    },
  },
]
