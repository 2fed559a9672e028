/**
 * Who is acting on networking resources, and what they may see and change
 * (Neutron's `admin_or_owner` rules). The policy table already checked the
 * caller's role in its own project; here the resource's owner is compared.
 * Invisible things are NOT_FOUND; visible things the caller may not change
 * are PERMISSION_DENIED.
 */
import { NotFound, PermissionDenied } from '../../proto/errors.js'
import type { AuthContext } from '../identity/model.js'
import type { Trx } from '../quota/quota.js'
import type { NetworkTable } from '../store/schema.js'

export interface Actor {
  isAdmin: boolean
  /** The project of a project-scoped token. */
  projectId: string | undefined
  /** A domain-scoped reader sees (never changes) the resources of its domain's projects. */
  readerDomainId: string | undefined
}

export function actorOf(auth: AuthContext): Actor {
  return {
    isAdmin: auth.isCloudAdmin,
    projectId: auth.projectId,
    readerDomainId: auth.domainId && auth.roles.has('reader') ? auth.domainId : undefined,
  }
}

/** What a listing read for this actor depends on: a key for kept listings (every field of Actor). */
export function actorKey(actor: Actor): string {
  return `${actor.isAdmin ? 'admin' : 'member'} ${actor.projectId ?? ''} ${actor.readerDomainId ?? ''}`
}

/** The project a new resource belongs to: the caller's, or (admins) the one named. */
export function owningProject(actor: Actor, requested: string | undefined): string {
  const id = requested || actor.projectId
  if (!id) throw new PermissionDenied('networking resources belong to projects: use a project-scoped token', { field: 'project_id' })
  if (id !== actor.projectId && !actor.isAdmin) throw new PermissionDenied(`only admins create resources for another project (${id})`, { field: 'project_id' })
  return id
}

/** Projects whose resources the actor sees as an owner would: undefined means all. */
export async function readableProjects(db: Trx, actor: Actor): Promise<string[] | undefined> {
  if (actor.isAdmin) return undefined
  const out = actor.projectId ? [actor.projectId] : []
  if (actor.readerDomainId) {
    const rows = await db.selectFrom('projects').select('id').where('domain_id', '=', actor.readerDomainId).execute()
    out.push(...rows.map((r) => r.id))
  }
  return out
}

export async function canRead(db: Trx, actor: Actor, projectId: string): Promise<boolean> {
  if (actor.isAdmin || actor.projectId === projectId) return true
  if (!actor.readerDomainId) return false
  const p = await db.selectFrom('projects').select('domain_id').where('id', '=', projectId).executeTakeFirst()
  return p?.domain_id === actor.readerDomainId
}

export function canModify(actor: Actor, projectId: string): boolean {
  return actor.isAdmin || (actor.projectId !== undefined && actor.projectId === projectId)
}

export function requireModify(actor: Actor, projectId: string, what: string): void {
  if (!canModify(actor, projectId)) throw new PermissionDenied(`${what} belongs to another project; only its owner or an admin may change it`)
}

/** Shared and external networks are visible to everyone. */
export async function networkVisible(db: Trx, actor: Actor, n: Pick<NetworkTable, 'project_id' | 'shared' | 'router_external'>): Promise<boolean> {
  return n.shared !== 0 || n.router_external !== 0 || (await canRead(db, actor, n.project_id))
}

/** Loads a network the actor can see, or throws NotFound naming the field. */
export async function loadNetwork(db: Trx, actor: Actor, id: string | undefined, field = 'network_id'): Promise<NetworkTable> {
  const row = id ? await db.selectFrom('networks').selectAll().where('id', '=', id).executeTakeFirst() : undefined
  if (!row || !(await networkVisible(db, actor, row))) throw new NotFound(`network ${id || "''"} not found`, { field })
  return row
}

/** Networks a project's servers may attach to without naming one: its own and the shared ones. */
export async function networksUsableBy(db: Trx, projectId: string): Promise<Array<{ id: string; name: string }>> {
  return db.selectFrom('networks').select(['id', 'name']).where((eb) => eb.or([eb('project_id', '=', projectId), eb('shared', '=', 1)])).execute()
}

export const now = () => new Date().toISOString()
