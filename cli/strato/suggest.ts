/** "Did you mean …?": edit distance over command names and option flags. */

/** Damerau-Levenshtein distance (optimal string alignment): a swapped pair of letters costs 1. */
export function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)))
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1)
      d[i]![j] = v
    }
  }
  return d[a.length]![b.length]!
}

/** The candidates nearest to `typed` (at most `max`), closest first; none if nothing is near. */
export function closest(typed: string, candidates: string[], max = 3): string[] {
  const limit = Math.max(2, Math.floor(typed.length / 3))
  return [...new Set(candidates)]
    .map((c) => ({ c, d: distance(typed, c) }))
    .filter((x) => x.d <= limit)
    .sort((x, y) => x.d - y.d || x.c.localeCompare(y.c))
    .slice(0, max)
    .map((x) => x.c)
}

/**
 * Commands close to what was typed: each command is compared with as many typed
 * words as it has (so `porject list` finds `project list`, and `domain lst`
 * finds `domain list`), and a right noun with a wrong verb lists the noun's verbs.
 */
export function suggestCommands(typed: string[], names: string[], max = 3): string[] {
  // Verb before noun (`strato create domain`): openstack puts the noun first.
  const swapped = [...typed.slice(0, 2)].reverse().join(' ')
  if (typed.length >= 2 && names.includes(swapped)) return [swapped]
  const scored: Array<{ c: string; d: number }> = []
  for (const name of names) {
    const n = name.split(' ').length
    if (typed.length < n) continue
    const t = typed.slice(0, n).join(' ')
    const d = distance(t, name)
    if (d <= Math.max(2, Math.floor(t.length / 4))) scored.push({ c: name, d })
  }
  if (scored.length === 0 && typed.length > 0) {
    // Compare the first word alone: `strato porject` → project create, project list, …
    const nouns = [...new Set(names.map((n) => n.split(' ')[0]!))]
    const noun = closest(typed[0]!, nouns, 1)[0]
    if (noun) return names.filter((n) => n.split(' ')[0] === noun).slice(0, max)
  }
  return scored.sort((x, y) => x.d - y.d || x.c.localeCompare(y.c)).slice(0, max).map((x) => x.c)
}
