/**
 * The scheduler (nova's FilterScheduler with Placement's claim folded in):
 * candidates from inventories and usage, then the enabled filters, then the
 * weighers; the best host is claimed — allocation and quota (instances,
 * cores, ram) in ONE transaction that re-checks capacity — so concurrent
 * requests never over-commit a host or exceed a quota, and need no retry.
 *
 * Host states are cached in memory (like nova's HostManager) and kept exact:
 * a choice reserves its resources in the cache in the same tick it is made,
 * and the cache moves the reservation to "allocated" inside the claim's
 * transaction, which SQLite runs one at a time. The database re-check is the
 * backstop; a lost race moves on to the next weighed host (an alternate).
 *
 * Requests of the same tick are decided in one round, one after another
 * (each reservation in the cache before the next decision); those that
 * differ only in their consumer share one filtering and weighing, and only
 * the chosen host is judged again after each (decideTogether).
 *
 * At scale: claims made meanwhile are judged and written in batches, one
 * transaction each (quota read and counted once per project, provider rows
 * locked and read once per batch), and with more hosts than
 * `maxPlacementResults` a decision filters and weighs a window of hosts.
 */
import { Conflict, FailedPrecondition, ResourceExhausted } from '../../proto/errors.js'
import type { Db } from '../store/db.js'
import type { Selectable } from 'kysely'
import type { ComputeHostTable } from '../store/schema.js'
import { engineOf, type Engine } from '../store/engine.js'
import type { QuotaEngine } from '../quota/quota.js'
import { FILTERS } from './filters/index.js'
import { allocationProblem, MEMORY_MB, VCPU, type HostFilter, type HostState, type HostWeigher, type Inventory, type RequestSpec, type Resources } from './model.js'
import type { Claim, Placement, PlacementSnapshot } from './placement.js'
import { WEIGHERS, Weighing, weighHosts } from './weighers/index.js'

export interface SchedulerConfig {
  /** Filters applied in order after the placement capacity step. @default ['ComputeFilter', 'AvailabilityZoneFilter', 'ImagePropertiesFilter'] */
  enabledFilters: string[]
  /** @default ['RAMWeigher', 'CPUWeigher', 'DiskWeigher'] */
  weighers: string[]
  /** `spread` prefers the emptiest hosts, `pack` the fullest (flips every multiplier's sign). @default 'spread' */
  strategy: 'spread' | 'pack'
  /** Per-weigher multipliers (nova `ram_weight_multiplier` …). @default { RAMWeigher: 1, CPUWeigher: 1, DiskWeigher: 1 } */
  weightMultipliers: Record<string, number>
  /** Pick at random among the best N hosts (nova `host_subset_size`). @default 1 */
  hostSubsetSize: number
  /** Hosts tried, best first, when claims lose races in the database (nova `max_attempts`). @default 3 */
  maxAttempts: number
  /**
   * Hosts that pass the placement step (capacity, traits) a decision filters
   * and weighs at most (nova `max_placement_results`, Placement's allocation
   * candidates `limit`): with more hosts, each decision looks at the next
   * window of that many from where the previous one stopped (so decisions
   * spread over every host, as Placement's `randomize_allocation_candidates`),
   * and at all hosts only when the filters leave none of the window.
   * @default 1000
   */
  maxPlacementResults: number
  /**
   * Where this controller's first window of hosts begins, as a fraction of
   * the host list in [0, 1): controllers on one database start (and, moving
   * at the same pace, stay) apart, so their decisions collide less on the
   * same hosts.
   * @default random, per controller process
   */
  windowOffset: number
}

/** Whether a host's heartbeats arrive. */
export interface HostLiveness {
  isUp(host: string, at?: number): boolean
}

export interface Placed {
  host: string
  providerUuid: string
  /** The host's availability zone as the decision saw it (what the zone filter judged). */
  availabilityZone: string
  /** Other hosts that passed, best first (nova's alternates). */
  alternates: string[]
}

interface CachedHost extends HostState {
  up: boolean
  usage: Map<string, number>
}

