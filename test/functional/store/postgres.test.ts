// The store on PostgreSQL, whatever STRATO_TEST_DATABASE says: an empty database of the tap run's
// shared cluster (or, run alone outside tap, of one started here: test/helpers/postgres.ts), the
// migrations, clear errors for a wrong URL, CRUD and
// AlreadyExists through the controller's gRPC, and two controllers on one database racing placement
// claims and a quota — exactly the capacity and exactly the quota admitted, nothing over-committed —
// and a heartbeat that counts while its write waits on a lock.
import t from 'tap'
import { Kysely, Migrator, PostgresDialect, sql } from 'kysely'
import PgDriver from 'pg'
import { sharedPostgres, type PostgresCluster } from '../../helpers/postgres.js'
import { startController, type TestController } from '../../helpers/controller.js'
import { call, client, failure, status } from '../../helpers/grpc.js'
import { isForeignKeyViolation, isUniqueViolation, maskPassword, openDatabase } from '../../../controller/store/db.js'
import { migrations } from '../../../controller/store/migrations.js'
import { InvalidArgument, ResourceExhausted, Unavailable } from '../../../proto/errors.js'
import type { Project } from '../../../proto/gen/strato/identity/v1/identity.js'
import { QuotasClient } from '../../../proto/gen/strato/compute/v1/compute.js'
import { fakeHost, spec } from '../compute/fake-hosts.js'

/** The error opening `url` fails with (an open that succeeds is a failure of the test). */
async function refusal(url: string): Promise<Error> {
  const db = await openDatabase(url).catch((e: Error) => e)
  if (!(db instanceof Error)) {
    await db.destroy()
    throw new Error(`${maskPassword(url)} opened`)
  }
  return db
}

let pg: PostgresCluster
let url: string
t.before(async () => {
  pg = await sharedPostgres()
  // Empty, not the run's migrated template: the first test applies the migrations itself.
  url = await pg.createDatabase(undefined, { empty: true })
})

t.test('migrations apply once, with PostgreSQL types where SQLite\'s differ', async (t) => {
  const db = await openDatabase(url)
  t.teardown(() => db.destroy())
  const applied = await sql<{ name: string }>`SELECT name FROM kysely_migration ORDER BY name`.execute(db)
  t.same(applied.rows.map((r) => r.name), Object.keys(migrations).sort(), 'every migration is recorded')
  const again = await openDatabase(url)
  await again.destroy()
  t.equal((await sql<{ n: number }>`SELECT count(*) AS n FROM kysely_migration`.execute(db)).rows[0]!.n, Object.keys(migrations).length, 'opening again applies nothing twice (and count(*) is a number)')

  // revocation_events.id auto-increments (serial), as SQLite's AUTOINCREMENT key.
  const ts = new Date().toISOString()
  for (const u of ['u1', 'u2']) await db.insertInto('revocation_events').values({ user_id: u, issued_before: Date.now(), created_at: ts }).execute()
  const ids = (await db.selectFrom('revocation_events').select(['id', 'issued_before']).orderBy('id').execute())
  t.equal(ids.length, 2)
  t.ok(ids[1]!.id > ids[0]!.id, 'ids ascend')
  t.type(ids[0]!.issued_before, 'number', 'bigint columns come back as numbers')

  // allocation_ratio keeps a double's precision (PostgreSQL's `real` would return 1.10000002).
  await db.insertInto('resource_providers').values({ uuid: '00000000-0000-4000-8000-0000000000aa', name: 'ratio', generation: 0, created_at: ts }).execute()
  await db.insertInto('inventories').values({ provider_uuid: '00000000-0000-4000-8000-0000000000aa', resource_class: 'VCPU', total: 4, reserved: 0, min_unit: 1, max_unit: 4, step_size: 1, allocation_ratio: 1.1 }).execute()
  t.equal((await db.selectFrom('inventories').select('allocation_ratio').executeTakeFirstOrThrow()).allocation_ratio, 1.1)

  // Constraint violations are recognised by PostgreSQL's SQLSTATE codes.
  const dup = await db.insertInto('resource_providers').values({ uuid: '00000000-0000-4000-8000-0000000000aa', name: 'again', generation: 0, created_at: ts }).execute().catch((e: unknown) => e)
  t.ok(isUniqueViolation(dup), `23505 is a unique violation (${(dup as { code?: string }).code})`)
  const orphan = await db.insertInto('provider_traits').values({ provider_uuid: '00000000-0000-4000-8000-0000000000ff', trait: 'HW_CPU_X86_AVX' }).execute().catch((e: unknown) => e)
  t.ok(isForeignKeyViolation(orphan), `23503 is a foreign-key violation (${(orphan as { code?: string }).code})`)
  t.notOk(isUniqueViolation(orphan))
})

