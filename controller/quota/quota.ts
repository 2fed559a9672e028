/**
 * Quotas, with Nova's and Neutron's defaults. Usage is counted from the
 * database at request time, inside the same transaction that creates the
 * resource, so concurrent requests can never exceed a limit (Nova's
 * check-then-create race and its recheck_quota spurious failures both avoided:
 * the check and the insert are one atomic step).
 */
import { InvalidArgument, ResourceExhausted } from '../../proto/errors.js'
import type { Db } from '../store/db.js'
import { lockNames } from '../store/engine.js'
import { sql, type Transaction } from 'kysely'
import type { Database } from '../store/schema.js'

/** Defaults for every project; -1 is unlimited. */
export const QUOTA_DEFAULTS: Readonly<Record<string, number>> = {
  // Nova
  instances: 10,
  cores: 20,
  ram: 51200,
  key_pairs: 100,
  server_groups: 10,
  server_group_members: 10,
  metadata_items: 128,
  // Neutron
  networks: 100,
  subnets: 100,
  ports: 500,
  floating_ips: 50,
  routers: 10,
  security_groups: 10,
  security_group_rules: 100,
  // Glance (image_size_total in MiB, as Glance's unified limit)
  images: 100,
  image_size_total: 1_048_576,
  // Cinder (gigabytes: GiB of volumes and their snapshots)
  volumes: 10,
  gigabytes: 1000,
  snapshots: 10,
}

export type Trx = Transaction<Database> | Db

/** Resources counted per user, not per project (Nova's key_pairs). */
const PER_USER: ReadonlySet<string> = new Set(['key_pairs'])

/**
 * The lock name (store/engine.ts lockNames) of a project's check-then-write
 * steps: its quota checks, and creating its `default` security group. One
 * name for both, so that a transaction doing both in either order cannot
 * deadlock with another (a transaction holding a lock takes it again at once).
 */
export function projectLock(projectId: string): string {
  return `project:${projectId}`
}

/** Whose quota: a project's, and for per-user resources (key_pairs) a user's. */
export interface QuotaOwner {
  projectId: string
  userId?: string
}

/**
 * Quota decisions for several requests in one transaction (QuotaEngine.admission).
 * `refusal` says whether `deltas` would fit now; `admit` counts them in (after
 * `refusal` said they fit, once the request is certain to be written in this
 * transaction).
 */
export interface QuotaAdmission {
  refusal(owner: QuotaOwner, deltas: Record<string, number>): Promise<ResourceExhausted | undefined>
  admit(owner: QuotaOwner, deltas: Record<string, number>): void
}

/** Counts current usage of one resource, for a project (or, for key_pairs, a user). */
export type UsageCounter = (db: Trx, owner: QuotaOwner) => Promise<number>

/**
 * A family of resources named `<base>_<key>` (Cinder's per-type quotas:
 * `volumes_<type>`, `gigabytes_<type>`, `snapshots_<type>`), one per key that
 * exists now; unlimited (-1) unless set for the project.
 */
export interface QuotaFamily {
  bases: readonly string[]
  /** The keys that exist now (e.g. the volume type names). */
  keys(db: Trx): Promise<string[]>
  count(db: Trx, owner: { projectId: string }, base: string, key: string): Promise<number>
}

export class QuotaEngine {
  private readonly counters = new Map<string, UsageCounter>()
  private readonly families: QuotaFamily[] = []

  constructor(private readonly db: Db) {}

  /** Each catalog registers how to count what it owns. */
  registerCounter(resource: string, counter: UsageCounter): void {
    if (!(resource in QUOTA_DEFAULTS)) throw new Error(`no quota default for resource '${resource}'`)
    this.counters.set(resource, counter)
  }

  /**
   * Counts `resource` as the rows of `table` that the owner has: its project's
   * (`column` project_id or owner) or, for 'user_id', its user's.
   */
  registerRowCount(resource: string, table: keyof Database, column: 'project_id' | 'owner' | 'user_id' = 'project_id'): void {
    this.registerCounter(resource, async (trx, owner) => {
      const value = column === 'user_id' ? owner.userId ?? '' : owner.projectId
      const r = await sql<{ n: number | string }>`select count(*) as n from ${sql.table(table)} where ${sql.ref(column)} = ${value}`.execute(trx)
      return Number(r.rows[0]?.n ?? 0)
    })
  }

  /** Registers a family of resources (see QuotaFamily). */
  registerFamily(f: QuotaFamily): void {
    for (const b of f.bases) if (!(b in QUOTA_DEFAULTS)) throw new Error(`no quota default for resource '${b}'`)
    this.families.push(f)
  }

  /** The family resource `resource` belongs to, split into base and key; undefined for a fixed resource. */
  private familyOf(resource: string): { f: QuotaFamily; base: string; key: string } | undefined {
    for (const f of this.families) {
      for (const base of f.bases) if (resource.startsWith(`${base}_`) && resource.length > base.length + 1) return { f, base, key: resource.slice(base.length + 1) }
    }
    return undefined
  }

  /** The family resources that exist now, in order: each key's resources by base. */
  private async familyResources(db: Trx): Promise<string[]> {
    const out: string[] = []
    for (const f of this.families) for (const key of (await f.keys(db)).sort()) for (const base of f.bases) out.push(`${base}_${key}`)
    return out
  }

  async limits(db: Trx, projectId: string): Promise<Record<string, number>> {
    const rows = await db.selectFrom('project_quotas').select(['resource', 'hard_limit']).where('project_id', '=', projectId).execute()
    const out: Record<string, number> = { ...QUOTA_DEFAULTS }
    for (const r of rows) out[r.resource] = Number(r.hard_limit)
    return out
  }