/** A request waiting for its round of decisions (Scheduler.decide). */
interface PendingDecision {
  spec: RequestSpec
  resolve(d: Decision): void
  reject(err: unknown): void
}

/** Hosts ranked for a request, best first; the first is reserved in `hosts`, the cache it was chosen from. */
interface Decision {
  hosts: Map<string, CachedHost>
  ranked: CachedHost[]
}

/** A claim waiting for its batch (Scheduler.submit). */
interface PendingClaim {
  claim: Claim
  deltas: Record<string, number>
  onAdded(): void
  resolve(): void
  reject(err: unknown): void
}

/**
 * Claims judged and written in one transaction at most (bounded statements).
 * On PostgreSQL other controllers wait for the same project and provider
 * locks: small batches let them take turns instead of one controller
 * admitting a whole burst while the others wait.
 */
const MAX_CLAIM_BATCH: Record<Engine, number> = { sqlite: 256, postgres: 16 }

/** A "no valid host" decided on a cache older than this reads the database again first (other controllers free capacity too). */
const STALE_CACHE_MS = 1000
/** Rounds of fresh reads after every candidate was lost to concurrent claims (other controllers). */
const RACE_ROUNDS = 3

export class Scheduler {
  private readonly filters: HostFilter[]
  private readonly weighers: Array<{ weigher: HostWeigher; multiplier: number }>
  private hosts: Map<string, CachedHost> | undefined
  private loading: Promise<Map<string, CachedHost>> | undefined
  private generation = 0
  /** Claim transactions in flight. */
  private readonly claims = new Map<number, Promise<unknown>>()
  private claimSeq = 0
  /** Claims waiting for the next batch, and whether a batch is running or about to. */
  private readonly pending: PendingClaim[] = []
  private flushing = false
  /** Bumped (and the signal resolved) whenever reserved or allocated capacity is given back. */
  private freedEpoch = 0
  private freedSignal = deferred()
  private upOf: Map<string, CachedHost> | undefined
  private upAt = 0
  /** When the cache was read from the database (ms since the epoch). */
  private loadedAt = 0
  /** Where the next decision's window of hosts begins (see SchedulerConfig.maxPlacementResults and windowOffset); set at the first windowed decision. */
  private windowStart: number | undefined
  /** Requests waiting for the next round of decisions, and whether one is about to run. */
  private readonly deciding: PendingDecision[] = []
  private roundScheduled = false
  /** Hosts being read again after a lost race (refreshHosts), by uuid. */
  private readonly refreshing = new Map<string, Promise<void>>()
  /** The cached hosts as a list, for the map they were listed from. */
  private listed: { of: Map<string, CachedHost>; list: CachedHost[] } | undefined

  constructor(
    private readonly db: Db,
    private readonly placement: Placement,
    private readonly quota: QuotaEngine,
    private readonly liveness: HostLiveness,
    private readonly config: SchedulerConfig,
  ) {
    this.filters = config.enabledFilters.map((name) => {
      const f = FILTERS.get(name)
      if (!f) throw new Error(`scheduler.enabledFilters: unknown filter '${name}'; known: ${[...FILTERS.keys()].join(', ')}`)
      return f
    })
    const sign = config.strategy === 'pack' ? -1 : 1
    this.weighers = config.weighers.map((name) => {
      const weigher = WEIGHERS.get(name)
      if (!weigher) throw new Error(`scheduler.weighers: unknown weigher '${name}'; known: ${[...WEIGHERS.keys()].join(', ')}`)
      // spread/pack turns the resource weighers around; a group's soft policy means what it says either way.
      return { weigher, multiplier: (weigher.resource === false ? 1 : sign) * (config.weightMultipliers[name] ?? 1) }
    })
  }

  /** Hosts or inventories changed: reload the cache before the next decision. */
  invalidate(): void {
    this.hosts = undefined
    this.generation++
  }

  /** Host states as the next decision will see them (loaded if needed). */
  async hostStates(): Promise<HostState[]> {
    const hosts = await this.load()
    this.refreshUp(hosts, true)
    return [...hosts.values()]
  }

