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
import type { Transaction } from 'kysely'
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

/**
 * The lock name (store/engine.ts lockNames) of a project's check-then-write
 * steps: its quota checks, and creating its `default` security group. One
 * name for both, so that a transaction doing both in either order cannot
 * deadlock with another (a transaction holding a lock takes it again at once).
 */
export function projectLock(projectId: string): string {
  return `project:${projectId}`
}

/** Counts current usage of one resource, for a project (or, for key_pairs, a user). */
export type UsageCounter = (db: Trx, owner: { projectId: string; userId?: string }) => Promise<number>

export class QuotaEngine {
  private readonly counters = new Map<string, UsageCounter>()

  constructor(private readonly db: Db) {}

  /** Each catalog registers how to count what it owns. */
  registerCounter(resource: string, counter: UsageCounter): void {
    if (!(resource in QUOTA_DEFAULTS)) throw new Error(`no quota default for resource '${resource}'`)
    this.counters.set(resource, counter)
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
    return out
  }

  /**
   * Throws ResourceExhausted unless usage + delta fits every limit. Call it in
   * the transaction that then creates the resources.
   */
  async check(trx: Trx, owner: { projectId: string; userId?: string }, deltas: Record<string, number>): Promise<void> {
    // Counted and admitted one transaction at a time per owner, also with several controllers on PostgreSQL.
    await lockNames(trx, [projectLock(owner.projectId), ...(owner.userId ? [`user:${owner.userId}`] : [])])
    const limits = await this.limits(trx, owner.projectId)
    for (const [resource, delta] of Object.entries(deltas)) {
      const limit = limits[resource]
      if (limit === undefined) throw new Error(`unknown quota resource '${resource}'`)
      if (limit < 0 || delta <= 0) continue
      const counter = this.counters.get(resource)
      if (!counter) throw new Error(`no usage counter registered for '${resource}'`)
      const used = await counter(trx, owner)
      if (used + delta > limit) {
        throw new ResourceExhausted(`quota exceeded for ${resource}: ${used} of ${limit} in use, ${delta} more requested; delete some or ask an admin to raise the quota`)
      }
    }
  }

  async update(projectId: string, limits: Record<string, number>): Promise<void> {
    for (const [resource, limit] of Object.entries(limits)) {
      if (!(resource in QUOTA_DEFAULTS)) {
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