  /** Limits and usage of every resource. */
  async report(projectId: string, userId?: string): Promise<Array<{ resource: string; limit: number; inUse: number }>> {
    const limits = await this.limits(this.db, projectId)
    const out = []
    for (const resource of Object.keys(QUOTA_DEFAULTS)) {
      const counter = this.counters.get(resource)
      const inUse = counter ? await counter(this.db, { projectId, ...(userId ? { userId } : {}) }) : 0
      out.push({ resource, limit: limits[resource]!, inUse })
    }
    for (const resource of await this.familyResources(this.db)) {
      const m = this.familyOf(resource)!
      out.push({ resource, limit: limits[resource] ?? -1, inUse: await m.f.count(this.db, { projectId }, m.base, m.key) })
    }
    return out
  }

  /**
   * Throws ResourceExhausted unless usage + delta fits every limit. Call it in
   * the transaction that then creates the resources.
   */
  async check(trx: Trx, owner: QuotaOwner, deltas: Record<string, number>): Promise<void> {
    const refusal = await (await this.admission(trx, [owner])).refusal(owner, deltas)
    if (refusal) throw refusal
  }

  /**
   * Admits many requests in one transaction (the scheduler's batched claims):
   * every owner's lock is taken at once (sorted), each limit is read and each
   * usage counted once, and what `admit` lets in is added to the count, so
   * the requests are judged one after another as if each had its own
   * transaction.
   */
  async admission(trx: Trx, owners: QuotaOwner[]): Promise<QuotaAdmission> {
    // Counted and admitted one transaction at a time per owner, also with several controllers on PostgreSQL.
    await lockNames(trx, owners.flatMap((o) => [projectLock(o.projectId), ...(o.userId ? [`user:${o.userId}`] : [])]))
    const limits = new Map<string, Record<string, number>>()
    const used = new Map<string, Promise<number>>()
    // Usage is a project's, but a user's for the per-user resources.
    const key = (owner: QuotaOwner, resource: string) => `${owner.projectId}/${PER_USER.has(resource) ? (owner.userId ?? '') : ''}/${resource}`
    return {
      refusal: async (owner, deltas) => {
        let ownLimits = limits.get(owner.projectId)
        if (!ownLimits) limits.set(owner.projectId, (ownLimits = await this.limits(trx, owner.projectId)))
        for (const [resource, delta] of Object.entries(deltas)) {
          const member = this.familyOf(resource)
          const limit = ownLimits[resource] ?? (member ? -1 : undefined)
          if (limit === undefined) throw new Error(`unknown quota resource '${resource}'`)
          if (limit < 0 || delta <= 0) continue
          const counter = member ? (db: Trx) => member.f.count(db, owner, member.base, member.key) : this.counters.get(resource)
          if (!counter) throw new Error(`no usage counter registered for '${resource}'`)
          let counted = used.get(key(owner, resource))
          if (!counted) used.set(key(owner, resource), (counted = counter(trx, owner)))
          const inUse = await counted
          if (inUse + delta > limit) {
            return new ResourceExhausted(`quota exceeded for ${resource}: ${inUse} of ${limit} in use, ${delta} more requested; delete some or ask an admin to raise the quota`)
          }
        }
        return undefined
      },
      // Only limited resources were counted (by `refusal`); the others need no count.
      admit: (owner, deltas) => {
        for (const [resource, delta] of Object.entries(deltas)) {
          const counted = used.get(key(owner, resource))
          if (counted && delta > 0) used.set(key(owner, resource), counted.then((n) => n + delta))
        }
      },
    }
  }

  /**
   * Puts the project's limits of the resources `which` picks back to the
   * defaults (drops what was set for them): Cinder's and Nova's quota-set
   * DELETE, each for its own resources. Returns the resources reset.
   */
  async reset(projectId: string, which: (resource: string) => boolean): Promise<string[]> {
    return this.db.transaction().execute(async (trx) => {
      const set = await trx.selectFrom('project_quotas').select('resource').where('project_id', '=', projectId).execute()
      const reset = set.map((r) => r.resource).filter(which)
      if (reset.length) await trx.deleteFrom('project_quotas').where('project_id', '=', projectId).where('resource', 'in', reset).execute()
      return reset
    })
  }

  async update(projectId: string, limits: Record<string, number>): Promise<void> {
    const family = new Set(await this.familyResources(this.db))
    for (const [resource, limit] of Object.entries(limits)) {
      if (!(resource in QUOTA_DEFAULTS) && !family.has(resource)) {
        const m = this.familyOf(resource)
        if (m) throw new InvalidArgument(`unknown quota resource '${resource}': there is no '${m.key}' (per-type quotas are ${m.f.bases.map((b) => `${b}_<type>`).join(', ')} for an existing volume type)`, { field: `limits.${resource}` })
        throw new InvalidArgument(`unknown quota resource '${resource}'; known: ${Object.keys(QUOTA_DEFAULTS).join(', ')}`, { field: `limits.${resource}` })
      }
      if (!Number.isInteger(limit) || limit < -1) throw new InvalidArgument(`quota for ${resource} must be -1 (unlimited) or a non-negative integer, got ${limit}`, { field: `limits.${resource}` })
    }
    await this.db.transaction().execute(async (trx) => {
      for (const [resource, limit] of Object.entries(limits)) {
        await trx
          .insertInto('project_quotas')
          .values({ project_id: projectId, resource, hard_limit: limit })
          .onConflict((oc) => oc.columns(['project_id', 'resource']).doUpdateSet({ hard_limit: limit }))
          .execute()
      }
    })
  }
}