  private load(): Promise<Map<string, CachedHost>> {
    if (this.hosts) return Promise.resolve(this.hosts)
    if (this.loading) return this.loading
    const generation = this.generation
    // Read inside a transaction: claims commit one at a time around it, so the
    // usage read and the cache's in-transaction updates never double count.
    const p = this.db.transaction().execute(async (trx) => {
      const rows = await trx.selectFrom('compute_hosts').selectAll().orderBy('host').execute()
      const snap = await this.placement.snapshot(trx)
      const hosts = new Map<string, CachedHost>()
      for (const r of rows) hosts.set(r.uuid, cachedHost(r, snap))
      if (generation === this.generation) {
        this.hosts = hosts
        this.loadedAt = Date.now()
      }
      return hosts
    })
    this.loading = p
    const done = () => {
      if (this.loading === p) this.loading = undefined
    }
    p.then(done, done)
    return p
  }

  /**
   * Reads the hosts `uuids` again (a claim on them lost a race: another
   * controller's claims are in the database, not in this cache), instead of
   * the whole cache. Like `load`, inside a transaction that claims commit
   * around; the host gets a new state object, so claims reserved on the old
   * one and committed after this read are counted again when they commit
   * (`place`'s onAdded), and none is counted twice.
   */
  private refreshHosts(uuids: string[]): Promise<void> {
    const hosts = this.hosts
    const wanted = uuids.filter((u) => hosts?.has(u) && !this.refreshing.has(u))
    if (!hosts || wanted.length === 0) return Promise.all(uuids.map((u) => this.refreshing.get(u))).then(() => {})
    const p = this.db.transaction().execute(async (trx) => {
      const rows = await trx.selectFrom('compute_hosts').selectAll().where('uuid', 'in', wanted).execute()
      const snap = await this.placement.snapshot(trx, wanted)
      if (this.hosts !== hosts) return // the whole cache was read again meanwhile
      for (const r of rows) {
        const h = cachedHost(r, snap)
        h.up = hosts.get(r.uuid)?.up ?? false
        hosts.set(r.uuid, h)
        if (this.listed?.of === hosts) {
          const i = this.listed.list.findIndex((x) => x.uuid === r.uuid)
          if (i >= 0) this.listed.list[i] = h
        }
      }
      // A host gone from the database: read everything again.
      if (rows.length < wanted.length) this.invalidate()
    })
    for (const u of wanted) this.refreshing.set(u, p)
    const done = () => {
      for (const u of wanted) if (this.refreshing.get(u) === p) this.refreshing.delete(u)
    }
    p.then(done, done)
    return p
  }

  /**
   * Filters and weighs hosts for `spec`, best first.
   * @throws FailedPrecondition when hosts exist but none is mapped yet.
   * @throws ResourceExhausted (no valid host) naming the step that removed the
   *   last candidates and the count after each step.
   */
  async select(spec: RequestSpec): Promise<HostState[]> {
    return this.rank(await this.hostStates(), spec)
  }

  private rank(all: HostState[], spec: RequestSpec): HostState[] {
    const limit = this.config.maxPlacementResults
    if (all.length > limit && !spec.forceHost) {
      const sampled = this.rankWindow(all, spec, limit)
      if (sampled.length) return sampled
    }
    return this.rankAll(all, spec)
  }

  /**
   * Up to `limit` hosts that pass the placement step, from where the previous
   * decision stopped, filtered and weighed; empty when the filters leave none
   * (then every host is looked at, and a refusal says why).
   */
  private rankWindow(all: HostState[], spec: RequestSpec, limit: number): HostState[] {
    const hosts = this.windowHosts(all, spec, limit)
    return hosts.length ? weighHosts(hosts, spec, this.weighers, this.ranked()).map((w) => w.host) : []
  }

  /** The next window: up to `limit` hosts that pass the placement step, from where the previous one stopped, then the filters. */
  private windowHosts(all: HostState[], spec: RequestSpec, limit: number): HostState[] {
    const want = Object.entries(spec.resources).filter(([, n]) => n > 0)
    const n = all.length
    const start = (this.windowStart ?? Math.floor(this.config.windowOffset * n)) % n
    let hosts: HostState[] = []
    let i = 0
    for (; i < n && hosts.length < limit; i++) {
      const h = all[(start + i) % n]!
      if (h.mapped && fits(h, want, spec)) hosts.push(h)
    }
    this.windowStart = (start + i) % n
    for (const f of this.filters) {
      hosts = hosts.filter((h) => f.hostPasses(h, spec))
      if (hosts.length === 0) return []
    }
    return hosts
  }

