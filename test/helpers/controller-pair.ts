/**
 * Two controllers on one database of the tap run's shared PostgreSQL cluster
 * (sharedPostgres; run alone outside tap, this process's own), the way the
 * multi-controller suites run them (store/multi-controller,
 * store/outbox-claim, bus/chaos): A bootstraps the database; B joins it,
 * reading the admin openrc A wrote and serving A's images dir (as a shared
 * file system would give them). Both in this process (`inProcessPair`, for
 * suites that reach into `controller`) or each in its own (`processPair`,
 * for suites that kill one). `close()` closes the clients, B, A, then the
 * cluster (nothing for the shared one); a pair that fails to start closes
 * what it started. A suite that stops or kills PostgreSQL passes a cluster
 * of its own (startPostgres).
 */
import { mkdirSync, mkdtempSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { ConfigOverrides } from '../../controller/config.js'
import { cloudClients, type CloudClients } from './cloud.js'
import { startController, type TestController } from './controller.js'
import { spawnController, type ControllerProcess } from './controller-process.js'
import { sharedPostgres, type PostgresCluster } from './postgres.js'

export interface ControllerPair<C> {
  pg: PostgresCluster
  /** The database both controllers use. */
  databaseUrl: string
  a: C
  b: C
  /** Cloud clients of A and of B. */
  ca: CloudClients
  cb: CloudClients
  close(): Promise<void>
}

interface Started {
  address: string
  dataDir: string
  close(): Promise<void>
}

/**
 * Takes `postgres` (already started: the pair calls its stop() on close,
 * which does nothing for the shared one), or else the shared cluster
 * (sharedPostgres); creates `database` (on the tap run's cluster a copy of
 * the migrated template), then A and B by `start` (B given A as its peer).
 */
async function pairOn<C extends Started>(database: string, start: (databaseUrl: string, peer?: C) => Promise<C>, postgres?: PostgresCluster): Promise<ControllerPair<C>> {
  const pg = postgres ?? (await sharedPostgres())
  const started: C[] = []
  try {
    const databaseUrl = await pg.createDatabase(database)
    const a = await start(databaseUrl)
    started.push(a)
    const b = await start(databaseUrl, a)
    started.push(b)
    const ca = cloudClients(a.address)
    const cb = cloudClients(b.address)
    return {
      pg, databaseUrl, a, b, ca, cb,
      async close() {
        for (const c of [ca, cb]) for (const x of Object.values(c)) x.close()
        await b.close()
        await a.close()
        pg.stop()
      },
    }
  } catch (err) {
    for (const c of started.reverse()) await c.close().catch(() => {})
    pg.stop()
    throw err
  }
}

/** Two in-process controllers (startController) with `overrides`, on one new database `database`. */
export function inProcessPair(database: string, overrides: ConfigOverrides, postgres?: PostgresCluster): Promise<ControllerPair<TestController>> {
  return pairOn<TestController>(database, async (databaseUrl, peer) => {
    if (!peer) return startController({ ...overrides, databaseUrl })
    const dataDir = mkdtempSync(path.join(tmpdir(), 'strato-ctl-'))
    mkdirSync(path.join(peer.dataDir, 'images'), { recursive: true, mode: 0o700 })
    symlinkSync(path.join(peer.dataDir, 'images'), path.join(dataDir, 'images'))
    return startController({ ...overrides, databaseUrl, bootstrap: { ...overrides.bootstrap, openrcPath: path.join(peer.dataDir, 'admin-openrc') } }, dataDir)
  }, postgres)
}

/** Two controller processes (spawnController) on `natsUrl` with `overrides`, on one new database `database`. */
export function processPair(database: string, natsUrl: string, overrides: ConfigOverrides, postgres?: PostgresCluster): Promise<ControllerPair<ControllerProcess>> {
  return pairOn<ControllerProcess>(database, (databaseUrl, peer) => spawnController(natsUrl, { ...overrides, databaseUrl }, peer), postgres)
}
