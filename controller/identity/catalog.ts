/**
 * Domains, projects, users, roles and role assignments, with Keystone's rules:
 * names unique within a domain; an enabled domain cannot be deleted; deletes
 * cascade; disabling or deleting anything, changing a password and removing a
 * role assignment revoke the affected tokens at once.
 *
 * One file on purpose (≈500 lines, ~30 short methods): Keystone keeps
 * resource, identity and assignment apart because they have separate backends
 * (SQL, LDAP); here they share one database, and the rules that matter cross
 * all of them — a domain delete cascades into its projects, users and grants,
 * and every disable/delete/revoke goes through the same revocation hook —
 * so splitting would only spread those rules over files that call each other.
 */
import { sql } from 'kysely'
import { AlreadyExists, FailedPrecondition, InvalidArgument, NotFound } from '../../proto/errors.js'
import { unlessDuplicate, type Db } from '../store/db.js'
import type { UserTable } from '../store/schema.js'
import type { RevocationEvent } from './revocation.js'
import { hashPassword } from './passwords.js'
import { DESCRIPTION_MAX, NAME_MAX, checkEmail, checkName, checkPassword, checkText, exactlyOne, newId } from './validate.js'
import type { NamedRef } from './model.js'

export const DEFAULT_DOMAIN_ID = 'default'

export interface Domain {
  id: string
  name: string
  description: string
  enabled: boolean
}
export interface Project {
  id: string
  name: string
  domainId: string
  description: string
  enabled: boolean
}
export interface User {
  id: string
  name: string
  domainId: string
  enabled: boolean
  defaultProjectId: string
  description: string
  email: string
  passwordChangedAt: Date
}
export interface Role {
  id: string
  name: string
  description: string
  implies: NamedRef[]
}
export interface RoleAssignment {
  role: NamedRef
  user: { id: string; name: string; domain: NamedRef }
  project?: { id: string; name: string; domain: NamedRef }
  domain?: NamedRef
}

/** What a caller may see in a listing; decided by policy, applied here. */
export type Visibility =
  | { kind: 'all' }
  | { kind: 'domain'; domainId: string }
  | { kind: 'own'; userId: string; projectId?: string; domainId: string }

/** Where revocation events go (persisted and applied by the token service). */
export type Revoke = (event: Omit<RevocationEvent, 'issuedBefore'>) => Promise<void>

type Target = { projectId?: string | undefined; domainId?: string | undefined }

const bool = (n: number): boolean => n !== 0

/** The API view of a user row: never the password hash. */
function toUser(row: UserTable): User {
  return {
    id: row.id,
    name: row.name,
    domainId: row.domain_id,
    enabled: bool(row.enabled),
    defaultProjectId: row.default_project_id ?? '',
    description: row.description,
    email: row.email,
    passwordChangedAt: new Date(row.password_changed_at),
  }
}

export class IdentityCatalog {
  constructor(
    private readonly db: Db,
    private readonly revoke: Revoke,
    /** Project whose admins are cloud admins: it and its domain cannot be disabled or deleted. */
    private readonly adminProjectName: string,
  ) {}

  // ------------------------------------------------------------------ domains

  async createDomain(req: { name?: string | undefined; description?: string; enabled?: boolean; id?: string }): Promise<Domain> {
    const row = {
      id: req.id ?? newId(),
      name: checkName('name', req.name, NAME_MAX.domain),
      description: checkText('description', req.description, DESCRIPTION_MAX),
      enabled: req.enabled === false ? 0 : 1,
      created_at: new Date().toISOString(),
    }
    await this.insertUnique(() => this.db.insertInto('domains').values(row).execute(), `a domain named '${row.name}' already exists`)
    return this.getDomain({ id: row.id })
  }

  async getDomain(ref: { id?: string; name?: string }): Promise<Domain> {
    const by = exactlyOne({ id: ref.id, name: ref.name }, 'domain')
    const row = await this.db
      .selectFrom('domains')
      .selectAll()
      .where(by === 'id' ? 'id' : 'name', '=', (by === 'id' ? ref.id : ref.name)!)
      .executeTakeFirst()
    if (!row) throw new NotFound(`domain ${by === 'id' ? ref.id : `'${ref.name}'`} not found`)
    return { id: row.id, name: row.name, description: row.description, enabled: bool(row.enabled) }
  }

