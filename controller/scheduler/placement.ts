/**
 * Placement (the OpenStack Placement service's model, in the controller's
 * database): resource providers with inventories and traits, and the
 * allocations consumers hold against them. Every write bumps the provider's
 * generation. `claim()` re-checks capacity inside the caller's transaction,
 * so a claim that commits never over-commits a provider, however many run
 * at once.
 */
import { Conflict, NotFound } from '../../proto/errors.js'
import type { Db } from '../store/db.js'
import { engineOf } from '../store/engine.js'
import type { AllocationTable } from '../store/schema.js'
import type { QuotaEngine, Trx } from '../quota/quota.js'
import { allocationProblem, capacity, MEMORY_MB, VCPU, type Inventory, type Resources } from './model.js'

export interface ProviderView {
  uuid: string
  name: string
  generation: number
  traits: string[]
  availabilityZone: string
}

export interface AllocationView {
  consumerUuid: string
  providerUuid: string
  resources: Resources
  projectId: string
  userId: string
}

/** One consumer's resources on one provider. */
export interface Claim {
  consumerUuid: string
  providerUuid: string
  resources: Resources
  projectId: string
  userId: string
}

/**
 * Claims judged and recorded in one transaction (Placement.claims).
 * `refusal` says why a claim does not fit now (or undefined); `add` counts it
 * in (after `refusal` said it fits); `write` inserts every added claim.
 */
export interface ClaimBatch {
  refusal(c: Claim): Conflict | undefined
  add(c: Claim): void
  write(): Promise<void>
}

/** Everything the scheduler caches, read in one transaction. */
export interface PlacementSnapshot {
  inventories: Map<string, Map<string, Inventory>>
  traits: Map<string, Set<string>>
  usage: Map<string, Map<string, number>>
}

const now = () => new Date().toISOString()

function toInventory(r: { total: number; reserved: number; min_unit: number; max_unit: number; step_size: number; allocation_ratio: number }): Inventory {
  return { total: Number(r.total), reserved: Number(r.reserved), minUnit: Number(r.min_unit), maxUnit: Number(r.max_unit), stepSize: Number(r.step_size), allocationRatio: Number(r.allocation_ratio) }
}

export class Placement {
  constructor(private readonly db: Db, quota?: QuotaEngine) {
    // Nova's count_usage_from_placement: cores and ram are what consumers hold; instances are consumers.
    quota?.registerCounter('instances', async (db, o) => Number((await db.selectFrom('allocations').select((eb) => eb.fn.count<number>('consumer_uuid').distinct().as('n')).where('project_id', '=', o.projectId).executeTakeFirst())?.n ?? 0))
    quota?.registerCounter('cores', (db, o) => this.projectUsage(db, o.projectId, VCPU))
    quota?.registerCounter('ram', (db, o) => this.projectUsage(db, o.projectId, MEMORY_MB))
  }

  private async projectUsage(db: Trx, projectId: string, rc: string): Promise<number> {
    const r = await db.selectFrom('allocations').select((eb) => eb.fn.sum<number>('used').as('n')).where('project_id', '=', projectId).where('resource_class', '=', rc).executeTakeFirst()
    return Number(r?.n ?? 0)
  }

  /** Creates or updates a provider, replacing its inventories and traits. */
  async setProvider(trx: Trx, p: { uuid: string; name: string; inventories: Record<string, Inventory>; traits: string[] }): Promise<void> {
    await trx
      .insertInto('resource_providers')
      .values({ uuid: p.uuid, name: p.name, generation: 0, created_at: now() })
      .onConflict((oc) => oc.column('uuid').doUpdateSet((eb) => ({ name: p.name, generation: eb('resource_providers.generation', '+', 1) })))
      .execute()
    await trx.deleteFrom('inventories').where('provider_uuid', '=', p.uuid).execute()
    for (const [rc, inv] of Object.entries(p.inventories)) {
      await trx.insertInto('inventories').values({
        provider_uuid: p.uuid, resource_class: rc, total: inv.total, reserved: inv.reserved,
        min_unit: inv.minUnit, max_unit: inv.maxUnit, step_size: inv.stepSize, allocation_ratio: inv.allocationRatio,
      }).execute()
    }
    await trx.deleteFrom('provider_traits').where('provider_uuid', '=', p.uuid).execute()
    for (const trait of new Set(p.traits)) await trx.insertInto('provider_traits').values({ provider_uuid: p.uuid, trait }).execute()
  }

  /**
   * Records `resources` for a consumer on a provider, after re-checking every
   * resource class against the provider's capacity as the transaction sees it.
   * @throws Conflict when the provider cannot fit them (another claim won).
   */
  async claim(trx: Trx, c: Claim): Promise<void> {
    const batch = await this.claims(trx, [c.providerUuid])
    const conflict = batch.refusal(c)
    if (conflict) throw conflict
    batch.add(c)
    await batch.write()
  }

