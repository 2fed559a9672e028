/**
 * Security groups and their rules (Neutron semantics). Every project gets a
 * `default` group on first use (listing groups, creating a port or a rule),
 * with egress allow-all and ingress from its own members; new groups get the
 * egress rules. Duplicate rules are ALREADY_EXISTS; `default` cannot be
 * renamed or deleted (admins may delete it); a group in use by a port cannot
 * be deleted. Groups and rules count against their quotas atomically.
 */
import { randomUUID } from 'node:crypto'
import { AlreadyExists, Conflict, FailedPrecondition, InvalidArgument, NotFound } from '../../proto/errors.js'
import { isUniqueViolation, type Db } from '../store/db.js'
import { KeptListings } from '../store/kept-listings.js'
import { lockNames } from '../store/engine.js'
import type { SecurityGroupRuleTable, SecurityGroupTable } from '../store/schema.js'
import { projectLock, type QuotaEngine, type Trx } from '../quota/quota.js'
import { checkText } from '../identity/validate.js'
import { actorKey, canRead, now, owningProject, readableProjects, requireModify, type Actor } from './access.js'
import { defaultRules, normaliseRule, type NormalRule, type RuleInput } from './sg-rules.js'

export interface SecurityGroupRule {
  id: string
  securityGroupId: string
  projectId: string
  direction: string
  ethertype: string
  protocol: string
  portRangeMin: number | undefined
  portRangeMax: number | undefined
  remoteIpPrefix: string
  remoteGroupId: string
  description: string
  createdAt: Date
}

export interface SecurityGroup {
  id: string
  name: string
  description: string
  projectId: string
  stateful: boolean
  securityGroupRules: SecurityGroupRule[]
  revisionNumber: number
  createdAt: Date
  updatedAt: Date
}

export class SecurityGroupCatalog {
  /** Listings by who asks and the filters, kept while the database stands still. */
  private readonly ruleListings: KeptListings<SecurityGroupRule>

  /** Listings by who asks and the filters, kept while the database stands still. */
  private readonly groupListings: KeptListings<SecurityGroup>

  /** Called after a rule is added or removed (the hosts' filtering follows; see bus.firewallChanged). */
  onChange: () => void = () => undefined

  constructor(
    private readonly db: Db,
    private readonly quota: QuotaEngine,
  ) {
    this.groupListings = new KeptListings(db)
    this.ruleListings = new KeptListings(db)
    quota.registerRowCount('security_groups', 'security_groups')
    quota.registerRowCount('security_group_rules', 'security_group_rules')
  }

  /** The project's `default` group id, created (with Neutron's default rules) if missing. Call inside a transaction. */
  async ensureDefault(trx: Trx, projectId: string): Promise<string> {
    // Two first uses at once (other connections, on PostgreSQL) would both find none and both insert it.
    await lockNames(trx, [projectLock(projectId)])
    const found = await trx.selectFrom('security_groups').select('id').where('project_id', '=', projectId).where('is_default', '=', 1).executeTakeFirst()
    if (found) return found.id
    const id = randomUUID()
    const ts = now()
    await trx.insertInto('security_groups').values({ id, project_id: projectId, name: 'default', description: 'Default security group', stateful: 1, is_default: 1, revision_number: 1, created_at: ts, updated_at: ts }).execute()
    await this.insertRules(trx, id, projectId, defaultRules(id, true), ts)
    return id
  }

  /** The caller's project has its `default` group before a listing (Neutron makes it on first use). */
  private async ensureDefaultOf(actor: Actor): Promise<void> {
    const projectId = actor.projectId
    if (!projectId) return
    // Almost always there: a read, not a write transaction (which would also move the change stamp and spoil kept listings).
    const found = await this.db.selectFrom('security_groups').select('id').where('project_id', '=', projectId).where('is_default', '=', 1).executeTakeFirst()
    if (!found) await this.db.transaction().execute((trx) => this.ensureDefault(trx, projectId))
  }