  /** Every mapped host that passes the placement step and the filters (no refusal message: rankAll says why). */
  private passingHosts(all: HostState[], spec: RequestSpec): HostState[] {
    const want = Object.entries(spec.resources).filter(([, n]) => n > 0)
    let hosts = all.filter((h) => h.mapped && fits(h, want, spec))
    for (const f of this.filters) hosts = hosts.filter((h) => f.hostPasses(h, spec))
    return hosts
  }

  /** How many hosts a decision ranks: the best and enough alternates for the attempts. */
  private ranked(): number {
    return Math.max(this.config.hostSubsetSize, this.config.maxAttempts) + 2
  }

  private rankAll(all: HostState[], spec: RequestSpec): HostState[] {
    const want = Object.entries(spec.resources).filter(([, n]) => n > 0)
    const asked = want.map(([rc, n]) => `${rc} ${n}`).join(', ')
    if (all.length === 0) throw new ResourceExhausted(`no valid host found for ${asked}: no compute host has announced itself; start an agent`)
    const waiting = all.filter((h) => !h.mapped)
    let hosts = all.filter((h) => h.mapped)
    const names = (hs: HostState[]) => {
      const shown = hs.slice(0, 5).map((h) => `'${h.host}'`).join(', ')
      return hs.length > 5 ? `${shown} and ${hs.length - 5} more` : shown
    }
    if (hosts.length === 0) {
      throw new FailedPrecondition(`no host is mapped yet: ${names(waiting)} ${waiting.length === 1 ? 'is' : 'are'} waiting; run DiscoverHosts (strato host discover)`)
    }
    const steps = [`${all.length} hosts`]
    if (waiting.length) steps.push(`${hosts.length} mapped (${names(waiting)} waiting for DiscoverHosts)`)
    const noHost = (why: string) => new ResourceExhausted(`no valid host found for ${asked}${spec.availabilityZone ? ` in ${spec.availabilityZone}` : ''}: ${steps.join('; ')}${why}`)

    if (spec.forceHost) {
      hosts = hosts.filter((h) => h.host === spec.forceHost)
      steps.push(`${hosts.length} after forced host '${spec.forceHost}'`)
      if (hosts.length === 0) throw noHost(waiting.some((h) => h.host === spec.forceHost) ? ' (it is not mapped yet)' : '')
    }

    // Placement: capacity for every requested class, required and forbidden traits.
    const short = new Map<string, number>()
    const count = (what: string) => short.set(what, (short.get(what) ?? 0) + 1)
    hosts = hosts.filter((h) => fits(h, want, spec, count))
    steps.push(`${hosts.length} after placement capacity`)
    if (hosts.length === 0) throw noHost(` (short of ${[...short].map(([what, n]) => `${what} on ${n}`).join(', ')})`)

    for (const f of this.filters) {
      const removed: HostState[] = []
      hosts = hosts.filter((h) => f.hostPasses(h, spec) || (removed.push(h), false))
      const asks = f.describe?.(spec)
      steps.push(`${hosts.length} after ${f.name}${asks ? ` (${asks})` : ''}`)
      if (hosts.length === 0) {
        const why = f.reason ? removed.slice(0, 5).map((h) => f.reason!(h, spec)).join(', ') : ''
        throw noHost(why ? ` — ${why}` : '')
      }
    }
    // The best host and enough alternates for the attempts; no need to order all of them.
    return weighHosts(hosts, spec, this.weighers, this.ranked()).map((w) => w.host)
  }

