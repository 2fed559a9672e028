/**
 * Identity helpers shared by the identity nouns: name-or-id lookups as
 * openstackclient's find_resource does them, and the Field/Value shapes of
 * domains, projects, users and roles.
 */
import { NotFound } from '../../proto/errors.js'
import {
  DomainsClient, ProjectsClient, RolesClient, UsersClient, type Domain, type Project, type Role, type User,
} from '../../proto/gen/strato/identity/v1/identity.js'
import { CliError } from './errors.js'
import type { Context } from './context.js'
import type { OptionSpec } from './registry.js'

/** Strato ids: 32 hex characters, or `default` for the bootstrap domain. */
export const looksLikeId = (s: string): boolean => /^[0-9a-f]{32}$/.test(s) || s === 'default'

/** Runs a lookup, turning NOT_FOUND into undefined. */
async function maybe<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p
  } catch (err) {
    if (err instanceof NotFound) return undefined
    throw err
  }
}

const noSuch = (kind: string, ref: string, where = '') => new NotFound(`No ${kind} with a name or ID of '${ref}' exists${where}.`)

export async function findDomain(ctx: Context, ref: string): Promise<Domain> {
  const byId = looksLikeId(ref) ? await maybe(ctx.call(DomainsClient, 'getDomain', { id: ref })) : undefined
  const d = byId ?? (await maybe(ctx.call(DomainsClient, 'getDomain', { name: ref })))
  if (!d) throw noSuch('domain', ref)
  return d
}

/** Finds a project by id, or by name within `domain` (name or id); without a domain, the name must be unique among visible projects. */
export async function findProject(ctx: Context, ref: string, domain?: string): Promise<Project> {
  const byId = looksLikeId(ref) ? await maybe(ctx.call(ProjectsClient, 'getProject', { id: ref })) : undefined
  if (byId) return byId
  if (domain) {
    const d = await findDomain(ctx, domain)
    const p = await maybe(ctx.call(ProjectsClient, 'getProject', { name: ref, domainId: d.id ?? '' }))
    if (!p) throw noSuch('project', ref, ` in domain '${domain}'`)
    return p
  }
  const found = (await ctx.call(ProjectsClient, 'listProjects', { name: ref })).projects ?? []
  if (found.length > 1) throw new CliError(`More than one project exists with the name '${ref}'; add --domain (or --project-domain) or use the project's ID.`)
  if (found[0]) return found[0]
  // Not listed (listing may be narrower than lookup): ask in the caller's domain.
  const p = await maybe(ctx.call(ProjectsClient, 'getProject', { name: ref }))
  if (!p) throw noSuch('project', ref)
  return p
}

export async function findUser(ctx: Context, ref: string, domain?: string): Promise<User> {
  const byId = looksLikeId(ref) ? await maybe(ctx.call(UsersClient, 'getUser', { id: ref })) : undefined
  if (byId) return byId
  if (domain) {
    const d = await findDomain(ctx, domain)
    const u = await maybe(ctx.call(UsersClient, 'getUser', { name: ref, domainId: d.id ?? '' }))
    if (!u) throw noSuch('user', ref, ` in domain '${domain}'`)
    return u
  }
  const found = (await ctx.call(UsersClient, 'listUsers', { name: ref })).users ?? []
  if (found.length > 1) throw new CliError(`More than one user exists with the name '${ref}'; add --domain (or --user-domain) or use the user's ID.`)
  if (found[0]) return found[0]
  const u = await maybe(ctx.call(UsersClient, 'getUser', { name: ref }))
  if (!u) throw noSuch('user', ref)
  return u
}

export async function findRole(ctx: Context, ref: string): Promise<Role> {
  const byId = looksLikeId(ref) ? await maybe(ctx.call(RolesClient, 'getRole', { id: ref })) : undefined
  const r = byId ?? (await maybe(ctx.call(RolesClient, 'getRole', { name: ref })))
  if (!r) throw noSuch('role', ref)
  return r
}

// ------------------------------------------------------------------ shapes (Field/Value rows)

export const domainFields = (d: Domain) => ({ id: d.id ?? '', name: d.name ?? '', description: d.description ?? '', enabled: d.enabled ?? false })

export const projectFields = (p: Project) => ({
  id: p.id ?? '',
  name: p.name ?? '',
  domain_id: p.domainId ?? '',
  description: p.description ?? '',
  enabled: p.enabled ?? false,
  is_domain: false,
  // Top-level projects have their domain as parent, as in Keystone.
  parent_id: p.domainId ?? '',
})

export const userFields = (u: User) => ({
  id: u.id ?? '',
  name: u.name ?? '',
  domain_id: u.domainId ?? '',
  enabled: u.enabled ?? false,
  ...(u.defaultProjectId ? { default_project_id: u.defaultProjectId } : {}),
  ...(u.description ? { description: u.description } : {}),
  ...(u.email ? { email: u.email } : {}),
  password_expires_at: null,
})

export const roleFields = (r: Role) => ({ id: r.id ?? '', name: r.name ?? '', description: r.description || null, domain_id: null })

// ------------------------------------------------------------------ option builders

export const opt = (flag: string, dest: string, metavar: string, help: string): OptionSpec => ({ flags: [flag], dest, kind: 'string', metavar, help })
export const flag = (f: string, dest: string, help: string, value: boolean | string = true): OptionSpec => ({ flags: [f], dest, kind: 'flag', value, help })
export const enableDisable = (noun: string): OptionSpec[] => [
  flag('--enable', 'enabled', `Enable ${noun} (default)`),
  flag('--disable', 'enabled', `Disable ${noun}`, false),
]
export const orShow = (noun: string): OptionSpec => flag('--or-show', 'or_show', `Return the existing ${noun} instead of failing when it already exists`)
