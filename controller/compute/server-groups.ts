/**
 * Server groups (Nova os-server-groups, 2.64 shape): a name, one policy —
 * affinity, anti-affinity, soft-affinity, soft-anti-affinity — and for
 * anti-affinity `max_server_per_host`. Servers join a group at create (the
 * `group` scheduler hint) and the scheduler's group filters and weighers
 * place them by its policy. Quotas: `server_groups` per project,
 * `server_group_members` per group.
 *
 * Members are placed one group at a time ({@link ServerGroupCatalog.serialize}):
 * two creates into one anti-affinity group cannot both pick the same host,
 * where Nova needs a late check on the compute host and a reschedule.
 */
import { randomUUID } from 'node:crypto'
import { Conflict, InvalidArgument, NotFound, PermissionDenied, ResourceExhausted } from '../../proto/errors.js'
import { isUuid } from '../../proto/ids.js'
import type { Db } from '../store/db.js'
import { withSessionLock } from '../store/engine.js'
import type { ServerGroupTable } from '../store/schema.js'
import type { QuotaEngine, Trx } from '../quota/quota.js'
import { checkName } from '../identity/validate.js'
import type { GroupSpec } from '../scheduler/model.js'
import type { ServerCaller } from './server-model.js'

export const GROUP_POLICIES = ['affinity', 'anti-affinity', 'soft-affinity', 'soft-anti-affinity'] as const
export type GroupPolicy = (typeof GROUP_POLICIES)[number]

export interface ServerGroupView {
  id: string
  name: string
  policy: GroupPolicy
  maxServerPerHost: number
  members: string[]
  projectId: string
  userId: string
  createdAt: Date
}

export class ServerGroupCatalog {
  /** The tail of each group's queue of placements. */
  private readonly queues = new Map<string, Promise<unknown>>()

  constructor(
    private readonly db: Db,
    private readonly quota: QuotaEngine,
  ) {
    quota.registerRowCount('server_groups', 'server_groups')
  }

  async create(req: { name?: string; policy?: string; maxServerPerHost?: number }, caller: ServerCaller): Promise<ServerGroupView> {
    if (!caller.projectId) throw new InvalidArgument('a server group belongs to a project: use a project-scoped token')
    const name = checkName('name', req.name, 255)
    const policy = req.policy as GroupPolicy
    if (!GROUP_POLICIES.includes(policy)) throw new InvalidArgument(`policy must be one of ${GROUP_POLICIES.join(', ')}, got '${req.policy ?? ''}'`, { field: 'policy' })
    const max = req.maxServerPerHost || 1
    if (req.maxServerPerHost && policy !== 'anti-affinity') throw new InvalidArgument(`max_server_per_host is a rule of anti-affinity, not of ${policy}`, { field: 'max_server_per_host' })
    if (!Number.isInteger(max) || max < 1) throw new InvalidArgument(`max_server_per_host must be a whole number ≥ 1, got ${req.maxServerPerHost}`, { field: 'max_server_per_host' })
    const row: ServerGroupTable = { id: randomUUID(), name, policy, max_server_per_host: max, project_id: caller.projectId, user_id: caller.userId, created_at: new Date().toISOString() }
    await this.db.transaction().execute(async (trx) => {
      await this.quota.check(trx, { projectId: caller.projectId! }, { server_groups: 1 })
      await trx.insertInto('server_groups').values(row).execute()
    })
    return this.view(row, [])
  }

  async get(ref: string | undefined, caller: ServerCaller): Promise<ServerGroupView> {
    const row = await this.find(this.db, ref, caller)
    return this.view(row, await this.members(this.db, row.id))
  }

  async list(allProjects: boolean, caller: ServerCaller): Promise<ServerGroupView[]> {
    if (allProjects && !caller.isAdmin) throw new PermissionDenied('only cloud admins list the server groups of every project', { field: 'all_projects' })
    let q = this.db.selectFrom('server_groups').selectAll().orderBy('created_at').orderBy('id')
    if (!allProjects) q = q.where('project_id', '=', caller.projectId ?? '')
    const rows = await q.execute()
    const members = rows.length
      ? await this.db.selectFrom('servers').select(['uuid', 'server_group_id']).where('server_group_id', 'in', rows.map((r) => r.id)).where('deleted', '=', 0).orderBy('created_at').execute()
      : []
    return rows.map((r) => this.view(r, members.filter((m) => m.server_group_id === r.id).map((m) => m.uuid)))
  }

