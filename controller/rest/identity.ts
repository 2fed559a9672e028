/**
 * Identity v3 (Keystone) over REST: version discovery, tokens, the identity
 * resources (domains, projects, users, roles, grants, role assignments,
 * implied roles) and the service catalog read-only (regions, services,
 * endpoints). Thin, like `api/identity.ts`: Keystone's JSON in, the identity
 * catalog and authenticator called directly, Keystone's JSON out. Each route
 * is governed by the gRPC method's policy entry, so both APIs decide alike.
 */
import { FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, Unauthenticated } from '../../proto/errors.js'
import type { CatalogEntry } from '../../proto/gen/strato/identity/v1/identity.js'
import type { IssueRequest } from '../identity/auth.js'
import type { Domain, Project, Role, RoleAssignment, User, Visibility } from '../identity/catalog.js'
import type { NamedRef, TokenClaims } from '../identity/model.js'
import { bodyObject, header, REST_PREFIX, type RestRequest, type RestResult, type RestService, type Route } from './http.js'
import type { RestDomain } from './services.js'

/** The Identity API version Keystone 2023.x reports, which clients expect. */
const V3 = { id: 'v3.14', status: 'stable', updated: '2020-04-07T00:00:00Z', 'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.identity-v3+json' }] }

const I = 'strato.identity.v1'

/** Keystone's words for the one refusal clients and Tempest match on. */
const ENABLED_DOMAIN_DELETE = 'Cannot delete a domain that is enabled, please disable it first.'

type Json = Record<string, unknown>

// ------------------------------------------------------------------ reading Keystone's JSON

/** An optional string field of a body object; a wrong type is a 400 naming the field. */
function str(o: Json, key: string, where: string): string | undefined {
  const v = o[key]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'string') throw new InvalidArgument(`${where}.${key} must be a string`, { field: `${where}.${key}` })
  return v
}

function bool(o: Json, key: string, where: string): boolean | undefined {
  const v = o[key]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'boolean') throw new InvalidArgument(`${where}.${key} must be a boolean`, { field: `${where}.${key}` })
  return v
}

function obj(o: Json, key: string, where: string): Json | undefined {
  const v = o[key]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'object' || Array.isArray(v)) throw new InvalidArgument(`${where}.${key} must be an object`, { field: `${where}.${key}` })
  return v as Json
}

/** Attributes Keystone would store but Strato does not keep: refused rather than dropped silently. */
function unsupported(o: Json, where: string, checks: Record<string, (v: unknown) => boolean>): void {
  for (const [key, isDefault] of Object.entries(checks)) {
    if (o[key] !== undefined && o[key] !== null && !isDefault(o[key])) throw new InvalidArgument(`${where}.${key} is not supported by Strato`, { field: `${where}.${key}` })
  }
}
const emptyList = (v: unknown) => Array.isArray(v) && v.length === 0
const isFalse = (v: unknown) => v === false
const emptyObject = (v: unknown) => typeof v === 'object' && v !== null && Object.keys(v).length === 0

/** A query flag as Keystone reads it: present (even without a value) and not false. */
function flag(req: RestRequest, key: string): boolean {
  const v = req.query.get(key)
  return v !== null && !['0', 'false', 'no', 'off'].includes(v.toLowerCase())
}

/** `?enabled=` on lists. */
function enabledFilter(req: RestRequest): boolean | undefined {
  const v = req.query.get('enabled')
  if (v === null) return undefined
  if (['1', 'true', 'yes', 'on'].includes(v.toLowerCase())) return true
  if (['0', 'false', 'no', 'off'].includes(v.toLowerCase())) return false
  throw new InvalidArgument(`enabled must be true or false, not '${v}'`, { field: 'enabled' })
}

const q = (req: RestRequest, key: string) => req.query.get(key) || undefined

/**
 * Keystone lets only admins and domain readers list domains, projects and
 * users (a member gets 403 and lists her own at /v3/auth/projects); gRPC's
 * lists show a member what she may see instead. The same entry decides who
 * sees what; this is Keystone's refusal where it would show only one's own.
 */
function listedByAdmins(req: RestRequest, what: string): Visibility {
  const vis = req.visibility!
  if (vis.kind === 'own') throw new PermissionDenied(`listing ${what} needs an admin or a domain reader; your own are at GET /v3/auth/projects and /v3/users/{id}/projects`)
  return vis
}

