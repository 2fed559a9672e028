/**
 * Listings kept while the database stands still. A catalog asks for a
 * listing by a key (who asks and with which filters) and says how to read
 * it; while the database's change stamp (`changeStamp`) is the one read
 * before the kept listing was, the same frozen array is handed out again, so
 * what callers keep with it (REST its JSON and its answer, gRPC its encoding)
 * stays current for exactly as long. On an engine without a stamp
 * (PostgreSQL) every listing is read.
 */
import { changeStamp, type Db } from './db.js'

/** How many listings (who asks, filters) a catalog keeps by default. */
const KEPT_LISTINGS = 1_000

export class KeptListings<T extends object> {
  private readonly kept = new Map<string, { stamp: string; items: readonly Readonly<T>[] }>()

  constructor(
    private readonly db: Db,
    private readonly limit = KEPT_LISTINGS,
  ) {}

  /** The listing under `key`: kept while nothing changed, else `read` (its items frozen: every caller of the key shares them). */
  async list(key: string, read: () => Promise<T[]>): Promise<readonly Readonly<T>[]> {
    const stamp = changeStamp(this.db)
    if (stamp === undefined) return read()
    const kept = this.kept.get(key)
    if (kept?.stamp === stamp) return kept.items
    const items = Object.freeze((await read()).map((i) => Object.freeze(i)))
    this.kept.delete(key) // re-inserted last: the oldest entries go first
    if (this.kept.size >= this.limit) this.kept.delete(this.kept.keys().next().value!)
    this.kept.set(key, { stamp, items })
    return items
  }
}