  /** The id if `id` is a security group of `projectId` (no visibility rules: the caller checked the project). */
  async idInProject(id: string, projectId: string): Promise<string | undefined> {
    return (await this.db.selectFrom('security_groups').select('id').where('id', '=', id).where('project_id', '=', projectId).executeTakeFirst())?.id
  }

  /** Names of the groups by id (groups since deleted are absent). */
  async namesOf(ids: string[]): Promise<Map<string, string>> {
    if (!ids.length) return new Map()
    return new Map((await this.db.selectFrom('security_groups').select(['id', 'name']).where('id', 'in', ids).execute()).map((g) => [g.id, g.name]))
  }

  private async insertRules(trx: Trx, groupId: string, projectId: string, rules: NormalRule[], ts: string, description = ''): Promise<string[]> {
    const rows = rules.map((r) => ({
      id: randomUUID(), security_group_id: groupId, project_id: projectId, direction: r.direction, ethertype: r.ethertype, protocol: r.protocol,
      port_range_min: r.portRangeMin, port_range_max: r.portRangeMax, remote_ip_prefix: r.remoteIpPrefix, remote_group_id: r.remoteGroupId,
      description, canonical: r.canonical, created_at: ts,
    }))
    if (rows.length) await trx.insertInto('security_group_rules').values(rows).execute()
    return rows.map((r) => r.id)
  }

  async create(req: { name?: string; description?: string; stateful?: boolean; projectId?: string }, actor: Actor): Promise<SecurityGroup> {
    const projectId = owningProject(actor, req.projectId)
    const name = checkText('name', req.name, 255)
    const description = checkText('description', req.description, 255)
    if (name === 'default') throw new AlreadyExists('every project has its own `default` security group; choose another name', { field: 'name' })
    const id = randomUUID()
    const ts = now()
    await this.db.transaction().execute(async (trx) => {
      await this.ensureDefault(trx, projectId)
      await this.quota.check(trx, { projectId }, { security_groups: 1 })
      await trx.insertInto('security_groups').values({ id, project_id: projectId, name, description, stateful: req.stateful === false ? 0 : 1, is_default: 0, revision_number: 1, created_at: ts, updated_at: ts }).execute()
      await this.insertRules(trx, id, projectId, defaultRules(id, false), ts)
    })
    return this.get({ id }, actor)
  }

  private async load(db: Trx, id: string | undefined, actor: Actor, field = 'id'): Promise<SecurityGroupTable> {
    const row = id ? await db.selectFrom('security_groups').selectAll().where('id', '=', id).executeTakeFirst() : undefined
    if (!row || !(await canRead(db, actor, row.project_id))) throw new NotFound(`security group ${id || "''"} not found`, { field })
    return row
  }

  async get(ref: { id?: string; name?: string }, actor: Actor): Promise<SecurityGroup> {
    if (ref.id) return this.toGroup(await this.load(this.db, ref.id, actor))
    if (!ref.name) throw new InvalidArgument('give the security group id or name', { field: 'id' })
    const found = await this.list({ name: ref.name }, actor)
    if (found.length === 0) throw new NotFound(`security group '${ref.name}' not found`, { field: 'name' })
    if (found.length > 1) throw new InvalidArgument(`${found.length} security groups are named '${ref.name}'; use the id`, { field: 'name' })
    return found[0]!
  }

  async list(filter: { name?: string; projectId?: string }, actor: Actor): Promise<readonly SecurityGroup[]> {
    return this.groupListings.list(`${actorKey(actor)} ${JSON.stringify(filter)}`, () => this.read(filter, actor))
  }

  private async read(filter: { name?: string; projectId?: string }, actor: Actor): Promise<SecurityGroup[]> {
    await this.ensureDefaultOf(actor)
    let q = this.db.selectFrom('security_groups').selectAll().orderBy('created_at').orderBy('id')
    if (filter.name) q = q.where('name', '=', filter.name)
    if (filter.projectId) q = q.where('project_id', '=', filter.projectId)
    const projects = await readableProjects(this.db, actor)
    if (projects) q = q.where('project_id', 'in', projects.length ? projects : [''])
    const rows = await q.execute()
    return Promise.all(rows.map((r) => this.toGroup(r)))
  }