/** The filters lists share: `?name=`, `?enabled=`, `?domain_id=`. */
function listFilter(req: RestRequest): { name?: string; enabled?: boolean; domainId?: string } {
  return defined({ name: q(req, 'name'), enabled: enabledFilter(req), domainId: q(req, 'domain_id') })
}

// ------------------------------------------------------------------ Keystone's JSON out

const self = (req: RestRequest, kind: string, id: string) => ({ self: `${req.baseUrl}/v3/${kind}/${encodeURIComponent(id)}` })

function list(req: RestRequest, key: string, items: unknown[]): RestResult {
  const query = req.query.toString()
  return { body: { [key]: items, links: { self: `${req.baseUrl}${req.path}${query ? `?${query}` : ''}`, previous: null, next: null } } }
}

const domainView = (req: RestRequest, x: Domain) => ({ id: x.id, name: x.name, description: x.description, enabled: x.enabled, tags: [], options: {}, links: self(req, 'domains', x.id) })

/** Strato has no project hierarchy: every project's parent is its domain, as for Keystone's top-level projects. */
const projectView = (req: RestRequest, p: Project) => ({
  id: p.id, name: p.name, domain_id: p.domainId, description: p.description, enabled: p.enabled, parent_id: p.domainId, is_domain: false,
  tags: [], options: {}, links: self(req, 'projects', p.id),
})

const userView = (req: RestRequest, u: User) => ({
  id: u.id, name: u.name, domain_id: u.domainId, enabled: u.enabled, password_expires_at: null, options: {},
  ...(u.defaultProjectId ? { default_project_id: u.defaultProjectId } : {}),
  ...(u.description ? { description: u.description } : {}),
  ...(u.email ? { email: u.email } : {}),
  links: self(req, 'users', u.id),
})

const roleView = (req: RestRequest, r: Pick<Role, 'id' | 'name'> & { description?: string }) => ({
  id: r.id, name: r.name, domain_id: null, description: r.description ?? null, options: {}, links: self(req, 'roles', r.id),
})

const roleRef = (req: RestRequest, r: NamedRef) => ({ id: r.id, name: r.name, links: self(req, 'roles', r.id) })

/** Keystone's timestamps: microseconds and a Z. */
const stamp = (ms: number) => new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z')

function catalogView(catalog: CatalogEntry[]) {
  return catalog.map((e) => ({
    id: e.id, type: e.type, name: e.name,
    endpoints: (e.endpoints ?? []).map((ep) => ({ id: ep.id, interface: ep.interface, region_id: ep.region, region: ep.region, url: ep.url })),
  }))
}

function tokenView(c: TokenClaims, catalog: CatalogEntry[] | null) {
  const token: Json = {
    methods: c.methods,
    user: { id: c.user.id, name: c.user.name, domain: { id: c.user.domain.id, name: c.user.domain.name }, password_expires_at: null },
    audit_ids: c.auditChainId === c.auditId ? [c.auditId] : [c.auditId, c.auditChainId],
    expires_at: stamp(c.expiresAt),
    issued_at: stamp(c.issuedAt),
  }
  if (c.project) {
    token.project = { id: c.project.id, name: c.project.name, domain: { id: c.project.domain.id, name: c.project.domain.name } }
    token.is_domain = false
    token.is_admin_project = c.isAdminProject
  }
  if (c.domain) token.domain = { id: c.domain.id, name: c.domain.name }
  if (c.project || c.domain) {
    token.roles = c.roles.map((r) => ({ id: r.id, name: r.name }))
    if (catalog) token.catalog = catalogView(catalog)
  }
  return { token }
}

function assignmentView(req: RestRequest, a: RoleAssignment, names: boolean) {
  const scope = a.project
    ? { project: names ? { id: a.project.id, name: a.project.name, domain: a.project.domain } : { id: a.project.id } }
    : { domain: names ? { id: a.domain!.id, name: a.domain!.name } : { id: a.domain!.id } }
  const on = a.project ? `projects/${a.project.id}` : `domains/${a.domain!.id}`
  return {
    role: names ? { id: a.role.id, name: a.role.name } : { id: a.role.id },
    user: names ? { id: a.user.id, name: a.user.name, domain: a.user.domain } : { id: a.user.id },
    scope,
    links: { assignment: `${req.baseUrl}/v3/${on}/users/${a.user.id}/roles/${a.role.id}` },
  }
}