  /**
   * Many claims on `providerUuids` in one transaction (the scheduler's
   * batches): the providers' rows are locked (in uuid order, so that two
   * batches never wait on each other in a cycle) and their inventories and
   * usage read once; each claim is then judged against the usage as the
   * claims added before it left it, and `write` records them all.
   */
  async claims(trx: Trx, providerUuids: string[]): Promise<ClaimBatch> {
    const uuids = [...new Set(providerUuids)].sort()
    if (uuids.length === 0) throw new Error('a claim batch needs at least one provider')
    // The generation bump takes each provider's row lock, so concurrent claims on one provider
    // (other controllers, on PostgreSQL) re-check one at a time, each seeing the allocations
    // the previous one committed. FOR UPDATE in uuid order first: one UPDATE locks in no set order.
    if (engineOf(trx) === 'postgres') await trx.selectFrom('resource_providers').select('uuid').where('uuid', 'in', uuids).orderBy('uuid').forUpdate().execute()
    await trx.updateTable('resource_providers').set((eb) => ({ generation: eb('generation', '+', 1) })).where('uuid', 'in', uuids).execute()
    // Inventory and current usage of each class in one statement.
    const rows = await trx
      .selectFrom('inventories as i')
      .selectAll('i')
      .select((eb) =>
        eb.selectFrom('allocations as a').select((e) => e.fn.sum<number>('a.used').as('s')).whereRef('a.provider_uuid', '=', 'i.provider_uuid').whereRef('a.resource_class', '=', 'i.resource_class').as('used'),
      )
      .where('i.provider_uuid', 'in', uuids)
      .execute()
    const inv = new Map(rows.map((r) => [`${r.provider_uuid}/${r.resource_class}`, { inv: toInventory(r), used: Number(r.used ?? 0) }]))
    const created_at = now()
    const values: AllocationTable[] = []
    return {
      refusal: (c) => {
        for (const [rc, amount] of Object.entries(c.resources)) {
          if (amount <= 0) continue
          const cur = inv.get(`${c.providerUuid}/${rc}`)
          const problem = allocationProblem(rc, cur?.inv, cur?.used ?? 0, amount)
          if (problem) return new Conflict(`cannot allocate on provider ${c.providerUuid}: ${problem}`)
        }
        return undefined
      },
      add: (c) => {
        for (const [rc, amount] of Object.entries(c.resources)) {
          if (amount <= 0) continue
          inv.get(`${c.providerUuid}/${rc}`)!.used += amount
          values.push({ consumer_uuid: c.consumerUuid, provider_uuid: c.providerUuid, resource_class: rc, used: amount, project_id: c.projectId, user_id: c.userId, created_at })
        }
      },
      write: async () => {
        // Bounded statements: SQLite allows 32,766 parameters, PostgreSQL 65,535.
        for (let i = 0; i < values.length; i += 1000) await trx.insertInto('allocations').values(values.slice(i, i + 1000)).execute()
      },
    }
  }

  /** Removes every allocation of a consumer; returns what was freed per provider. */
  async release(trx: Trx, consumerUuid: string): Promise<Map<string, Resources>> {
    const rows = await trx.selectFrom('allocations').selectAll().where('consumer_uuid', '=', consumerUuid).execute()
    const freed = new Map<string, Resources>()
    for (const r of rows) {
      const res = freed.get(r.provider_uuid) ?? {}
      res[r.resource_class] = (res[r.resource_class] ?? 0) + Number(r.used)
      freed.set(r.provider_uuid, res)
    }
    if (rows.length === 0) return freed
    await trx.deleteFrom('allocations').where('consumer_uuid', '=', consumerUuid).execute()
    for (const p of freed.keys()) await trx.updateTable('resource_providers').set((eb) => ({ generation: eb('generation', '+', 1) })).where('uuid', '=', p).execute()
    return freed
  }

  /** Every consumer holding allocations; with `claimedBefore`, those whose newest claim is older. */
  async consumers(trx: Trx, claimedBefore?: Date): Promise<string[]> {
    if (!claimedBefore) return (await trx.selectFrom('allocations').select('consumer_uuid').distinct().execute()).map((r) => r.consumer_uuid)
    // A consumer's newest claim decides: one made since belongs to a create still in progress.
    const rows = await trx.selectFrom('allocations').select('consumer_uuid').groupBy('consumer_uuid').having((eb) => eb.fn.max('created_at'), '<', claimedBefore.toISOString()).execute()
    return rows.map((r) => r.consumer_uuid)
  }

  /** Inventories, traits and usage of every provider, or of `providerUuids` only (for the scheduler's cache). */
  async snapshot(trx: Trx, providerUuids?: string[]): Promise<PlacementSnapshot> {
    const inventories = new Map<string, Map<string, Inventory>>()
    for (const r of await trx.selectFrom('inventories').selectAll().$if(!!providerUuids, (q) => q.where('provider_uuid', 'in', providerUuids!)).execute()) {
      let m = inventories.get(r.provider_uuid)
      if (!m) inventories.set(r.provider_uuid, (m = new Map()))
      m.set(r.resource_class, toInventory(r))
    }
    const traits = new Map<string, Set<string>>()
    for (const r of await trx.selectFrom('provider_traits').selectAll().$if(!!providerUuids, (q) => q.where('provider_uuid', 'in', providerUuids!)).execute()) {
      let s = traits.get(r.provider_uuid)
      if (!s) traits.set(r.provider_uuid, (s = new Set()))
      s.add(r.trait)
    }
    const usage = new Map<string, Map<string, number>>()
    const rows = await trx.selectFrom('allocations').select(['provider_uuid', 'resource_class', (eb) => eb.fn.sum<number>('used').as('used')])
      .$if(!!providerUuids, (q) => q.where('provider_uuid', 'in', providerUuids!)).groupBy(['provider_uuid', 'resource_class']).execute()
    for (const r of rows) {
      let m = usage.get(r.provider_uuid)
      if (!m) usage.set(r.provider_uuid, (m = new Map()))
      m.set(r.resource_class, Number(r.used))
    }
    return { inventories, traits, usage }
  }