  async update(id: string | undefined, patch: { name?: string; description?: string; stateful?: boolean }, actor: Actor): Promise<SecurityGroup> {
    const cur = await this.load(this.db, id, actor)
    requireModify(actor, cur.project_id, `security group ${cur.id}`)
    const set: Partial<SecurityGroupTable> = {}
    if (patch.name !== undefined) {
      const name = checkText('name', patch.name, 255)
      if (cur.is_default && name !== 'default') throw new FailedPrecondition('the `default` security group cannot be renamed', { field: 'name' })
      if (!cur.is_default && name === 'default') throw new AlreadyExists('`default` is the name of the project\'s default group', { field: 'name' })
      set.name = name
    }
    if (patch.description !== undefined) set.description = checkText('description', patch.description, 255)
    if (patch.stateful !== undefined) set.stateful = patch.stateful ? 1 : 0
    await this.db.transaction().execute(async (trx) => {
      if (patch.stateful !== undefined && (patch.stateful ? 1 : 0) !== cur.stateful) {
        const used = await trx.selectFrom('port_security_groups').select('port_id').where('security_group_id', '=', cur.id).executeTakeFirst()
        if (used) throw new Conflict(`security group ${cur.id} is used by port ${used.port_id}; stateful cannot change while in use`, { field: 'stateful' })
      }
      await trx.updateTable('security_groups').set({ ...set, revision_number: cur.revision_number + 1, updated_at: now() }).where('id', '=', cur.id).execute()
    })
    return this.get({ id: cur.id }, actor)
  }

  async delete(id: string | undefined, actor: Actor): Promise<void> {
    const cur = await this.load(this.db, id, actor)
    requireModify(actor, cur.project_id, `security group ${cur.id}`)
    if (cur.is_default && !actor.isAdmin) throw new FailedPrecondition('the `default` security group cannot be deleted')
    await this.db.transaction().execute(async (trx) => {
      const used = await trx.selectFrom('port_security_groups').select('port_id').where('security_group_id', '=', cur.id).executeTakeFirst()
      if (used) throw new Conflict(`security group ${cur.id} is in use by port ${used.port_id}`)
      await trx.deleteFrom('security_groups').where('id', '=', cur.id).execute()
    })
  }

  /** The groups a port of `projectId` gets: the named ones (which must be the project's), or `default`. */
  async forPort(trx: Trx, projectId: string, ids: string[] | undefined): Promise<string[]> {
    if (ids === undefined) return [await this.ensureDefault(trx, projectId)]
    const out: string[] = []
    for (const [i, id] of ids.entries()) {
      const g = await trx.selectFrom('security_groups').select(['id', 'project_id']).where('id', '=', id).executeTakeFirst()
      if (!g || g.project_id !== projectId) throw new NotFound(`security group ${id} not found in project ${projectId}`, { field: `security_groups[${i}]` })
      if (!out.includes(g.id)) out.push(g.id)
    }
    return out
  }

  async createRule(req: RuleInput & { securityGroupId?: string; description?: string }, actor: Actor): Promise<SecurityGroupRule> {
    const rule = normaliseRule(req)
    const description = checkText('description', req.description, 255)
    let ruleId = ''
    try {
      await this.db.transaction().execute(async (trx) => {
        if (actor.projectId) await this.ensureDefault(trx, actor.projectId)
        const group = await this.load(trx, req.securityGroupId, actor, 'security_group_id')
        requireModify(actor, group.project_id, `security group ${group.id}`)
        if (rule.remoteGroupId) {
          const remote = await trx.selectFrom('security_groups').select('project_id').where('id', '=', rule.remoteGroupId).executeTakeFirst()
          if (!remote || !(await canRead(trx, actor, remote.project_id))) throw new NotFound(`remote security group ${rule.remoteGroupId} not found`, { field: 'remote_group_id' })
        }
        const dup = await trx.selectFrom('security_group_rules').select('id').where('security_group_id', '=', group.id).where('canonical', '=', rule.canonical).executeTakeFirst()
        if (dup) throw new AlreadyExists(`security group ${group.id} already has this rule (${dup.id})`)
        await this.quota.check(trx, { projectId: group.project_id }, { security_group_rules: 1 })
        ;[ruleId] = (await this.insertRules(trx, group.id, group.project_id, [rule], now(), description)) as [string]
        await trx.updateTable('security_groups').set((eb) => ({ revision_number: eb('revision_number', '+', 1), updated_at: now() })).where('id', '=', group.id).execute()
      })
    } catch (err) {
      if (isUniqueViolation(err)) throw new AlreadyExists(`security group ${req.securityGroupId} already has this rule`, { cause: err })
      throw err
    }
    this.onChange()
    const row = await this.db.selectFrom('security_group_rules').selectAll().where('id', '=', ruleId).executeTakeFirstOrThrow()
    return toRule(row)
  }