/**
 * Keystone refuses with 403 what Strato's rules call FAILED_PRECONDITION
 * (an enabled domain, the cloud-admin project, a default role): the same
 * refusal, in Keystone's status, optionally in Keystone's own words.
 */
async function forbidden<T>(op: () => Promise<T>, message?: string): Promise<T> {
  try {
    return await op()
  } catch (err) {
    if (err instanceof FailedPrecondition) throw new PermissionDenied(message ?? err.message, { cause: err })
    throw err
  }
}

// ------------------------------------------------------------------ tokens

/** Keystone's `auth` object → the authenticator's request. */
function issueRequest(a: Json): IssueRequest {
  const identity = obj(a, 'identity', 'auth')
  if (!identity) throw new InvalidArgument('auth.identity is required', { field: 'auth.identity' })
  const methods = identity.methods
  if (!Array.isArray(methods) || methods.length === 0 || !methods.every((m) => typeof m === 'string')) {
    throw new InvalidArgument('auth.identity.methods must be a non-empty list of method names', { field: 'auth.identity.methods' })
  }
  for (const m of methods) if (m !== 'password' && m !== 'token') throw new Unauthenticated(`the authentication method '${m}' is not supported (password, token)`)
  const out: IssueRequest = { methods: methods as string[] }
  const password = obj(identity, 'password', 'auth.identity')
  if (password) {
    const user = obj(password, 'user', 'auth.identity.password') ?? {}
    const domain = obj(user, 'domain', 'auth.identity.password.user')
    out.password = { user: { ...named(user, 'auth.identity.password.user'), ...(domain ? { domain: named(domain, 'auth.identity.password.user.domain') } : {}), password: str(user, 'password', 'auth.identity.password.user') ?? '' } }
  }
  const token = obj(identity, 'token', 'auth.identity')
  if (token) out.token = { id: str(token, 'id', 'auth.identity.token') ?? '' }
  const scope = a.scope
  if (scope === 'unscoped') return { ...out, unscoped: true }
  if (scope === undefined || scope === null) return out
  if (typeof scope !== 'object' || Array.isArray(scope)) throw new InvalidArgument("auth.scope must be an object or 'unscoped'", { field: 'auth.scope' })
  const s = scope as Json
  if (s.system !== undefined || s['OS-TRUST:trust'] !== undefined) throw new Unauthenticated('system and trust scopes are not supported by Strato: scope to a project or a domain')
  const project = obj(s, 'project', 'auth.scope')
  const domain = obj(s, 'domain', 'auth.scope')
  out.scope = {}
  if (project) {
    const pd = obj(project, 'domain', 'auth.scope.project')
    out.scope.project = { ...named(project, 'auth.scope.project'), ...(pd ? { domain: named(pd, 'auth.scope.project.domain') } : {}) }
  }
  if (domain) out.scope.domain = named(domain, 'auth.scope.domain')
  return out
}

function named(o: Json, where: string): { id?: string; name?: string } {
  const id = str(o, 'id', where)
  const name = str(o, 'name', where)
  return { ...(id ? { id } : {}), ...(name ? { name } : {}) }
}

// ------------------------------------------------------------------ the service