  // ------------------------------------------------------------ read-only views (strato.placement.v1)

  async listProviders(f: { name?: string; uuid?: string; resources?: Resources } = {}): Promise<ProviderView[]> {
    let q = this.db
      .selectFrom('resource_providers as p')
      .leftJoin('compute_hosts as h', 'h.uuid', 'p.uuid')
      .select(['p.uuid', 'p.name', 'p.generation', 'h.availability_zone'])
      .orderBy('p.name')
    if (f.name) q = q.where('p.name', '=', f.name)
    if (f.uuid) q = q.where('p.uuid', '=', f.uuid)
    const rows = await q.execute()
    const snap = await this.snapshot(this.db)
    const wanted = Object.entries(f.resources ?? {}).filter(([, n]) => n > 0)
    return rows
      .filter((r) => wanted.every(([rc, n]) => allocationProblem(rc, snap.inventories.get(r.uuid)?.get(rc), snap.usage.get(r.uuid)?.get(rc) ?? 0, n) === undefined))
      .map((r) => ({ uuid: r.uuid, name: r.name, generation: Number(r.generation), traits: [...(snap.traits.get(r.uuid) ?? [])].sort(), availabilityZone: r.availability_zone ?? '' }))
  }

  private async provider(uuid: string): Promise<{ generation: number }> {
    const p = await this.db.selectFrom('resource_providers').select('generation').where('uuid', '=', uuid).executeTakeFirst()
    if (!p) throw new NotFound(`no resource provider ${uuid}`, { field: 'resource_provider_uuid' })
    return { generation: Number(p.generation) }
  }

  async getInventories(uuid: string): Promise<{ generation: number; inventories: Record<string, Inventory> }> {
    const { generation } = await this.provider(uuid)
    const rows = await this.db.selectFrom('inventories').selectAll().where('provider_uuid', '=', uuid).orderBy('resource_class').execute()
    return { generation, inventories: Object.fromEntries(rows.map((r) => [r.resource_class, toInventory(r)])) }
  }

  /** Usage of one provider (every inventoried class, 0 included), or of a project across providers. */
  async getUsages(f: { providerUuid?: string; projectId?: string }): Promise<{ generation: number; usages: Resources }> {
    let generation = 0
    const usages: Resources = {}
    let q = this.db.selectFrom('allocations').select(['resource_class', (eb) => eb.fn.sum<number>('used').as('used')]).groupBy('resource_class')
    if (f.providerUuid) {
      generation = (await this.provider(f.providerUuid)).generation
      for (const rc of Object.keys((await this.getInventories(f.providerUuid)).inventories)) usages[rc] = 0
      q = q.where('provider_uuid', '=', f.providerUuid)
    }
    if (f.projectId) q = q.where('project_id', '=', f.projectId)
    for (const r of await q.execute()) usages[r.resource_class] = Number(r.used)
    return { generation, usages }
  }

  async listAllocations(f: { providerUuid?: string; consumerUuid?: string } = {}): Promise<AllocationView[]> {
    let q = this.db.selectFrom('allocations').selectAll().orderBy('created_at').orderBy('consumer_uuid')
    if (f.providerUuid) q = q.where('provider_uuid', '=', f.providerUuid)
    if (f.consumerUuid) q = q.where('consumer_uuid', '=', f.consumerUuid)
    const out = new Map<string, AllocationView>()
    for (const r of await q.execute()) {
      const key = `${r.consumer_uuid}/${r.provider_uuid}`
      let a = out.get(key)
      if (!a) out.set(key, (a = { consumerUuid: r.consumer_uuid, providerUuid: r.provider_uuid, resources: {}, projectId: r.project_id, userId: r.user_id }))
      a.resources[r.resource_class] = Number(r.used)
    }
    return [...out.values()]
  }

  /** Sum of allocations per provider and class next to capacity (for over-commit checks in tests and benchmarks). */
  async overCommitted(): Promise<Array<{ providerUuid: string; resourceClass: string; used: number; capacity: number }>> {
    const snap = await this.snapshot(this.db)
    const out = []
    for (const [p, m] of snap.usage) {
      for (const [rc, used] of m) {
        const inv = snap.inventories.get(p)?.get(rc)
        const cap = inv ? capacity(inv) : 0
        if (used > cap) out.push({ providerUuid: p, resourceClass: rc, used, capacity: cap })
      }
    }
    return out
  }
}