t.test('an open reads the migrations done in one statement, and leaves any other state to the Migrator', async (t) => {
  // A database one migration behind (an upgrade): the open applies it.
  const behind = await pg.createDatabase(undefined, { empty: true })
  const latest = Object.keys(migrations).sort().at(-1)!
  const old = new Kysely<unknown>({ dialect: new PostgresDialect({ pool: new PgDriver.Pool({ connectionString: behind, max: 1 }) }) })
  const before = Object.fromEntries(Object.entries(migrations).filter(([name]) => name !== latest))
  t.notOk((await new Migrator({ db: old, provider: { getMigrations: async () => before }, allowUnorderedMigrations: true }).migrateToLatest()).error)
  await old.destroy()
  const db = await openDatabase(behind)
  t.teardown(() => db.destroy())
  const names = async () => (await sql<{ name: string }>`SELECT name FROM kysely_migration ORDER BY name`.execute(db)).rows.map((r) => r.name)
  t.same(await names(), Object.keys(migrations).sort(), `${latest} applied at open`)
  // One this version does not know (a newer version ran here): refused, naming it, as before.
  await sql`INSERT INTO kysely_migration (name, timestamp) VALUES ('9999_from_the_future', ${new Date().toISOString()})`.execute(db)
  const e = await refusal(behind)
  t.match(e.message, /9999_from_the_future/, 'an unknown migration is not taken for up to date')
  t.equal((await names()).length, Object.keys(migrations).length + 1, 'and nothing changed')
})

t.test('a wrong database URL fails with what is wrong, the password masked', async (t) => {
  const wrongPassword = url.replace(`:${pg.password}@`, ':not-the-password@')
  const e1 = await refusal(wrongPassword)
  t.type(e1, InvalidArgument)
  t.match(e1.message, /refused the credentials/)
  t.notMatch(e1.message, /not-the-password/, 'the password is not shown')
  t.match(e1.message, /:\*\*\*@/)

  const e2 = await refusal(pg.url('no_such_db'))
  t.type(e2, InvalidArgument)
  t.match(e2.message, /names a database that does not exist/)
  t.notMatch(e2.message, new RegExp(pg.password))

  // A port nothing listens on (the cluster's own port + 1 is not ours to assume free: port 1 is never a PostgreSQL).
  const e3 = await refusal(`postgres://strato:secret@127.0.0.1:1/strato`)
  t.type(e3, Unavailable)
  t.match(e3.message, /cannot reach PostgreSQL at 127\.0\.0\.1:1\/strato/)
  t.notMatch(e3.message, /secret/)

  const e4 = await refusal('postgres://strato:secret@127.0.0.1:5432')
  t.type(e4, InvalidArgument)
  t.match(e4.message, /no database name/)
  t.equal(maskPassword('postgresql://a:b@c:1/d'), 'postgresql://a:***@c:1/d')
  t.equal(maskPassword('postgres://a@c/d'), 'postgres://a@c/d', 'no password, nothing to mask')
})