  /**
   * Selects a host and claims `spec.resources` on it for `spec.instanceUuid`,
   * with quota (instances 1, cores = VCPU, ram = MEMORY_MB) checked in the
   * same transaction.
   * @throws ResourceExhausted for no valid host or an exceeded quota.
   */
  async schedule(spec: RequestSpec): Promise<Placed> {
    let reread = false
    let raceRounds = 0
    for (;;) {
      const r = await this.place(spec)
      if ('host' in r) return r
      // Every candidate tried was taken by a concurrent claim (another controller's, which this
      // cache did not show): look again on a fresh read, a bounded number of times, as Nova's
      // report client retries Placement's concurrent-update conflicts, before saying no valid host.
      // (The hosts that lost were read again already, in `place`.)
      if (r.raced && raceRounds < RACE_ROUNDS) {
        raceRounds++
        continue
      }
      // Claims in flight hold reservations in the cache that their transaction may
      // yet roll back (a quota refusal): before saying no valid host, wait until
      // they are done, and look again only if something was freed meanwhile.
      if (r.inFlightUpTo !== 0) {
        const freed = await Promise.race([this.settledUpTo(r.inFlightUpTo).then(() => false), this.freedSignal.promise.then(() => true)])
        if (freed || this.freedEpoch !== r.freedEpoch) continue
      }
      // Other controllers on the database free capacity this cache does not see: before
      // saying no valid host on a cache older than STALE_CACHE_MS, read the database once
      // (when no claim of this controller is in flight: their reservations are in the cache).
      if (!reread && this.claims.size === 0 && Date.now() - this.loadedAt > STALE_CACHE_MS) {
        reread = true
        this.invalidate()
        continue
      }
      throw r.noHost
    }
  }

  /** One pass; a refusal carries the claims that were in flight when it was decided. */
  private async place(spec: RequestSpec): Promise<Placed | { noHost: ResourceExhausted; inFlightUpTo: number; freedEpoch: number; raced?: boolean }> {
    let decision: Decision
    try {
      decision = await this.decide(spec)
    } catch (err) {
      if (err instanceof ResourceExhausted) return { noHost: err, inFlightUpTo: this.lastInFlight(), freedEpoch: this.freedEpoch }
      throw err
    }
    let hosts = decision.hosts
    const ranked = decision.ranked
    const want = Object.entries(spec.resources).filter(([, n]) => n > 0)
    const deltas = { instances: 1, cores: spec.resources[VCPU] ?? 0, ram: spec.resources[MEMORY_MB] ?? 0 }
    let attempts = 0
    let lastRace: unknown
    for (const [i, candidate] of ranked.entries()) {
      if (attempts >= this.config.maxAttempts) break
      let h = candidate // the first was reserved when it was chosen (decideRound)
      if (i > 0) {
        // Alternates are tried after an await: look again, at the current cache.
        if (this.hosts !== hosts) hosts = await this.load()
        const current = hosts.get(candidate.uuid)
        if (!current || want.some(([rc, n]) => allocationProblem(rc, current.inventories.get(rc), current.usage.get(rc) ?? 0, n))) continue
        h = current
        add(h.usage, spec.resources, 1)
      }
      attempts++
      let committed = false
      try {
        await this.track(this.submit({ consumerUuid: spec.instanceUuid, providerUuid: h.uuid, resources: spec.resources, projectId: spec.projectId, userId: spec.userId }, deltas, () => {
          committed = true
          // A cache loaded since the reservation was made (before this transaction) lacks the claim.
          const current = this.hosts?.get(h.uuid)
          if (current && current !== h) add(current.usage, spec.resources, 1)
        }))
        return { host: h.host, providerUuid: h.uuid, availabilityZone: h.availabilityZone, alternates: ranked.slice(i + 1, i + 1 + this.config.maxAttempts - 1).map((x) => x.host) }
      } catch (err) {
        // The reservation stays only if the claim is in the database (a cache reload saw it then).
        if (!committed) {
          if (this.hosts === hosts) add(h.usage, spec.resources, -1)
          // Its room is free again, in this cache or in one reloaded meanwhile (that never counted it,
          // e.g. after another controller's change): requests it held off look again either way.
          this.signalFreed()
        }
        if (committed) this.invalidate()
        if (!(err instanceof Conflict)) throw err
        lastRace = err
        // The cache was wrong about this host: read it (not every host) again.
        await this.refreshHosts([h.uuid])
      }
    }
    return { inFlightUpTo: this.lastInFlight(), freedEpoch: this.freedEpoch, raced: lastRace !== undefined, noHost: new ResourceExhausted(`no valid host found for ${want.map(([rc, n]) => `${rc} ${n}`).join(', ')}: every candidate was claimed by concurrent requests (${attempts} tried)`, { cause: lastRace }) }
  }

