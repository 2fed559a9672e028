/**
 * Who may call what: one declarative table from RPC path to the rules that
 * allow it, enforced in one place (`controller/api/rpc.ts`) before any handler
 * runs. Rules name a relation between the caller's token and the request's
 * target (its domain, project or user); a target resolver reads whatever the
 * request names. List calls get a Visibility instead of a yes/no, so callers
 * see only their own domain's or project's things.
 *
 * Cloud admin = the admin role on a token scoped to the cloud-admin project
 * (Keystone's `admin_project`), so a project admin elsewhere is not a cloud admin.
 */
import { PermissionDenied, Internal } from '../../proto/errors.js'
import type { IdentityCatalog, Visibility } from './catalog.js'
import type { AuthContext } from './model.js'
import { exactlyOne } from './validate.js'

export type Rule =
  | 'public'
  | 'authenticated'
  | 'cloud_admin'
  | 'domain_admin'
  | 'domain_reader'
  | 'in_domain'
  | 'project_admin'
  | 'project_member'
  | 'project_reader'
  | 'self'

export interface Target {
  domainId?: string
  projectId?: string
  userId?: string
}

/** What target resolvers may read. */
export interface TargetLookup {
  catalog: IdentityCatalog
  /** Claims of a token named in a request (ValidateToken, RevokeToken). */
  tokenOwner(token: string): Promise<string> | string
}

export interface PolicyEntry {
  allow: Rule[]
  target?: (req: any, ctx: AuthContext, lookup: TargetLookup) => Promise<Target> | Target
  /** A listing: the handler receives the caller's Visibility. */
  list?: true
  /**
   * Also takes an image-read token (identity/tokens.ts); the handler then gets
   * its grant instead of a caller and must hold the request to that one image.
   */
  imageRead?: true
  /** Also takes an image-upload token (a snapshot's host); the handler gets its grant and must hold the upload to that one image. */
  imageUpload?: true
}

const ruleChecks: Record<Exclude<Rule, 'public'>, (c: AuthContext, t: Target) => boolean> = {
  authenticated: () => true,
  cloud_admin: (c) => c.isCloudAdmin,
  domain_admin: (c, t) => c.domainId !== undefined && c.domainId === t.domainId && c.roles.has('admin'),
  domain_reader: (c, t) => c.domainId !== undefined && c.domainId === t.domainId && c.roles.has('reader'),
  in_domain: (c, t) => t.domainId !== undefined && c.actingDomainId === t.domainId,
  project_admin: (c, t) => c.projectId !== undefined && c.projectId === t.projectId && c.roles.has('admin'),
  project_member: (c, t) => c.projectId !== undefined && c.projectId === t.projectId && c.roles.has('member'),
  project_reader: (c, t) => c.projectId !== undefined && c.projectId === t.projectId && c.roles.has('reader'),
  self: (c, t) => t.userId !== undefined && c.userId === t.userId,
}

/** The domain a create or by-name lookup acts in when the request names none. */
export function requestDomain(req: { domainId?: string }, ctx: AuthContext): string {
  return req.domainId || ctx.actingDomainId
}

/** What a caller sees in listings. */
export function visibilityOf(ctx: AuthContext): Visibility {
  if (ctx.isCloudAdmin) return { kind: 'all' }
  if (ctx.domainId && ctx.roles.has('reader')) return { kind: 'domain', domainId: ctx.domainId }
  return { kind: 'own', userId: ctx.userId, ...(ctx.projectId ? { projectId: ctx.projectId } : {}), domainId: ctx.actingDomainId }
}

const domainOf = async (req: { id?: string; name?: string }, _c: AuthContext, l: TargetLookup): Promise<Target> => ({ domainId: (await l.catalog.getDomain(req)).id })
export const projectTarget = async (req: { id?: string; name?: string; domainId?: string }, c: AuthContext, l: TargetLookup): Promise<Target> => {
  const p = await l.catalog.getProject(req.id ? { id: req.id } : { name: req.name, domainId: requestDomain(req, c) })
  return { domainId: p.domainId, projectId: p.id }
}
const userTarget = async (req: { id?: string; name?: string; domainId?: string }, c: AuthContext, l: TargetLookup): Promise<Target> => {
  const u = await l.catalog.getUser(req.id ? { id: req.id } : { name: req.name, domainId: requestDomain(req, c) })
  return { domainId: u.domainId, userId: u.id }
}
const newInDomain = (req: { domainId?: string }, c: AuthContext): Target => ({ domainId: requestDomain(req, c) })
/** A grant is within a domain only if the user and the project (or domain) both are; otherwise only cloud admins match. */
const grantTarget = async (req: { userId: string; projectId?: string; domainId?: string }, _c: AuthContext, l: TargetLookup): Promise<Target> => {
  exactlyOne({ project_id: req.projectId, domain_id: req.domainId }, 'role assignment target')
  const user = await l.catalog.getUser({ id: req.userId })
  const scopeDomain = req.projectId ? (await l.catalog.getProject({ id: req.projectId })).domainId : req.domainId
  return scopeDomain === user.domainId ? { domainId: user.domainId } : {}
}
const tokenTarget = async (req: { token?: string }, c: AuthContext, l: TargetLookup): Promise<Target> => ({ userId: req.token ? await l.tokenOwner(req.token) : c.userId })