export function identityRest(d: RestDomain): RestService {
  const { identity: catalog, auth } = d

  /** The token named by X-Subject-Token; an unknown or revoked one is 404, as in Keystone. */
  const subject = async (req: RestRequest): Promise<{ token: string; claims: TokenClaims }> => {
    const token = header(req.raw, 'x-subject-token')
    if (!token) throw new InvalidArgument('the request needs X-Subject-Token: the token to validate or revoke', { field: 'X-Subject-Token' })
    try {
      return { token, claims: await auth.validate(token) }
    } catch (err) {
      if (err instanceof Unauthenticated) throw new NotFound(`Could not find token: ${token.slice(0, 16)}… (${err.message})`)
      throw err
    }
  }

  const tokenRoutes: Route[] = [
    {
      method: 'POST', path: '/v3/auth/tokens', policy: 'public',
      handler: async (req) => {
        const { token, claims } = await auth.issue(issueRequest(await bodyObject(req, 'auth')))
        return { status: 201, headers: { 'x-subject-token': token }, body: tokenView(claims, flag(req, 'nocatalog') ? null : d.serviceCatalog()) }
      },
    },
    {
      method: 'GET', path: '/v3/auth/tokens', policy: `${I}.Tokens/ValidateToken`, target: async (req) => ({ token: (await subject(req)).token }),
      handler: async (req) => {
        const { token, claims } = await subject(req)
        return { headers: { 'x-subject-token': token }, body: tokenView(claims, flag(req, 'nocatalog') ? null : d.serviceCatalog()) }
      },
    },
    {
      method: 'DELETE', path: '/v3/auth/tokens', policy: `${I}.Tokens/RevokeToken`, target: async (req) => ({ token: (await subject(req)).token }),
      handler: async (req) => {
        await auth.revoke({ auditId: (await subject(req)).claims.auditId })
        return {}
      },
    },
    {
      method: 'GET', path: '/v3/auth/catalog', policy: `${I}.Catalog/ListCatalog`,
      handler: async (req) => {
        const c = req.auth!.claims
        return { body: { catalog: c.project || c.domain ? catalogView(d.serviceCatalog()) : [], links: { self: `${req.baseUrl}/v3/auth/catalog`, previous: null, next: null } } }
      },
    },
    {
      method: 'GET', path: '/v3/auth/projects', policy: `${I}.Projects/ListProjects`,
      handler: async (req) => list(req, 'projects', (await catalog.listProjects({ userId: req.auth!.userId, enabled: true }, { kind: 'all' })).map((p) => projectView(req, p))),
    },
    {
      method: 'GET', path: '/v3/auth/domains', policy: `${I}.Domains/ListDomains`,
      handler: async (req) => {
        const held = await catalog.listRoleAssignments({ userId: req.auth!.userId }, { kind: 'all' })
        const ids = [...new Set(held.flatMap((a) => (a.domain ? [a.domain.id] : [])))]
        const domains = await Promise.all(ids.map((id) => catalog.getDomain({ id })))
        return list(req, 'domains', domains.filter((x) => x.enabled).map((x) => domainView(req, x)))
      },
    },
    { method: 'GET', path: '/v3/auth/system', policy: `${I}.Catalog/ListCatalog`, handler: async (req) => list(req, 'system', []) },
  ]

  const domainRoutes: Route[] = [
    {
      method: 'POST', path: '/v3/domains', policy: `${I}.Domains/CreateDomain`,
      handler: async (req) => {
        const b = await bodyObject(req, 'domain')
        unsupported(b, 'domain', { tags: emptyList, options: emptyObject, explicit_domain_id: () => false })
        const x = await catalog.createDomain({ name: str(b, 'name', 'domain'), description: str(b, 'description', 'domain') ?? '', enabled: bool(b, 'enabled', 'domain') ?? true })
        return { status: 201, body: { domain: domainView(req, x) } }
      },
    },
    {
      method: 'GET', path: '/v3/domains', policy: `${I}.Domains/ListDomains`,
      handler: async (req) => {
        const { name, enabled } = listFilter(req)
        return list(req, 'domains', (await catalog.listDomains(defined({ name, enabled }), listedByAdmins(req, 'domains'))).map((x) => domainView(req, x)))
      },
    },
    show('domains', 'domain', 'Domains/GetDomain', (id) => catalog.getDomain({ id }), domainView),
    {
      method: 'PATCH', path: '/v3/domains/:id', policy: `${I}.Domains/UpdateDomain`,
      handler: async (req) => {
        const b = await bodyObject(req, 'domain')
        unsupported(b, 'domain', { tags: emptyList, options: emptyObject })
        if (b.id !== undefined && b.id !== req.params.id) throw new InvalidArgument('domain.id cannot be changed', { field: 'domain.id' })
        const patch = { name: str(b, 'name', 'domain'), description: str(b, 'description', 'domain'), enabled: bool(b, 'enabled', 'domain') }
        const x = await forbidden(() => catalog.updateDomain(req.params.id, defined(patch)))
        return { body: { domain: domainView(req, x) } }
      },
    },
    {
      method: 'DELETE', path: '/v3/domains/:id', policy: `${I}.Domains/DeleteDomain`,
      handler: async (req) => {
        const cur = await catalog.getDomain({ id: req.params.id! })
        await forbidden(() => catalog.deleteDomain(cur.id), cur.enabled ? ENABLED_DOMAIN_DELETE : undefined)
        return {}
      },
    },
  ]

  const projectRoutes: Route[] = [
    {
      method: 'POST', path: '/v3/projects', policy: `${I}.Projects/CreateProject`,
      target: async (req) => ({ domainId: str(await bodyObject(req, 'project'), 'domain_id', 'project') ?? '' }),
      handler: async (req) => {
        const b = await bodyObject(req, 'project')
        unsupported(b, 'project', { tags: emptyList, options: emptyObject, is_domain: isFalse })
        const domainId = str(b, 'domain_id', 'project') || req.auth!.actingDomainId
        const parent = str(b, 'parent_id', 'project')
        if (parent && parent !== domainId) throw new InvalidArgument('project.parent_id: Strato has no project hierarchy; a project\'s parent is its domain', { field: 'project.parent_id' })
        const p = await catalog.createProject({ name: str(b, 'name', 'project'), domainId, description: str(b, 'description', 'project') ?? '', enabled: bool(b, 'enabled', 'project') ?? true })
        return { status: 201, body: { project: projectView(req, p) } }
      },
    },
    {
      method: 'GET', path: '/v3/projects', policy: `${I}.Projects/ListProjects`,
      handler: async (req) => {
        // Only domains are parents, no project is a domain, and none has tags.
        const parent = q(req, 'parent_id')
        const domainId = q(req, 'domain_id') ?? parent
        if (flag(req, 'is_domain') || q(req, 'tags') || q(req, 'tags-any') || (parent && q(req, 'domain_id') && parent !== q(req, 'domain_id'))) return list(req, 'projects', [])
        return list(req, 'projects', (await catalog.listProjects(defined({ ...listFilter(req), domainId }), listedByAdmins(req, 'projects'))).map((p) => projectView(req, p)))
      },
    },
    show('projects', 'project', 'Projects/GetProject', (id) => catalog.getProject({ id }), projectView),
    {
      method: 'PATCH', path: '/v3/projects/:id', policy: `${I}.Projects/UpdateProject`,
      handler: async (req) => {
        const b = await bodyObject(req, 'project')
        unsupported(b, 'project', { tags: emptyList, options: emptyObject, is_domain: isFalse })
        const cur = await catalog.getProject({ id: req.params.id! })
        if (b.domain_id !== undefined && b.domain_id !== cur.domainId) throw new InvalidArgument('project.domain_id cannot be changed', { field: 'project.domain_id' })
        if (b.parent_id !== undefined && b.parent_id !== cur.domainId) throw new InvalidArgument('project.parent_id cannot be changed', { field: 'project.parent_id' })
        const patch = { name: str(b, 'name', 'project'), description: str(b, 'description', 'project'), enabled: bool(b, 'enabled', 'project') }
        return { body: { project: projectView(req, await forbidden(() => catalog.updateProject(cur.id, defined(patch)))) } }
      },
    },
    {
      method: 'DELETE', path: '/v3/projects/:id', policy: `${I}.Projects/DeleteProject`,
      handler: async (req) => (await forbidden(() => catalog.deleteProject(req.params.id)), {}),
    },
  ]

  const userRoutes: Route[] = [
    {
      method: 'POST', path: '/v3/users', policy: `${I}.Users/CreateUser`,
      target: async (req) => ({ domainId: str(await bodyObject(req, 'user'), 'domain_id', 'user') ?? '' }),
      handler: async (req) => {
        const b = await bodyObject(req, 'user')
        unsupported(b, 'user', { options: emptyObject, federated: emptyList })
        const u = await catalog.createUser({
          name: str(b, 'name', 'user'), domainId: str(b, 'domain_id', 'user') || req.auth!.actingDomainId,
          ...defined({ password: str(b, 'password', 'user'), defaultProjectId: str(b, 'default_project_id', 'user'), description: str(b, 'description', 'user'), email: str(b, 'email', 'user') }),
          enabled: bool(b, 'enabled', 'user') ?? true,
        })
        return { status: 201, body: { user: userView(req, u) } }
      },
    },
    {
      method: 'GET', path: '/v3/users', policy: `${I}.Users/ListUsers`,
      handler: async (req) => {
        return list(req, 'users', (await catalog.listUsers(listFilter(req), listedByAdmins(req, 'users'))).map((u) => userView(req, u)))
      },
    },
    show('users', 'user', 'Users/GetUser', (id) => catalog.getUser({ id }), userView),
    {
      method: 'PATCH', path: '/v3/users/:id', policy: `${I}.Users/UpdateUser`,
      handler: async (req) => {
        const b = await bodyObject(req, 'user')
        unsupported(b, 'user', { options: emptyObject, federated: emptyList })
        const cur = await catalog.getUser({ id: req.params.id! })
        if (b.domain_id !== undefined && b.domain_id !== cur.domainId) throw new InvalidArgument('user.domain_id cannot be changed', { field: 'user.domain_id' })
        const patch = {
          name: str(b, 'name', 'user'), password: str(b, 'password', 'user'), enabled: bool(b, 'enabled', 'user'),
          // null clears the default project.
          defaultProjectId: b.default_project_id === null ? '' : str(b, 'default_project_id', 'user'),
          description: str(b, 'description', 'user'), email: str(b, 'email', 'user'),
        }
        return { body: { user: userView(req, await catalog.updateUser(cur.id, defined(patch))) } }
      },
    },
    {
      method: 'DELETE', path: '/v3/users/:id', policy: `${I}.Users/DeleteUser`,
      handler: async (req) => (await catalog.deleteUser(req.params.id), {}),
    },
    {
      // Keystone's own-password change needs no token (an expired password may be changed): the original password is the proof.
      method: 'POST', path: '/v3/users/:id/password', policy: 'public',
      handler: async (req) => {
        const b = await bodyObject(req, 'user')
        const original = str(b, 'original_password', 'user')
        const password = str(b, 'password', 'user')
        if (!original) throw new InvalidArgument('user.original_password is required', { field: 'user.original_password' })
        if (!password) throw new InvalidArgument('user.password is required', { field: 'user.password' })
        await auth.changePassword(req.params.id!, original, password)
        return {}
      },
    },
    {
      method: 'GET', path: '/v3/users/:id/projects', policy: `${I}.Users/GetUser`,
      handler: async (req) => {
        const u = await catalog.getUser({ id: req.params.id! })
        return list(req, 'projects', (await catalog.listProjects({ userId: u.id }, { kind: 'all' })).map((p) => projectView(req, p)))
      },
    },
    // Strato has no groups: every user belongs to none, and `group list` is empty.
    { method: 'GET', path: '/v3/users/:id/groups', policy: `${I}.Users/GetUser`, handler: async (req) => (await catalog.getUser({ id: req.params.id! }), list(req, 'groups', [])) },
    { method: 'GET', path: '/v3/groups', policy: `${I}.Users/ListUsers`, handler: async (req) => list(req, 'groups', []) },
    { method: 'GET', path: '/v3/groups/:id', policy: `${I}.Users/ListUsers`, handler: async (req) => { throw new NotFound(`Could not find group: ${req.params.id}. (Strato has no groups)`) } },
  ]

  const roleRoutes: Route[] = [
    {
      method: 'POST', path: '/v3/roles', policy: `${I}.Roles/CreateRole`,
      handler: async (req) => {
        const b = await bodyObject(req, 'role')
        unsupported(b, 'role', { domain_id: () => false, options: emptyObject })
        const r = await catalog.createRole({ name: str(b, 'name', 'role'), description: str(b, 'description', 'role') ?? '' })
        return { status: 201, body: { role: roleView(req, r) } }
      },
    },
    {
      method: 'GET', path: '/v3/roles', policy: `${I}.Roles/ListRoles`,
      handler: async (req) => {
        // Every role is global: a domain's own roles are none.
        if (q(req, 'domain_id')) return list(req, 'roles', [])
        return list(req, 'roles', (await catalog.listRoles(q(req, 'name') ? { name: q(req, 'name')! } : {})).map((r) => roleView(req, r)))
      },
    },
    show('roles', 'role', 'Roles/GetRole', (id) => catalog.getRole({ id }), roleView),
    {
      method: 'PATCH', path: '/v3/roles/:id', policy: `${I}.Roles/UpdateRole`,
      handler: async (req) => {
        const b = await bodyObject(req, 'role')
        unsupported(b, 'role', { domain_id: () => false, options: emptyObject })
        return { body: { role: roleView(req, await catalog.updateRole(req.params.id, defined({ name: str(b, 'name', 'role'), description: str(b, 'description', 'role') }))) } }
      },
    },
    {
      method: 'DELETE', path: '/v3/roles/:id', policy: `${I}.Roles/DeleteRole`,
      handler: async (req) => (await forbidden(() => catalog.deleteRole(req.params.id)), {}),
    },
    {
      method: 'GET', path: '/v3/roles/:prior/implies', policy: `${I}.Roles/GetRole`,
      handler: async (req) => {
        const prior = await catalog.getRole({ id: req.params.prior! })
        return { body: { role_inference: { prior_role: roleRef(req, prior), implies: prior.implies.map((r) => roleRef(req, r)) }, links: self(req, 'roles', `${prior.id}/implies`) } }
      },
    },
    {
      method: 'PUT', path: '/v3/roles/:prior/implies/:implied', policy: `${I}.Roles/CreateImpliedRole`,
      handler: async (req) => {
        const prior = await catalog.createImpliedRole(req.params.prior, req.params.implied)
        return { status: 201, body: inference(req, prior, req.params.implied!) }
      },
    },
    {
      method: 'GET', path: '/v3/roles/:prior/implies/:implied', policy: `${I}.Roles/GetRole`,
      handler: async (req) => ({ body: inference(req, await catalog.getRole({ id: req.params.prior! }), req.params.implied!) }),
    },
    {
      method: 'DELETE', path: '/v3/roles/:prior/implies/:implied', policy: `${I}.Roles/DeleteImpliedRole`,
      handler: async (req) => (await catalog.deleteImpliedRole(req.params.prior, req.params.implied), {}),
    },
    {
      method: 'GET', path: '/v3/role_inferences', policy: `${I}.Roles/ListRoles`,
      handler: async (req) => {
        const roles = (await catalog.listRoles({})).filter((r) => r.implies.length > 0)
        return list(req, 'role_inferences', roles.map((r) => ({ prior_role: roleRef(req, r), implies: r.implies.map((i) => roleRef(req, i)) })))
      },
    },
    {
      method: 'GET', path: '/v3/role_assignments', policy: `${I}.Roles/ListRoleAssignments`,
      handler: async (req) => {
        // No groups, no system scope, no inheritance: filters on them match nothing.
        if (q(req, 'group.id') || req.query.has('scope.system') || q(req, 'scope.OS-INHERIT:inherited_to')) return list(req, 'role_assignments', [])
        const filter = defined({ userId: q(req, 'user.id'), roleId: q(req, 'role.id'), projectId: q(req, 'scope.project.id'), domainId: q(req, 'scope.domain.id'), effective: flag(req, 'effective') || undefined })
        const names = flag(req, 'include_names')
        return list(req, 'role_assignments', (await catalog.listRoleAssignments(filter, req.visibility!)).map((a) => assignmentView(req, a, names)))
      },
    },
  ]

  /** `PUT|GET|HEAD|DELETE /v3/{projects|domains}/{id}/users/{user}/roles/{role}` and the list of a user's roles there. */
  const grantRoutes = (kind: 'projects' | 'domains'): Route[] => {
    const key = kind === 'projects' ? 'projectId' : 'domainId'
    const grant = (req: RestRequest) => ({ userId: req.params.user!, [key]: req.params.target!, roleId: req.params.role! })
    const held = async (req: RestRequest) => catalog.listRoleAssignments({ userId: req.params.user!, [key]: req.params.target! }, req.visibility!)
    const base = `/v3/${kind}/:target/users/:user/roles`
    return [
      {
        method: 'PUT', path: `${base}/:role`, policy: `${I}.Roles/GrantRole`, target: grant,
        handler: async (req) => (await catalog.grantRole(grant(req)), {}),
      },
      {
        method: 'GET', path: `${base}/:role`, policy: `${I}.Roles/ListRoleAssignments`,
        handler: async (req) => {
          if (!(await held(req)).some((a) => a.role.id === req.params.role)) throw new NotFound(`Could not find role assignment with role: ${req.params.role}, user: ${req.params.user} on ${kind.slice(0, -1)} ${req.params.target}`)
          return {}
        },
      },
      {
        method: 'DELETE', path: `${base}/:role`, policy: `${I}.Roles/RevokeRole`, target: grant,
        handler: async (req) => (await catalog.revokeRole(grant(req)), {}),
      },
      {
        method: 'GET', path: base, policy: `${I}.Roles/ListRoleAssignments`,
        handler: async (req) => {
          const roles = await Promise.all((await held(req)).map((a) => catalog.getRole({ id: a.role.id })))
          return list(req, 'roles', roles.map((r) => roleView(req, r)))
        },
      },
    ]
  }

  /** The service catalog, read-only, in Keystone's shapes (regions, services, endpoints). */
  const catalogRoutes: Route[] = (() => {
    const region = (req: RestRequest) => ({ id: d.region, description: '', parent_region_id: null, links: self(req, 'regions', d.region) })
    const services = (req: RestRequest) => d.serviceCatalog().map((e) => ({ id: e.id!, type: e.type!, name: e.name!, enabled: true, description: '', links: self(req, 'services', e.id!) }))
    const endpoints = (req: RestRequest) => d.serviceCatalog().flatMap((e) => (e.endpoints ?? []).map((ep) => ({
      id: ep.id!, interface: ep.interface!, region_id: ep.region!, region: ep.region!, service_id: e.id!, url: ep.url!, enabled: true, links: self(req, 'endpoints', ep.id!),
    })))
    const one = <T extends { id: string }>(all: T[], id: string, what: string): T => {
      const hit = all.find((x) => x.id === id)
      if (!hit) throw new NotFound(`Could not find ${what}: ${id}.`)
      return hit
    }
    const P = `${I}.Catalog/ListCatalog`
    const match = (req: RestRequest, x: Record<string, unknown>, keys: string[]) => keys.every((k) => q(req, k) === undefined || x[k] === q(req, k))
    return [
      { method: 'GET', path: '/v3/regions', policy: P, handler: async (req) => list(req, 'regions', [region(req)].filter((r) => match(req, r, ['parent_region_id']))) },
      { method: 'GET', path: '/v3/regions/:id', policy: P, handler: async (req) => ({ body: { region: one([region(req)], req.params.id!, 'region') } }) },
      { method: 'GET', path: '/v3/services', policy: P, handler: async (req) => list(req, 'services', services(req).filter((s) => match(req, s, ['type', 'name']))) },
      { method: 'GET', path: '/v3/services/:id', policy: P, handler: async (req) => ({ body: { service: one(services(req), req.params.id!, 'service') } }) },
      { method: 'GET', path: '/v3/endpoints', policy: P, handler: async (req) => list(req, 'endpoints', endpoints(req).filter((e) => match(req, e, ['interface', 'service_id', 'region_id']))) },
      { method: 'GET', path: '/v3/endpoints/:id', policy: P, handler: async (req) => ({ body: { endpoint: one(endpoints(req), req.params.id!, 'endpoint') } }) },
    ]
  })()

  return {
    type: 'identity',
    prefix: REST_PREFIX.identity,
    routes: [
      {
        method: 'GET', path: '/', policy: 'public',
        handler: async (req) => ({ status: 300, body: { versions: { values: [{ ...V3, links: [{ rel: 'self', href: `${req.baseUrl}/v3/` }] }] } } }),
      },
      {
        method: 'GET', path: '/v3', policy: 'public',
        handler: async (req) => ({ body: { version: { ...V3, links: [{ rel: 'self', href: `${req.baseUrl}/v3/` }] } } }),
      },
      ...tokenRoutes, ...domainRoutes, ...projectRoutes, ...userRoutes, ...roleRoutes,
      ...grantRoutes('projects'), ...grantRoutes('domains'), ...catalogRoutes,
    ],
  }
}

/** `GET /v3/{kind}/{id}` → `{key: view}`, governed by the gRPC method's policy entry. */
function show<T>(kind: string, key: string, method: string, get: (id: string) => Promise<T>, view: (req: RestRequest, x: T) => unknown): Route {
  return { method: 'GET', path: `/v3/${kind}/:id`, policy: `${I}.${method}`, handler: async (req) => ({ body: { [key]: view(req, await get(req.params.id!)) } }) }
}

/** One implication in Keystone's shape; 404 unless `prior` implies `impliedId`. */
function inference(req: RestRequest, prior: Role, impliedId: string) {
  const implied = prior.implies.find((r) => r.id === impliedId)
  if (!implied) throw new NotFound(`role ${prior.id} does not imply role ${impliedId}`)
  return { role_inference: { prior_role: roleRef(req, prior), implies: roleRef(req, implied) }, links: self(req, 'roles', `${prior.id}/implies/${implied.id}`) }
}

/** The fields that are set (the catalog's patches take absent as "unchanged"). */
function defined<T extends Record<string, unknown>>(o: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as { [K in keyof T]?: Exclude<T[K], undefined> }
}