  /**
   * Queues `spec` for the next round of decisions (requests of the same
   * tick are decided together, see decideRound); resolves with the ranked
   * hosts, the first of them already reserved in the cache.
   * @throws ResourceExhausted / FailedPrecondition as `rank` does.
   */
  private decide(spec: RequestSpec): Promise<Decision> {
    return new Promise((resolve, reject) => {
      this.deciding.push({ spec, resolve, reject })
      if (!this.roundScheduled) {
        this.roundScheduled = true
        setImmediate(() => void this.decideRound())
      }
    })
  }

  /**
   * Decides every queued request, one after another and without an await
   * between them: each reserves its host in the cache before the next is
   * decided. Requests that differ only in their consumer (the same
   * resources, zone, image properties, traits …; no group, local network or
   * forced host, whose decisions depend on the ones before) are decided
   * together: see decideTogether.
   */
  private async decideRound(): Promise<void> {
    const round = this.deciding.splice(0)
    this.roundScheduled = false
    let hosts: Map<string, CachedHost>
    try {
      hosts = await this.load()
    } catch (err) {
      for (const d of round) d.reject(err)
      return
    }
    this.refreshUp(hosts)
    if (this.listed?.of !== hosts) this.listed = { of: hosts, list: [...hosts.values()] }
    const all = this.listed.list
    const together = new Map<string, PendingDecision[]>()
    for (const d of round) {
      const key = sharedDecisionKey(d.spec)
      if (key === undefined) {
        this.decideAlone(d, hosts, all)
        continue
      }
      let g = together.get(key)
      if (!g) together.set(key, (g = []))
      g.push(d)
    }
    for (const g of together.values()) this.decideTogether(g, hosts, all)
  }

  /** One request: ranked as `select` ranks, the first host (or one of the best `hostSubsetSize`) reserved. */
  private decideAlone(d: PendingDecision, hosts: Map<string, CachedHost>, all: CachedHost[]): void {
    let ranked: CachedHost[]
    try {
      ranked = this.rank(all, d.spec) as CachedHost[]
    } catch (err) {
      d.reject(err)
      return
    }
    ranked = this.fromSubset(ranked)
    add(ranked[0]!.usage, d.spec.resources, 1)
    d.resolve({ hosts, ranked })
  }

  /**
   * Requests that differ only in their consumer, decided one after another
   * on one filtering and weighing of the hosts (as Nova decides the
   * instances of one multi-instance request on one allocation-candidates
   * answer): after each decision only the chosen host is judged again (the
   * placement step, the filters, its weights — Weighing keeps the
   * normalisation exact), so each decision is the one `rank` would make on
   * the same hosts, without filtering and weighing them all again. With more
   * hosts than `maxPlacementResults`, one window serves at most a tenth of
   * its size of decisions before the next window is taken (decisions keep
   * spreading over every host). What no window fits is decided alone (every
   * host looked at, and a refusal says why).
   */
  private decideTogether(group: PendingDecision[], hosts: Map<string, CachedHost>, all: CachedHost[]): void {
    const spec = group[0]!.spec
    const want = Object.entries(spec.resources).filter(([, n]) => n > 0)
    const limit = this.config.maxPlacementResults
    const windowed = all.length > limit
    const perWindow = windowed ? Math.ceil(limit / 10) : Infinity
    let next = 0
    while (next < group.length) {
      const candidates = (windowed ? this.windowHosts(all, spec, limit) : this.passingHosts(all, spec)) as CachedHost[]
      if (candidates.length === 0) break
      const weighing = new Weighing(candidates, spec, this.weighers)
      let decided = 0
      for (; next < group.length && decided < perWindow; next++, decided++) {
        const best = this.fromSubset(weighing.best(this.ranked()))
        if (best.length === 0) break
        const h = candidates[best[0]!]!
        const d = group[next]!
        add(h.usage, d.spec.resources, 1)
        d.resolve({ hosts, ranked: best.map((i) => candidates[i]!) })
        weighing.changed(best[0]!, !(fits(h, want, spec) && this.filters.every((f) => f.hostPasses(h, spec))))
      }
      if (decided === 0) break
    }
    for (; next < group.length; next++) this.decideAlone(group[next]!, hosts, all)
  }