const I = 'strato.identity.v1'

export const identityPolicy: Record<string, PolicyEntry> = {
  [`${I}.Tokens/IssueToken`]: { allow: ['public'] },
  [`${I}.Tokens/ValidateToken`]: { allow: ['cloud_admin', 'self'], target: tokenTarget },
  [`${I}.Tokens/RevokeToken`]: { allow: ['cloud_admin', 'self'], target: tokenTarget },
  [`${I}.Tokens/RotateSigningKeys`]: { allow: ['cloud_admin'] },

  [`${I}.Domains/CreateDomain`]: { allow: ['cloud_admin'] },
  [`${I}.Domains/GetDomain`]: { allow: ['cloud_admin', 'in_domain'], target: domainOf },
  [`${I}.Domains/ListDomains`]: { allow: ['authenticated'], list: true },
  [`${I}.Domains/UpdateDomain`]: { allow: ['cloud_admin'] },
  [`${I}.Domains/DeleteDomain`]: { allow: ['cloud_admin'] },

  [`${I}.Projects/CreateProject`]: { allow: ['cloud_admin', 'domain_admin'], target: newInDomain },
  [`${I}.Projects/GetProject`]: { allow: ['cloud_admin', 'domain_reader', 'project_reader'], target: projectTarget },
  [`${I}.Projects/ListProjects`]: { allow: ['authenticated'], list: true },
  [`${I}.Projects/UpdateProject`]: { allow: ['cloud_admin', 'domain_admin'], target: projectTarget },
  [`${I}.Projects/DeleteProject`]: { allow: ['cloud_admin', 'domain_admin'], target: projectTarget },

  [`${I}.Users/CreateUser`]: { allow: ['cloud_admin', 'domain_admin'], target: newInDomain },
  [`${I}.Users/GetUser`]: { allow: ['cloud_admin', 'domain_reader', 'self'], target: userTarget },
  [`${I}.Users/ListUsers`]: { allow: ['authenticated'], list: true },
  [`${I}.Users/UpdateUser`]: { allow: ['cloud_admin', 'domain_admin'], target: userTarget },
  [`${I}.Users/DeleteUser`]: { allow: ['cloud_admin', 'domain_admin'], target: userTarget },

  [`${I}.Roles/CreateRole`]: { allow: ['cloud_admin'] },
  [`${I}.Roles/GetRole`]: { allow: ['authenticated'] },
  [`${I}.Roles/ListRoles`]: { allow: ['authenticated'] },
  [`${I}.Roles/UpdateRole`]: { allow: ['cloud_admin'] },
  [`${I}.Roles/DeleteRole`]: { allow: ['cloud_admin'] },
  [`${I}.Roles/CreateImpliedRole`]: { allow: ['cloud_admin'] },
  [`${I}.Roles/DeleteImpliedRole`]: { allow: ['cloud_admin'] },
  [`${I}.Roles/GrantRole`]: { allow: ['cloud_admin', 'domain_admin'], target: grantTarget },
  [`${I}.Roles/RevokeRole`]: { allow: ['cloud_admin', 'domain_admin'], target: grantTarget },
  [`${I}.Roles/ListRoleAssignments`]: { allow: ['authenticated'], list: true },

  [`${I}.Catalog/ListCatalog`]: { allow: ['authenticated'] },
}

export class Policy {
  private readonly table = new Map<string, PolicyEntry>()

  constructor(...tables: Array<Record<string, PolicyEntry>>) {
    for (const t of tables) for (const [k, v] of Object.entries(t)) this.table.set(k, v)
  }

  entry(path: string): PolicyEntry {
    const e = this.table.get(path.replace(/^\//, ''))
    // Fail closed: a method without a policy entry is a bug, never open.
    if (!e) throw new Internal(`no policy is defined for ${path}`)
    return e
  }

  isPublic(path: string): boolean {
    return this.entry(path).allow.includes('public')
  }

  /** Throws PermissionDenied unless one rule of the method's entry allows the caller. */
  async enforce(path: string, req: unknown, ctx: AuthContext, lookup: TargetLookup): Promise<Visibility | undefined> {
    const e = this.entry(path)
    const target = e.target ? await e.target(req, ctx, lookup) : {}
    const ok = e.allow.some((r) => r !== 'public' && ruleChecks[r](ctx, target))
    if (!ok) {
      const method = path.replace(/^\//, '')
      throw new PermissionDenied(`${method} requires one of: ${e.allow.join(', ')}; the token (user '${ctx.claims.user.name}', ${describeScope(ctx)}, roles ${[...ctx.roles].join(', ') || 'none'}) has none of them for this target`)
    }
    return e.list ? visibilityOf(ctx) : undefined
  }
}

function describeScope(ctx: AuthContext): string {
  if (ctx.claims.project) return `project '${ctx.claims.project.name}'`
  if (ctx.claims.domain) return `domain '${ctx.claims.domain.name}'`
  return 'unscoped'
}
