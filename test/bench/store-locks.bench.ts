/**
 * node --import tsx test/bench/store-locks.bench.ts — how concurrent placement
 * claims stay exact on PostgreSQL, measured: two Kysely pools on one database
 * (two controllers) make 600 claims of 1 VCPU on 3 providers of 100 each;
 *  - locks: READ COMMITTED, the claim takes the provider's row lock first
 *    (what controller/scheduler/placement.ts does);
 *  - serializable: SERIALIZABLE transactions, retried on 40001/40P01.
 * Each prints claims/s, admitted (must be 300), and retries. A private
 * cluster (test/helpers/postgres.ts); not a test: it prints figures.
 */
import { randomUUID } from 'node:crypto'
import { openDatabase, type Db } from '../../controller/store/db.js'
import { Placement } from '../../controller/scheduler/placement.js'
import { Conflict } from '../../proto/errors.js'
import { startPostgres } from '../helpers/postgres.js'

const CLAIMS = Number(process.env.BENCH_CLAIMS ?? 600)
const PER_PROVIDER = 100

async function setup(db: Db): Promise<string[]> {
  const placement = new Placement(db)
  const ids: string[] = []
  for (let i = 0; i < 3; i++) {
    const uuid = randomUUID()
    await db.transaction().execute((trx) => placement.setProvider(trx, {
      uuid, name: `bench-${uuid}`, traits: [],
      inventories: { VCPU: { total: PER_PROVIDER, reserved: 0, minUnit: 1, maxUnit: PER_PROVIDER, stepSize: 1, allocationRatio: 1 } },
    }))
    ids.push(uuid)
  }
  return ids
}

async function run(mode: 'locks' | 'serializable', dbs: Db[], providers: string[]): Promise<void> {
  let retries = 0
  const placements = dbs.map((db) => new Placement(db))
  const t0 = performance.now()
  const results = await Promise.allSettled(Array.from({ length: CLAIMS }, async (_, i) => {
    const db = dbs[i % dbs.length]!
    const placement = placements[i % dbs.length]!
    const consumer = randomUUID()
    // Try the providers in turn, as the scheduler tries its candidates.
    for (let k = 0; k < providers.length; k++) {
      const providerUuid = providers[(i + k) % providers.length]!
      for (;;) {
        try {
          const tx = mode === 'serializable' ? db.transaction().setIsolationLevel('serializable') : db.transaction()
          await tx.execute((trx) => placement.claim(trx, { consumerUuid: consumer, providerUuid, resources: { VCPU: 1 }, projectId: 'p', userId: 'u' }))
          return providerUuid
        } catch (err) {
          const code = (err as { code?: string }).code
          if (code === '40001' || code === '40P01') {
            retries++
            continue
          }
          if (err instanceof Conflict) break
          throw err
        }
      }
    }
    throw new Conflict('no provider has room')
  }))
  const ms = performance.now() - t0
  const admitted = results.filter((r) => r.status === 'fulfilled').length
  const other = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected' && !(r.reason instanceof Conflict))
  const errors = `${other.length}${other[0] ? ` (${(other[0].reason as Error).message})` : ''}`
  console.log(`${mode.padEnd(12)} ${CLAIMS} claims in ${ms.toFixed(0)} ms = ${(CLAIMS / (ms / 1000)).toFixed(0)} claims/s; admitted ${admitted} (capacity ${3 * PER_PROVIDER}); retries ${retries}; other errors ${errors}`)
}

const pg = await startPostgres()
try {
  for (const mode of ['locks', 'serializable'] as const) {
    const url = await pg.createDatabase(`bench_${mode}`)
    const dbs = [await openDatabase(url), await openDatabase(url)]
    try {
      await run(mode, dbs, await setup(dbs[0]!))
    } finally {
      for (const db of dbs) await db.destroy()
    }
  }
} finally {
  pg.stop()
}