  /** With `hostSubsetSize` > 1, one of the best that many at random goes first (nova `host_subset_size`). */
  private fromSubset<T>(ranked: T[]): T[] {
    if (this.config.hostSubsetSize <= 1 || ranked.length <= 1) return ranked
    const i = Math.floor(Math.random() * Math.min(this.config.hostSubsetSize, ranked.length))
    return [ranked[i]!, ...ranked.filter((_, j) => j !== i)]
  }

  /**
   * Queues a claim for the next batch; resolves once it is committed, rejects
   * with its quota refusal (ResourceExhausted), its lost race (Conflict) or the
   * batch's failure. `onAdded` runs inside the transaction once the claim is
   * certain to be written (the cache counts it there, see the class comment).
   */
  private submit(claim: Claim, deltas: Record<string, number>, onAdded: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ claim, deltas, onAdded, resolve, reject })
      // Requests of the same tick go in one batch.
      if (!this.flushing) {
        this.flushing = true
        setImmediate(() => void this.flush())
      }
    })
  }

  /**
   * Claims in batches, one transaction at a time: the quota of each project
   * and the rows of each provider are locked and read once per batch instead
   * of once per claim, and the allocations written in one statement; each
   * claim is still judged (quota, then capacity) after the ones before it.
   */
  private async flush(): Promise<void> {
    try {
      while (this.pending.length) {
        const batch = this.pending.splice(0, MAX_CLAIM_BATCH[engineOf(this.db)])
        const refused = new Map<PendingClaim, unknown>()
        try {
          await this.db.transaction().execute(async (trx) => {
            refused.clear()
            const owner = (b: PendingClaim) => ({ projectId: b.claim.projectId, userId: b.claim.userId })
            const quota = await this.quota.admission(trx, batch.map(owner))
            const claims = await this.placement.claims(trx, batch.map((b) => b.claim.providerUuid))
            for (const b of batch) {
              const refusal = (await quota.refusal(owner(b), b.deltas)) ?? claims.refusal(b.claim)
              if (refusal) {
                refused.set(b, refusal)
                continue
              }
              quota.admit(owner(b), b.deltas)
              claims.add(b.claim)
              b.onAdded()
            }
            await claims.write()
          })
        } catch (err) {
          for (const b of batch) refused.set(b, err)
        }
        for (const b of batch) {
          if (refused.has(b)) b.reject(refused.get(b))
          else b.resolve()
        }
      }
    } finally {
      this.flushing = false
    }
  }

  private track<T>(p: Promise<T>): Promise<T> {
    const seq = ++this.claimSeq
    this.claims.set(seq, p)
    const done = () => this.claims.delete(seq)
    p.then(done, done)
    return p
  }

  /** Sequence number of the newest claim in flight, 0 when none is. */
  private lastInFlight(): number {
    return this.claims.size ? this.claimSeq : 0
  }

  /**
   * Resolves once every claim up to `seq` has settled. Claim transactions run
   * one at a time in the order they began, so that is (nearly always) when
   * claim `seq` settles; one promise to wait on, not thousands.
   */
  private async settledUpTo(seq: number): Promise<void> {
    for (;;) {
      let oldest: number | undefined
      for (const s of this.claims.keys()) {
        oldest = s
        break // a Map iterates in insertion order: the first key is the oldest
      }
      if (oldest === undefined || oldest > seq) return
      const newest = this.claims.get(seq)
      await (newest ?? this.claims.get(oldest))!.then(() => {}, () => {})
    }
  }

  /** Frees a consumer's allocations (a deleted or failed server). */
  async release(consumerUuid: string): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      const freed = await this.placement.release(trx, consumerUuid)
      for (const [uuid, res] of freed) {
        const h = this.hosts?.get(uuid)
        if (h) add(h.usage, res, -1)
      }
      if (freed.size) this.signalFreed()
    })
  }

  /** Every consumer holding allocations (compute releases those that are no server). */
  consumers(claimedBefore?: Date): Promise<string[]> {
    return this.placement.consumers(this.db, claimedBefore)
  }

  /** Up/down from heartbeats, re-read at most every 100 ms (not per decision: 1,000 hosts × every request adds up). */
  private refreshUp(hosts: Map<string, CachedHost>, force = false): void {
    const now = Date.now()
    if (!force && hosts === this.upOf && now - this.upAt < 100) return
    for (const h of hosts.values()) h.up = this.liveness.isUp(h.host, now)
    this.upOf = hosts
    this.upAt = now
  }

  /** Wakes requests waiting for capacity that in-flight claims held. */
  private signalFreed(): void {
    this.freedEpoch++
    const s = this.freedSignal
    this.freedSignal = deferred()
    s.resolve()
  }
}