t.test('two controllers on one database', async (t) => {
  const a = await startController({ databaseUrl: url })
  t.teardown(() => a.close())
  // The second finds the first's admin (its openrc): bootstrap is idempotent on a shared database.
  const b = await startController({ databaseUrl: url, bootstrap: { openrcPath: `${a.dataDir}/admin-openrc` } })
  t.teardown(() => b.close())
  const quotas = client(QuotasClient, b.address)
  t.teardown(() => quotas.close())

  await t.test('CRUD through gRPC on either; a duplicate is ALREADY_EXISTS', async (t) => {
    const p = await call<Project>(a.clients.projects, 'createProject', { name: 'pg-proj', domainId: 'default', description: 'on A' }, a.adminToken)
    t.equal((await call<Project>(b.clients.projects, 'getProject', { id: p.id }, b.adminToken)).description, 'on A', 'B reads what A wrote')
    const dup = await failure(call(b.clients.projects, 'createProject', { name: 'pg-proj', domainId: 'default' }, b.adminToken))
    t.equal(dup.code, status.ALREADY_EXISTS)
    t.match(dup.details, /pg-proj/)
    await call(b.clients.projects, 'updateProject', { id: p.id, description: 'on B' }, b.adminToken)
    t.equal((await call<Project>(a.clients.projects, 'getProject', { id: p.id }, a.adminToken)).description, 'on B')
    await call(a.clients.projects, 'deleteProject', { id: p.id }, a.adminToken)
    t.equal((await failure(call(b.clients.projects, 'getProject', { id: p.id }, b.adminToken))).code, status.NOT_FOUND)
  })

  const project = async (name: string, limits: Record<string, number>) => {
    const p = await call<Project>(a.clients.projects, 'createProject', { name, domainId: 'default' }, a.adminToken)
    await call(quotas, 'updateQuota', { projectId: p.id, limits }, b.adminToken)
    return p.id
  }
  const reset = async () => {
    const db = a.controller.db
    await db.deleteFrom('allocations').execute()
    await db.deleteFrom('compute_hosts').execute()
    await db.deleteFrom('resource_providers').execute()
    a.controller.scheduler.invalidate()
    b.controller.scheduler.invalidate()
  }
  const addHosts = async (...hosts: ReturnType<typeof fakeHost>[]) => {
    for (const h of hosts) await a.controller.hosts.announce(h)
    await a.controller.hosts.discover()
    // Each controller judges up/down from the heartbeats it receives: B gets them too.
    for (const h of hosts) await b.controller.hosts.heartbeat(h.host)
    b.controller.scheduler.invalidate()
  }

  await t.test('200 claims from two controllers on 3 hosts of capacity 20: exactly 60, 20 per host', async (t) => {
    await reset()
    const projectId = await project('pg-claims', { instances: -1, cores: -1, ram: -1 })
    // 5 vCPUs × 4.0 = 20 servers of 1 vCPU each (10752 − 512 MiB reserved fits 20 × 512 MiB).
    await addHosts(fakeHost('pg1', { vcpus: 5, memoryMb: 10752 }), fakeHost('pg2', { vcpus: 5, memoryMb: 10752 }), fakeHost('pg3', { vcpus: 5, memoryMb: 10752 }))
    const results = await Promise.allSettled(Array.from({ length: 200 }, (_, i) => (i % 2 ? b : a).controller.scheduler.schedule(spec(projectId, 'u'))))
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
    t.equal(results.length - refused.length, 60, 'exactly the capacity of the three hosts')
    const admitted = (odd: number) => results.filter((r, i) => i % 2 === odd && r.status === 'fulfilled').length
    t.ok(admitted(0) > 0 && admitted(1) > 0, `both controllers placed servers (A ${admitted(0)}, B ${admitted(1)})`)
    t.ok(refused.every((r) => r.reason instanceof ResourceExhausted && /no valid host/.test(r.reason.message) && !/down/.test(r.reason.message)), `the rest are refused as no valid host (${refused[0]?.reason?.message})`)
    t.same(await a.controller.placement.overCommitted(), [], 'no provider over capacity')
    const perHost = new Map<string, number>()
    for (const x of await a.controller.placement.listAllocations()) perHost.set(x.providerUuid, (perHost.get(x.providerUuid) ?? 0) + (x.resources.VCPU ?? 0))
    t.same([...perHost.values()].sort(), [20, 20, 20], 'sum of allocations per host = capacity')
  })

  await t.test('a request whose every candidate the other controller took looks again, on a fresh read, before saying no valid host', async (t) => {
    await reset()
    const projectId = await project('pg-lost', { instances: -1, cores: -1, ram: -1 })
    // Six hosts of 20 that A's cache ranks first (most free RAM) — more than the candidates one
    // pass keeps (maxAttempts + 2) — and a small one of 4.
    const big = ['pgl1', 'pgl2', 'pgl3', 'pgl4', 'pgl5', 'pgl6']
    await addHosts(...big.map((h) => fakeHost(h, { vcpus: 5, memoryMb: 10752 })), fakeHost('pgl7', { vcpus: 1, memoryMb: 2560 }))
    await a.controller.scheduler.hostStates() // A's cache sees the big hosts empty
    await Promise.all(big.map(async (host) => {
      for (let i = 0; i < 20; i++) await b.controller.scheduler.schedule({ ...spec(projectId, 'u'), forceHost: host })
    }))
    // A's candidates are all full hosts: its first claim is lost, the reread shows the rest full too.
    const placed = await a.controller.scheduler.schedule(spec(projectId, 'u'))
    t.equal(placed.host, 'pgl7', 'placed on the host with room, not refused')
    t.same(await a.controller.placement.overCommitted(), [], 'no provider over capacity')
  })

  await t.test('200 creates from two controllers against a quota of 37: exactly 37', async (t) => {
    await reset()
    const projectId = await project('pg-quota', { instances: 37, cores: -1, ram: -1 })
    await addHosts(fakeHost('pgq1'), fakeHost('pgq2'), fakeHost('pgq3'))
    const results = await Promise.allSettled(Array.from({ length: 200 }, (_, i) => (i % 2 ? b : a).controller.scheduler.schedule(spec(projectId, 'u'))))
    t.equal(results.filter((r) => r.status === 'fulfilled').length, 37)
    const admitted = (odd: number) => results.filter((r, i) => i % 2 === odd && r.status === 'fulfilled').length
    t.ok(admitted(0) > 0 && admitted(1) > 0, `both controllers admitted creates (A ${admitted(0)}, B ${admitted(1)})`)
    const reasons = new Set(results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : [])))
    t.same([...reasons], ['quota exceeded for instances: 37 of 37 in use, 1 more requested; delete some or ask an admin to raise the quota'])
    t.same((await b.controller.placement.getUsages({ projectId })).usages, { DISK_GB: 37, MEMORY_MB: 37 * 512, VCPU: 37 })
  })

  await t.test('a heartbeat counts at once, while its database write waits for the row (a busy pool, a lock)', async (t) => {
    await reset()
    await addHosts(fakeHost('beat1'))
    // Beats a day apart: far past the down time, so only the second beat can make the host up at t1.
    const day = 86_400_000
    const t0 = Date.now() + day
    t.equal(await a.controller.hosts.heartbeat('beat1', new Date(t0)), true, 'written')
    // Another session holds the host's row: the next write (due) waits for it.
    const holder = new PgDriver.Client({ connectionString: url })
    await holder.connect()
    t.teardown(() => holder.end())
    await holder.query('BEGIN')
    await holder.query("SELECT host FROM compute_hosts WHERE host = 'beat1' FOR UPDATE")
    const t1 = t0 + day
    const beating = a.controller.hosts.heartbeat('beat1', new Date(t1))
    const waiting = await Promise.race([beating.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), 200))])
    t.equal(waiting, true, 'the write waits for the row')
    t.equal(a.controller.hosts.isUp('beat1', t1 + 1), true, 'the host is up as of the beat meanwhile')
    await holder.query('COMMIT')
    t.equal(await beating, true, 'then written')
  })
})
