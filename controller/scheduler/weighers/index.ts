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
  const n = hosts.length
  const totals = new Float64Array(n)
  const raw = new Float64Array(n)
  for (const { weigher, multiplier } of weighers) {
    if (multiplier === 0) continue
    let min = Infinity
    let max = -Infinity
    for (let i = 0; i < n; i++) {
      const v = (raw[i] = weigher.weigh(hosts[i]!, spec))
      if (v < min) min = v
      if (v > max) max = v
    }
    const range = max - min
    if (range > 0) for (let i = 0; i < n; i++) totals[i]! += (multiplier * (raw[i]! - min)) / range
  }
  const better = (i: number, j: number) => totals[i]! > totals[j]! || (totals[i] === totals[j] && hosts[i]!.host < hosts[j]!.host)
  if (limit < n / 8) {
    // Keep the best `limit` indices in order (insertion into a short list).
    const best: number[] = []
    for (let i = 0; i < n; i++) {
      if (best.length === limit && !better(i, best[limit - 1]!)) continue
      let k = best.length === limit ? limit - 1 : best.length
      if (best.length < limit) best.push(i)
      while (k > 0 && better(i, best[k - 1]!)) (best[k] = best[k - 1]!), k--
      best[k] = i
    }
    return best.map((i) => ({ host: hosts[i]!, weight: totals[i]! }))
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => (better(i, j) ? -1 : better(j, i) ? 1 : 0))
  return order.slice(0, Math.min(n, limit)).map((i) => ({ host: hosts[i]!, weight: totals[i]! }))
}