  async listDomains(filter: { name?: string; enabled?: boolean }, vis: Visibility): Promise<Domain[]> {
    let q = this.db.selectFrom('domains').selectAll().orderBy('name')
    if (filter.name) q = q.where('name', '=', filter.name)
    if (filter.enabled !== undefined) q = q.where('enabled', '=', filter.enabled ? 1 : 0)
    if (vis.kind !== 'all') q = q.where('id', '=', vis.domainId)
    const rows = await q.execute()
    return rows.map((r) => ({ id: r.id, name: r.name, description: r.description, enabled: bool(r.enabled) }))
  }

  async updateDomain(ref: string | undefined, patch: { name?: string; description?: string; enabled?: boolean }): Promise<Domain> {
    const cur = await this.getDomain({ id: ref })
    const id = cur.id
    const set: { name?: string; description?: string; enabled?: number } = {}
    if (patch.name !== undefined) set.name = checkName('name', patch.name, NAME_MAX.domain)
    if (patch.description !== undefined) set.description = checkText('description', patch.description, DESCRIPTION_MAX)
    if (patch.enabled !== undefined) {
      if (!patch.enabled && (await this.holdsAdminProject(id))) {
        throw new FailedPrecondition(`domain '${cur.name}' holds the cloud-admin project '${this.adminProjectName}'; disabling it would lock out every cloud administrator`)
      }
      set.enabled = patch.enabled ? 1 : 0
    }
    if (Object.keys(set).length > 0) {
      await this.insertUnique(() => this.db.updateTable('domains').set(set).where('id', '=', id).execute(), `a domain named '${set.name}' already exists`)
    }
    if (cur.enabled && patch.enabled === false) await this.revoke({ domainId: id })
    return this.getDomain({ id })
  }

  async deleteDomain(ref: string | undefined): Promise<void> {
    const cur = await this.getDomain({ id: ref })
    const id = cur.id
    if (cur.enabled) {
      throw new FailedPrecondition(`domain '${cur.name}' is enabled; disable it first (update it with enabled=false), then delete it`)
    }
    if (await this.holdsAdminProject(id)) throw new FailedPrecondition(`domain '${cur.name}' holds the cloud-admin project and cannot be deleted`)
    await this.db.transaction().execute(async (trx) => {
      const projects = trx.selectFrom('projects').select('id').where('domain_id', '=', id)
      await trx.deleteFrom('role_assignments').where('target_type', '=', 'project').where('target_id', 'in', projects).execute()
      await trx.deleteFrom('role_assignments').where('target_type', '=', 'domain').where('target_id', '=', id).execute()
      // Projects and users go by ON DELETE CASCADE; users take their assignments with them.
      await trx.deleteFrom('domains').where('id', '=', id).execute()
    })
    await this.revoke({ domainId: id })
  }

  // ------------------------------------------------------------------ projects

  async createProject(req: { name?: string | undefined; domainId: string; description?: string; enabled?: boolean; id?: string }): Promise<Project> {
    const domain = await this.getDomain({ id: req.domainId })
    const row = {
      id: req.id ?? newId(),
      name: checkName('name', req.name, NAME_MAX.project),
      domain_id: domain.id,
      description: checkText('description', req.description, DESCRIPTION_MAX),
      enabled: req.enabled === false ? 0 : 1,
      created_at: new Date().toISOString(),
    }
    await this.insertUnique(() => this.db.insertInto('projects').values(row).execute(), `a project named '${row.name}' already exists in domain '${domain.name}'`)
    return this.getProject({ id: row.id })
  }

  async getProject(ref: { id?: string; name?: string; domainId?: string }): Promise<Project> {
    const by = exactlyOne({ id: ref.id, name: ref.name }, 'project')
    let q = this.db.selectFrom('projects').selectAll()
    q = by === 'id' ? q.where('id', '=', ref.id!) : q.where('name', '=', ref.name!).where('domain_id', '=', ref.domainId ?? DEFAULT_DOMAIN_ID)
    const row = await q.executeTakeFirst()
    if (!row) throw new NotFound(by === 'id' ? `project ${ref.id} not found` : `project '${ref.name}' not found in domain ${ref.domainId ?? DEFAULT_DOMAIN_ID}`)
    return { id: row.id, name: row.name, domainId: row.domain_id, description: row.description, enabled: bool(row.enabled) }
  }