  /** Deletes the group; its members keep running, no longer in a group. */
  async delete(ref: string | undefined, caller: ServerCaller): Promise<void> {
    const row = await this.find(this.db, ref, caller)
    if (!caller.isAdmin && !(caller.canWrite && row.project_id === caller.projectId)) throw new PermissionDenied(`server group ${row.id} can be deleted only by members of its project or a cloud admin`)
    await this.serialize(row.id, () =>
      this.db.transaction().execute(async (trx) => {
        await trx.updateTable('servers').set({ server_group_id: '' }).where('server_group_id', '=', row.id).execute()
        await trx.deleteFrom('server_groups').where('id', '=', row.id).execute()
      }),
    )
  }

  /** The id of the group a create names, if the caller may put servers in it. */
  async resolve(ref: string, caller: ServerCaller): Promise<string> {
    const row = await this.find(this.db, ref, caller, 'group')
    if (!caller.isAdmin && row.project_id !== caller.projectId) throw new PermissionDenied(`server group ${row.id} belongs to another project`, { field: 'group' })
    return row.id
  }

  /**
   * The group as the scheduler needs it, read when the request's turn has come
   * (see {@link serialize}); `room`: how many members may still join (-1: no limit).
   * @throws InvalidArgument when not even `joining` more fit its member quota.
   */
  async forCreate(groupId: string, caller: ServerCaller, joining: number): Promise<{ spec: GroupSpec; room: number }> {
    const row = await this.find(this.db, groupId, caller, 'group')
    const hosts = await this.db.selectFrom('servers').select('host').where('server_group_id', '=', row.id).where('deleted', '=', 0).execute()
    const limit = (await this.quota.limits(this.db, row.project_id)).server_group_members ?? -1
    if (limit >= 0 && hosts.length + joining > limit) {
      throw new ResourceExhausted(`quota exceeded for server_group_members: server group ${row.name} has ${hosts.length} of ${limit} members; ${joining} more do not fit`, { field: 'group' })
    }
    return {
      spec: { id: row.id, policy: row.policy as GroupPolicy, maxServerPerHost: row.max_server_per_host, memberHosts: hosts.flatMap((h) => (h.host ? [h.host] : [])) },
      room: limit >= 0 ? limit - hosts.length : -1,
    }
  }

  /**
   * Runs `fn` after every earlier placement into `groupId` has finished: in
   * this controller by in-process order, and across controllers (PostgreSQL)
   * under the group's session lock, taken once the local turn has come so
   * that waiting requests hold no database connection.
   */
  serialize<T>(groupId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.queues.get(groupId) ?? Promise.resolve()
    const locked = () => withSessionLock(this.db, `server-group:${groupId}`, fn)
    const run = prev.then(locked, locked)
    const tail = run.catch(() => {})
    this.queues.set(groupId, tail)
    void tail.then(() => {
      if (this.queues.get(groupId) === tail) this.queues.delete(groupId)
    })
    return run
  }

  private async find(db: Trx, ref: string | undefined, caller: ServerCaller, field = 'id'): Promise<ServerGroupTable> {
    if (!ref) throw new InvalidArgument('a server group id or name is required', { field })
    let q = db.selectFrom('server_groups').selectAll()
    q = isUuid(ref) ? q.where('id', '=', ref) : q.where('name', '=', ref)
    if (!caller.isAdmin) q = q.where('project_id', '=', caller.projectId ?? '')
    const rows = await q.limit(2).execute()
    if (rows.length > 1) throw new Conflict(`several server groups are named '${ref}'; use the id`, { field })
    if (!rows[0]) throw new NotFound(`server group '${ref}' not found`, { field })
    return rows[0]
  }

  private view(r: ServerGroupTable, members: string[]): ServerGroupView {
    return { id: r.id, name: r.name, policy: r.policy as GroupPolicy, maxServerPerHost: r.max_server_per_host, members, projectId: r.project_id, userId: r.user_id, createdAt: new Date(r.created_at) }
  }

  private async members(db: Trx, groupId: string): Promise<string[]> {
    return (await db.selectFrom('servers').select('uuid').where('server_group_id', '=', groupId).where('deleted', '=', 0).orderBy('created_at').execute()).map((r) => r.uuid)
  }
}