  async listRules(filter: { securityGroupId?: string; direction?: string; ethertype?: string; protocol?: string }, actor: Actor): Promise<readonly SecurityGroupRule[]> {
    return this.ruleListings.list(`${actorKey(actor)} ${JSON.stringify(filter)}`, () => this.readRules(filter, actor))
  }

  private async readRules(filter: { securityGroupId?: string; direction?: string; ethertype?: string; protocol?: string }, actor: Actor): Promise<SecurityGroupRule[]> {
    await this.ensureDefaultOf(actor)
    let q = this.db.selectFrom('security_group_rules').selectAll().orderBy('created_at').orderBy('id')
    if (filter.securityGroupId) q = q.where('security_group_id', '=', filter.securityGroupId)
    if (filter.direction) q = q.where('direction', '=', filter.direction)
    if (filter.ethertype) q = q.where('ethertype', '=', filter.ethertype)
    if (filter.protocol) q = q.where('protocol', '=', filter.protocol)
    const projects = await readableProjects(this.db, actor)
    if (projects) q = q.where('project_id', 'in', projects.length ? projects : [''])
    return (await q.execute()).map(toRule)
  }

  async deleteRule(id: string | undefined, actor: Actor): Promise<void> {
    const row = id ? await this.db.selectFrom('security_group_rules').select(['id', 'project_id', 'security_group_id']).where('id', '=', id).executeTakeFirst() : undefined
    if (!row || !(await canRead(this.db, actor, row.project_id))) throw new NotFound(`security group rule ${id || "''"} not found`, { field: 'id' })
    requireModify(actor, row.project_id, `security group rule ${row.id}`)
    await this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('security_group_rules').where('id', '=', row.id).execute()
      await trx.updateTable('security_groups').set((eb) => ({ revision_number: eb('revision_number', '+', 1), updated_at: now() })).where('id', '=', row.security_group_id).execute()
    })
    this.onChange()
  }

  private async toGroup(r: SecurityGroupTable): Promise<SecurityGroup> {
    const rules = await this.db.selectFrom('security_group_rules').selectAll().where('security_group_id', '=', r.id).orderBy('created_at').orderBy('id').execute()
    return {
      id: r.id,
      name: r.name,
      description: r.description,
      projectId: r.project_id,
      stateful: r.stateful !== 0,
      securityGroupRules: rules.map(toRule),
      revisionNumber: r.revision_number,
      createdAt: new Date(r.created_at),
      updatedAt: new Date(r.updated_at),
    }
  }
}

function toRule(r: SecurityGroupRuleTable): SecurityGroupRule {
  return {
    id: r.id,
    securityGroupId: r.security_group_id,
    projectId: r.project_id,
    direction: r.direction,
    ethertype: r.ethertype,
    protocol: r.protocol ?? '',
    portRangeMin: r.port_range_min ?? undefined,
    portRangeMax: r.port_range_max ?? undefined,
    remoteIpPrefix: r.remote_ip_prefix ?? '',
    remoteGroupId: r.remote_group_id ?? '',
    description: r.description,
    createdAt: new Date(r.created_at),
  }
}
