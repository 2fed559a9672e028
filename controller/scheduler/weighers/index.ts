/** The weighers `scheduler.weighers` may name, and how their weights combine (nova `weights/__init__.py`). */
import type { HostState, HostWeigher, RequestSpec } from '../model.js'
import { cpuWeigher } from './cpu-weigher.js'
import { diskWeigher } from './disk-weigher.js'
import { ramWeigher } from './ram-weigher.js'
import { serverGroupSoftAffinityWeigher, serverGroupSoftAntiAffinityWeigher } from './server-group-soft-weighers.js'

export const WEIGHERS: ReadonlyMap<string, HostWeigher> = new Map([ramWeigher, cpuWeigher, diskWeigher, serverGroupSoftAffinityWeigher, serverGroupSoftAntiAffinityWeigher].map((w) => [w.name, w]))

/** Min-max normalisation to [0, 1]; all equal → all 0 (nova `normalize`). */
export function normalize(values: number[]): number[] {
  let min = Infinity
  let max = -Infinity
  for (const v of values) {
    if (v < min) min = v
    if (v > max) max = v
  }
  const range = max - min
  return values.map((v) => (range > 0 ? (v - min) / range : 0))
}

/**
 * Weighs hosts and returns them best first: Σ multiplierᵢ · normalize(weigherᵢ).
 * Ties keep host-name order, so results are deterministic. With `limit`, only
 * the best `limit` (a partial selection instead of sorting every host).
 */
export function weighHosts(hosts: HostState[], spec: RequestSpec, weighers: Array<{ weigher: HostWeigher; multiplier: number }>, limit = Infinity): Array<{ host: HostState; weight: number }> {
  const w = new Weighing(hosts, spec, weighers)
  return w.best(limit).map((i) => ({ host: hosts[i]!, weight: w.totals[i]! }))
}

/**
 * The weighing of one list of hosts for one kind of request, kept up to date
 * as hosts change (the scheduler's decisions made together, see
 * Scheduler.decideTogether): after a reservation only that host is weighed
 * again, and the normalisation is redone only when that host was (or now
 * is) a weigher's minimum or maximum — so `best` always equals what
 * `weighHosts` would return for the hosts still in the list, at a fraction
 * of the cost.
 */
export class Weighing {
  /** Σ multiplierᵢ · normalize(weigherᵢ) per host. */
  readonly totals: Float64Array
  /** 0 for a host taken out of the list (`changed(i, true)`). */
  private readonly alive: Uint8Array
  private readonly raw: Float64Array[]
  private readonly min: number[]
  private readonly max: number[]

  constructor(readonly hosts: HostState[], private readonly spec: RequestSpec, private readonly weighers: Array<{ weigher: HostWeigher; multiplier: number }>) {
    const n = hosts.length
    this.totals = new Float64Array(n)
    this.alive = new Uint8Array(n).fill(1)
    this.raw = weighers.map(({ weigher, multiplier }) => {
      const r = new Float64Array(n)
      if (multiplier !== 0) for (let i = 0; i < n; i++) r[i] = weigher.weigh(hosts[i]!, spec)
      return r
    })
    this.min = weighers.map(() => 0)
    this.max = weighers.map(() => 0)
    this.normalize()
  }

  private normalize(): void {
    const n = this.hosts.length
    this.totals.fill(0)
    for (let w = 0; w < this.weighers.length; w++) {
      const { multiplier } = this.weighers[w]!
      if (multiplier === 0) continue
      const raw = this.raw[w]!
      let min = Infinity
      let max = -Infinity
      for (let i = 0; i < n; i++) {
        if (!this.alive[i]) continue
        const v = raw[i]!
        if (v < min) min = v
        if (v > max) max = v
      }
      this.min[w] = min
      this.max[w] = max
      const range = max - min
      if (range > 0) for (let i = 0; i < n; i++) if (this.alive[i]) this.totals[i]! += (multiplier * (raw[i]! - min)) / range
    }
  }

  /** Indices of the best `limit` hosts still in the list, best first (ties by host name). */
  best(limit = Infinity): number[] {
    const { hosts, totals, alive } = this
    const n = hosts.length
    const better = (i: number, j: number) => totals[i]! > totals[j]! || (totals[i] === totals[j] && hosts[i]!.host < hosts[j]!.host)
    if (limit < n / 8) {
      // Keep the best `limit` indices in order (insertion into a short list).
      const best: number[] = []
      for (let i = 0; i < n; i++) {
        if (!alive[i]) continue
        if (best.length === limit && !better(i, best[limit - 1]!)) continue
        let k = best.length === limit ? limit - 1 : best.length
        if (best.length < limit) best.push(i)
        while (k > 0 && better(i, best[k - 1]!)) (best[k] = best[k - 1]!), k--
        best[k] = i
      }
      return best
    }
    const order: number[] = []
    for (let i = 0; i < n; i++) if (alive[i]) order.push(i)
    order.sort((i, j) => (better(i, j) ? -1 : better(j, i) ? 1 : 0))
    return order.slice(0, Math.min(order.length, limit))
  }

  /** Host `i` changed (its usage): weigh it again, or, `gone`, take it out of the list. */
  changed(i: number, gone: boolean): void {
    let inside = true
    for (let w = 0; w < this.weighers.length; w++) {
      const { weigher, multiplier } = this.weighers[w]!
      if (multiplier === 0) continue
      const raw = this.raw[w]!
      const min = this.min[w]!
      const max = this.max[w]!
      const old = raw[i]!
      const v = gone ? old : (raw[i] = weigher.weigh(this.hosts[i]!, this.spec))
      if (!(old > min && old < max && v >= min && v <= max)) inside = false
    }
    if (gone) this.alive[i] = 0
    // The bounds stay: only this host's total moves (computed as normalize() does, term by term).
    if (inside) {
      let total = 0
      for (let w = 0; w < this.weighers.length; w++) {
        const { multiplier } = this.weighers[w]!
        const range = this.max[w]! - this.min[w]!
        if (multiplier !== 0 && range > 0) total += (multiplier * (this.raw[w]![i]! - this.min[w]!)) / range
      }
      this.totals[i] = gone ? 0 : total
      return
    }
    this.normalize()
  }
}