  async listProjects(filter: { domainId?: string; name?: string; enabled?: boolean; userId?: string }, vis: Visibility): Promise<Project[]> {
    let q = this.db.selectFrom('projects').selectAll().orderBy('name')
    if (filter.domainId) q = q.where('domain_id', '=', filter.domainId)
    if (filter.name) q = q.where('name', '=', filter.name)
    if (filter.enabled !== undefined) q = q.where('enabled', '=', filter.enabled ? 1 : 0)
    const memberOf = (userId: string) =>
      this.db.selectFrom('role_assignments').select('target_id').where('user_id', '=', userId).where('target_type', '=', 'project')
    if (filter.userId) q = q.where('id', 'in', memberOf(filter.userId))
    if (vis.kind === 'domain') q = q.where('domain_id', '=', vis.domainId)
    if (vis.kind === 'own') q = q.where('id', 'in', memberOf(vis.userId))
    const rows = await q.execute()
    return rows.map((r) => ({ id: r.id, name: r.name, domainId: r.domain_id, description: r.description, enabled: bool(r.enabled) }))
  }

  async updateProject(ref: string | undefined, patch: { name?: string; description?: string; enabled?: boolean }): Promise<Project> {
    const cur = await this.getProject({ id: ref })
    const id = cur.id
    const set: { name?: string; description?: string; enabled?: number } = {}
    if (patch.name !== undefined) set.name = checkName('name', patch.name, NAME_MAX.project)
    if (patch.description !== undefined) set.description = checkText('description', patch.description, DESCRIPTION_MAX)
    if (patch.enabled !== undefined) {
      if (!patch.enabled && (await this.isAdminProject(cur))) throw new FailedPrecondition(`project '${cur.name}' is the cloud-admin project; disabling it would lock out every cloud administrator`)
      set.enabled = patch.enabled ? 1 : 0
    }
    if (Object.keys(set).length > 0) {
      await this.insertUnique(() => this.db.updateTable('projects').set(set).where('id', '=', id).execute(), `a project named '${set.name}' already exists in its domain`)
    }
    if (cur.enabled && patch.enabled === false) await this.revoke({ projectId: id })
    return this.getProject({ id })
  }