/**
 * Placement's step for one host: whether it fits `want` and the request's
 * required and forbidden traits. With `short`, every shortcoming is told
 * (a resource class, `trait T`, `forbidden trait T`); without, the first ends it.
 */
function fits(h: HostState, want: Array<[string, number]>, spec: RequestSpec, short?: (what: string) => void): boolean {
  let ok = true
  for (let i = 0; i < want.length; i++) {
    const [rc, n] = want[i]!
    const inv = h.inventories.get(rc)
    // The common case inline; allocationProblem has the unit rules.
    if (inv && n >= inv.minUnit && n <= inv.maxUnit && n % inv.stepSize === 0 && (h.usage.get(rc) ?? 0) + n <= (inv.total - inv.reserved) * inv.allocationRatio) continue
    if (allocationProblem(rc, inv, h.usage.get(rc) ?? 0, n)) {
      if (!short) return false
      short(rc)
      ok = false
    }
  }
  for (const t of spec.requiredTraits ?? []) if (!h.traits.has(t)) {
    if (!short) return false
    short(`trait ${t}`)
    ok = false
  }
  for (const t of spec.forbiddenTraits ?? []) if (h.traits.has(t)) {
    if (!short) return false
    short(`forbidden trait ${t}`)
    ok = false
  }
  return ok
}

/**
 * What makes requests' decisions the same but for their consumer: the spec
 * without its consumer and owner (which no filter or weigher looks at).
 * Undefined for requests decided alone: a server group's or a local
 * network's members see the hosts chosen before them, a forced host is one.
 */
function sharedDecisionKey(spec: RequestSpec): string | undefined {
  if (spec.group || spec.localNetworks?.length || spec.forceHost) return undefined
  return JSON.stringify({ ...spec, instanceUuid: '', projectId: '', userId: '' })
}

/** A host's cached state from its compute_hosts row and Placement's snapshot. */
function cachedHost(r: Selectable<ComputeHostTable>, snap: PlacementSnapshot): CachedHost {
  return {
    host: r.host,
    uuid: r.uuid,
    availabilityZone: r.availability_zone,
    mapped: r.mapped === 1,
    disabled: r.disabled === 1,
    disabledReason: r.disabled_reason,
    up: false,
    capabilities: { cpuModel: r.cpu_model, arch: r.arch, accelerator: r.accelerator, hypervisorType: r.hypervisor_type, hypervisorVersion: r.hypervisor_version },
    traits: snap.traits.get(r.uuid) ?? new Set(),
    inventories: snap.inventories.get(r.uuid) ?? new Map<string, Inventory>(),
    usage: snap.usage.get(r.uuid) ?? new Map(),
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void
  const promise = new Promise<void>((r) => (resolve = r))
  return { promise, resolve }
}

function add(usage: Map<string, number>, res: Resources, sign: 1 | -1): void {
  for (const [rc, n] of Object.entries(res)) if (n > 0) usage.set(rc, (usage.get(rc) ?? 0) + sign * n)
}