  async deleteProject(ref: string | undefined): Promise<void> {
    const cur = await this.getProject({ id: ref })
    const id = cur.id
    if (await this.isAdminProject(cur)) throw new FailedPrecondition(`project '${cur.name}' is the cloud-admin project and cannot be deleted`)
    await this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('role_assignments').where('target_type', '=', 'project').where('target_id', '=', id).execute()
      await trx.deleteFrom('projects').where('id', '=', id).execute()
    })
    await this.revoke({ projectId: id })
  }

  // ------------------------------------------------------------------ users

  async createUser(req: {
    name?: string | undefined
    domainId: string
    password?: string
    defaultProjectId?: string
    enabled?: boolean
    description?: string
    email?: string
    id?: string
  }): Promise<User> {
    const domain = await this.getDomain({ id: req.domainId })
    const name = checkName('name', req.name, NAME_MAX.user)
    if (req.defaultProjectId) await this.getProject({ id: req.defaultProjectId })
    const now = new Date().toISOString()
    const row = {
      id: req.id ?? newId(),
      name,
      domain_id: domain.id,
      // An empty hash can never match: such a user cannot authenticate by password.
      password_hash: req.password ? await hashPassword(checkPassword('password', req.password)) : '',
      enabled: req.enabled === false ? 0 : 1,
      default_project_id: req.defaultProjectId || null,
      description: checkText('description', req.description, DESCRIPTION_MAX),
      email: checkEmail('email', req.email),
      password_changed_at: now,
      created_at: now,
    }
    await this.insertUnique(() => this.db.insertInto('users').values(row).execute(), `a user named '${name}' already exists in domain '${domain.name}'`)
    return this.getUser({ id: row.id })
  }

  async getUser(ref: { id?: string; name?: string; domainId?: string }): Promise<User> {
    return toUser(await this.userRow(ref))
  }

  /** The stored row, password hash included: for authentication only. */
  async userRow(ref: { id?: string; name?: string; domainId?: string }) {
    const by = exactlyOne({ id: ref.id, name: ref.name }, 'user')
    let q = this.db.selectFrom('users').selectAll()
    q = by === 'id' ? q.where('id', '=', ref.id!) : q.where('name', '=', ref.name!).where('domain_id', '=', ref.domainId ?? DEFAULT_DOMAIN_ID)
    const row = await q.executeTakeFirst()
    if (!row) throw new NotFound(by === 'id' ? `user ${ref.id} not found` : `user '${ref.name}' not found in domain ${ref.domainId ?? DEFAULT_DOMAIN_ID}`)
    return row
  }

  async listUsers(filter: { domainId?: string; name?: string; enabled?: boolean }, vis: Visibility): Promise<User[]> {
    let q = this.db.selectFrom('users').selectAll().orderBy('name')
    if (filter.domainId) q = q.where('domain_id', '=', filter.domainId)
    if (filter.name) q = q.where('name', '=', filter.name)
    if (filter.enabled !== undefined) q = q.where('enabled', '=', filter.enabled ? 1 : 0)
    if (vis.kind === 'domain') q = q.where('domain_id', '=', vis.domainId)
    if (vis.kind === 'own') q = q.where('id', '=', vis.userId)
    return (await q.execute()).map(toUser)
  }

  async updateUser(
    ref: string | undefined,
    patch: { name?: string; password?: string; enabled?: boolean; defaultProjectId?: string; description?: string; email?: string },
  ): Promise<User> {
    const cur = await this.getUser({ id: ref })
    const id = cur.id
    const set: Partial<{ name: string; password_hash: string; password_changed_at: string; enabled: number; default_project_id: string | null; description: string; email: string }> = {}
    if (patch.name !== undefined) set.name = checkName('name', patch.name, NAME_MAX.user)
    if (patch.password !== undefined) {
      set.password_hash = await hashPassword(checkPassword('password', patch.password))
      set.password_changed_at = new Date().toISOString()
    }
    if (patch.enabled !== undefined) set.enabled = patch.enabled ? 1 : 0
    if (patch.defaultProjectId !== undefined) {
      if (patch.defaultProjectId) await this.getProject({ id: patch.defaultProjectId })
      set.default_project_id = patch.defaultProjectId || null
    }
    if (patch.description !== undefined) set.description = checkText('description', patch.description, DESCRIPTION_MAX)
    if (patch.email !== undefined) set.email = checkEmail('email', patch.email)
    if (Object.keys(set).length > 0) {
      await this.insertUnique(() => this.db.updateTable('users').set(set).where('id', '=', id).execute(), `a user named '${set.name}' already exists in its domain`)
    }
    if ((cur.enabled && patch.enabled === false) || patch.password !== undefined) await this.revoke({ userId: id })
    return this.getUser({ id })
  }

  async deleteUser(ref: string | undefined): Promise<void> {
    const id = (await this.getUser({ id: ref })).id
    await this.db.deleteFrom('users').where('id', '=', id).execute()
    await this.revoke({ userId: id })
  }

  // ------------------------------------------------------------------ roles

  async createRole(req: { name?: string | undefined; description?: string; id?: string }): Promise<Role> {
    const row = { id: req.id ?? newId(), name: checkName('name', req.name, NAME_MAX.role), description: checkText('description', req.description, DESCRIPTION_MAX) }
    await this.insertUnique(() => this.db.insertInto('roles').values(row).execute(), `a role named '${row.name}' already exists`)
    return this.getRole({ id: row.id })
  }

  async getRole(ref: { id?: string; name?: string }): Promise<Role> {
    const by = exactlyOne({ id: ref.id, name: ref.name }, 'role')
    const row = await this.db
      .selectFrom('roles')
      .selectAll()
      .where(by === 'id' ? 'id' : 'name', '=', (by === 'id' ? ref.id : ref.name)!)
      .executeTakeFirst()
    if (!row) throw new NotFound(`role ${by === 'id' ? ref.id : `'${ref.name}'`} not found`)
    const implies = await this.db
      .selectFrom('role_implications')
      .innerJoin('roles', 'roles.id', 'role_implications.implied_role_id')
      .select(['roles.id', 'roles.name'])
      .where('prior_role_id', '=', row.id)
      .orderBy('roles.name')
      .execute()
    return { id: row.id, name: row.name, description: row.description, implies }
  }

  async listRoles(filter: { name?: string }): Promise<Role[]> {
    let q = this.db.selectFrom('roles').select('id').orderBy('name')
    if (filter.name) q = q.where('name', '=', filter.name)
    const rows = await q.execute()
    return Promise.all(rows.map((r) => this.getRole({ id: r.id })))
  }

  async updateRole(ref: string | undefined, patch: { name?: string; description?: string }): Promise<Role> {
    const id = (await this.getRole({ id: ref })).id
    const set: { name?: string; description?: string } = {}
    if (patch.name !== undefined) set.name = checkName('name', patch.name, NAME_MAX.role)
    if (patch.description !== undefined) set.description = checkText('description', patch.description, DESCRIPTION_MAX)
    if (Object.keys(set).length > 0) {
      await this.insertUnique(() => this.db.updateTable('roles').set(set).where('id', '=', id).execute(), `a role named '${set.name}' already exists`)
    }
    return this.getRole({ id })
  }

  async deleteRole(ref: string | undefined): Promise<void> {
    const role = await this.getRole({ id: ref })
    const id = role.id
    if (['admin', 'member', 'reader'].includes(role.name)) throw new FailedPrecondition(`role '${role.name}' is a default role that policy relies on; it cannot be deleted`)
    await this.db.deleteFrom('roles').where('id', '=', id).execute()
    await this.revoke({ roleId: id })
  }

  async createImpliedRole(priorId: string | undefined, impliedId: string | undefined): Promise<Role> {
    const prior = await this.getRole({ id: priorId })
    const implied = await this.getRole({ id: impliedId })
    if (prior.id === implied.id) throw new InvalidArgument('a role cannot imply itself', { field: 'implied_role_id' })
    const reachable = await this.expandRoles([implied.id])
    if (reachable.some((r) => r.id === prior.id)) throw new InvalidArgument(`'${implied.name}' already implies '${prior.name}'; the implication would make a cycle`, { field: 'implied_role_id' })
    await this.insertUnique(
      () => this.db.insertInto('role_implications').values({ prior_role_id: prior.id, implied_role_id: implied.id }).execute(),
      `'${prior.name}' already implies '${implied.name}'`,
    )
    return this.getRole({ id: prior.id })
  }

  async deleteImpliedRole(priorId: string | undefined, impliedId: string | undefined): Promise<void> {
    const res = await this.db.deleteFrom('role_implications').where('prior_role_id', '=', priorId ?? '').where('implied_role_id', '=', impliedId ?? '').executeTakeFirst()
    if (Number(res.numDeletedRows) === 0) throw new NotFound(`role ${priorId} does not imply role ${impliedId}`)
    // Tokens carry expanded roles: the ones holding the prior role may now carry too much.
    await this.revoke({ roleId: priorId! })
  }

  /** The closure of the given roles under implication (the given ones included). */
  async expandRoles(roleIds: string[]): Promise<NamedRef[]> {
    if (roleIds.length === 0) return []
    const rows = await sql<{ id: string; name: string }>`
      WITH RECURSIVE closure(id) AS (
        SELECT id FROM roles WHERE id IN (${sql.join(roleIds)})
        UNION SELECT ri.implied_role_id FROM role_implications ri JOIN closure c ON ri.prior_role_id = c.id
      )
      SELECT roles.id, roles.name FROM roles JOIN closure ON closure.id = roles.id ORDER BY roles.name`.execute(this.db)
    return rows.rows
  }

  // ------------------------------------------------------------------ assignments

  async grantRole(req: { roleId?: string | undefined; userId?: string | undefined } & Target): Promise<void> {
    const target = await this.resolveTarget(req)
    const role = await this.getRole({ id: req.roleId })
    const user = await this.getUser({ id: req.userId })
    await this.db
      .insertInto('role_assignments')
      .values({ role_id: role.id, user_id: user.id, target_type: target.type, target_id: target.id })
      .onConflict((oc) => oc.doNothing())
      .execute()
  }

  async revokeRole(req: { roleId?: string | undefined; userId?: string | undefined } & Target): Promise<void> {
    const target = await this.resolveTarget(req)
    const res = await this.db
      .deleteFrom('role_assignments')
      .where('role_id', '=', req.roleId ?? '')
      .where('user_id', '=', req.userId ?? '')
      .where('target_type', '=', target.type)
      .where('target_id', '=', target.id)
      .executeTakeFirst()
    if (Number(res.numDeletedRows) === 0) throw new NotFound(`user ${req.userId} has no role ${req.roleId} on ${target.type} ${target.id}`)
    await this.revoke(target.type === 'project' ? { userId: req.userId!, projectId: target.id } : { userId: req.userId!, scopeDomainId: target.id })
  }

  async listRoleAssignments(
    filter: { userId?: string; roleId?: string; projectId?: string; domainId?: string; effective?: boolean },
    vis: Visibility,
  ): Promise<RoleAssignment[]> {
    let q = this.db
      .selectFrom('role_assignments as ra')
      .innerJoin('users as u', 'u.id', 'ra.user_id')
      .innerJoin('domains as ud', 'ud.id', 'u.domain_id')
      .innerJoin('roles as r', 'r.id', 'ra.role_id')
      .leftJoin('projects as p', (j) => j.onRef('p.id', '=', 'ra.target_id').on('ra.target_type', '=', 'project'))
      .leftJoin('domains as pd', 'pd.id', 'p.domain_id')
      .leftJoin('domains as d', (j) => j.onRef('d.id', '=', 'ra.target_id').on('ra.target_type', '=', 'domain'))
      .select([
        'r.id as role_id', 'r.name as role_name', 'u.id as user_id', 'u.name as user_name', 'ud.id as ud_id', 'ud.name as ud_name',
        'ra.target_type', 'p.id as p_id', 'p.name as p_name', 'pd.id as pd_id', 'pd.name as pd_name', 'd.id as d_id', 'd.name as d_name',
      ])
      .orderBy(['u.name', 'r.name'])
    if (filter.userId) q = q.where('ra.user_id', '=', filter.userId)
    if (filter.projectId) q = q.where('ra.target_type', '=', 'project').where('ra.target_id', '=', filter.projectId)
    if (filter.domainId) q = q.where('ra.target_type', '=', 'domain').where('ra.target_id', '=', filter.domainId)
    if (vis.kind === 'domain') q = q.where((eb) => eb.or([eb('u.domain_id', '=', vis.domainId), eb('p.domain_id', '=', vis.domainId), eb('d.id', '=', vis.domainId)]))
    if (vis.kind === 'own') q = q.where('ra.user_id', '=', vis.userId)
    const rows = await q.execute()
    const out: RoleAssignment[] = []
    for (const row of rows) {
      const roles = filter.effective ? await this.expandRoles([row.role_id]) : [{ id: row.role_id, name: row.role_name }]
      for (const role of roles) {
        if (filter.roleId && role.id !== filter.roleId) continue
        const a: RoleAssignment = { role, user: { id: row.user_id, name: row.user_name, domain: { id: row.ud_id, name: row.ud_name } } }
        if (row.target_type === 'project' && row.p_id) a.project = { id: row.p_id, name: row.p_name ?? '', domain: { id: row.pd_id ?? '', name: row.pd_name ?? '' } }
        if (row.target_type === 'domain' && row.d_id) a.domain = { id: row.d_id, name: row.d_name ?? '' }
        if (!out.some((o) => o.role.id === a.role.id && o.user.id === a.user.id && o.project?.id === a.project?.id && o.domain?.id === a.domain?.id)) out.push(a)
      }
    }
    return out
  }

  /** Role ids a user holds directly on a project or domain. */
  async directRoleIds(userId: string, target: { type: 'project' | 'domain'; id: string }): Promise<string[]> {
    const rows = await this.db
      .selectFrom('role_assignments')
      .select('role_id')
      .where('user_id', '=', userId)
      .where('target_type', '=', target.type)
      .where('target_id', '=', target.id)
      .execute()
    return rows.map((r) => r.role_id)
  }

  async isAdminProject(p: { name: string; domainId: string }): Promise<boolean> {
    return p.name === this.adminProjectName && p.domainId === DEFAULT_DOMAIN_ID
  }

  // ------------------------------------------------------------------ helpers

  private async holdsAdminProject(domainId: string): Promise<boolean> {
    return domainId === DEFAULT_DOMAIN_ID && (await this.db.selectFrom('projects').select('id').where('domain_id', '=', domainId).where('name', '=', this.adminProjectName).executeTakeFirst()) !== undefined
  }

  private async resolveTarget(t: Target): Promise<{ type: 'project' | 'domain'; id: string }> {
    const which = exactlyOne({ project_id: t.projectId, domain_id: t.domainId }, 'role assignment target')
    if (which === 'project_id') return { type: 'project', id: (await this.getProject({ id: t.projectId! })).id }
    return { type: 'domain', id: (await this.getDomain({ id: t.domainId! })).id }
  }

  private async insertUnique(op: () => Promise<unknown>, message: string): Promise<void> {
    await unlessDuplicate(op, () => new AlreadyExists(message))
  }

}
