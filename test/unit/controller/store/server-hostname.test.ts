// Migration 0021 (servers.hostname): servers made before it keep the hostname they were shown (the old
// derivation, frozen in the migration); new servers get Nova's (hostnameOf); asked-for ones are checked as
// Nova's schemas check them (checkHostname: a DNS label from 2.90, an FQDN from 2.94).
import BetterSqlite3 from 'better-sqlite3'
import { Kysely, Migrator, SqliteDialect, sql } from 'kysely'
import t from 'tap'
import { migrations } from '../../../../controller/store/migrations.js'
import { checkHostname, hostnameOf } from '../../../../controller/compute/server-model.js'

t.test('0021 gives every existing server the hostname it was shown so far, and applies once', async (t) => {
  const db = new Kysely<unknown>({ dialect: new SqliteDialect({ database: new BetterSqlite3(':memory:') }) })
  t.teardown(() => db.destroy())
  const before = Object.fromEntries(Object.entries(migrations).filter(([name]) => name < '0021'))
  t.notOk((await new Migrator({ db, provider: { getMigrations: async () => before } }).migrateToLatest()).error)
  const ts = new Date().toISOString()
  const names = { a: 'Web Server', b: 'Café.Menu_2 (new)!', c: '!!!', d: 'Web Server' }
  for (const [uuid, name] of Object.entries(names)) {
    await sql`INSERT INTO servers (uuid, name, project_id, user_id, flavor_id, flavor_name, vcpus, ram, disk, ephemeral, swap, image_id, image_name, instance_name, vm_state, reservation_id, created_at, updated_at)
      VALUES (${uuid}, ${name}, 'p', 'u', '1', 'm1', 1, 64, 1, 0, 0, 'i', 'cirros', ${`instance-${uuid}`}, 'active', 'r-1', ${ts}, ${ts})`.execute(db)
  }
  const all = new Migrator({ db, provider: { getMigrations: async () => migrations }, allowUnorderedMigrations: true })
  const r = await all.migrateToLatest()
  t.notOk(r.error)
  t.same(r.results?.map((x) => x.migrationName), Object.keys(migrations).filter((n) => n >= '0021'))
  const rows = await sql<{ uuid: string; hostname: string }>`SELECT uuid, hostname FROM servers ORDER BY uuid`.execute(db)
  t.same(rows.rows, [{ uuid: 'a', hostname: 'web-server' }, { uuid: 'b', hostname: 'caf-menu-2-new' }, { uuid: 'c', hostname: 'server' }, { uuid: 'd', hostname: 'web-server' }], 'the old derivation, not Nova\'s')
  t.same((await all.migrateToLatest()).results, [], 'nothing applies twice')
})

t.test("hostnameOf is Nova's sanitize_hostname (and _populate_instance_names)", async (t) => {
  const cases: Array<[string, string]> = [
    ['Web Server', 'web-server'], ['With Drive_1', 'with-drive-1'], ['guest-instance-1.domain.com', 'guest-instance-1-domain-com'],
    ['Café.Menu_2 (new)!', 'café-menu-2-new'], ['-.x.-', 'x'], ['日本 web', 'web'], ['a'.repeat(70), 'a'.repeat(63)], ['x!y', 'xy'],
  ]
  for (const [name, want] of cases) t.equal(hostnameOf(name, 'u-1'), want, name)
  t.equal(hostnameOf('!!!', 'u-1'), 'Server-u-1', 'nothing left: Server-<uuid>, as Nova writes it')
  t.equal(hostnameOf('Many', 'u-1', 1, 2), 'many-2', 'several servers of one request: -<n>')
})

t.test('checkHostname: a DNS label of 2 to 63 (2.90), an FQDN of 1 to 255 (2.94)', async (t) => {
  for (const ok of ['ab', 'web-1', 'A1', 'x'.repeat(63)]) t.equal(checkHostname(ok, false), ok)
  for (const bad of ['a', '-ab', 'ab-', 'a.b', 'a_b', 'x'.repeat(64), '']) t.throws(() => checkHostname(bad, false), { name: 'InvalidArgument', field: 'hostname' }, JSON.stringify(bad))
  for (const ok of ['a', 'web.example.org', 'under_score', '-x.', 'x'.repeat(255)]) t.equal(checkHostname(ok, true), ok)
  for (const bad of ['', 'a b', 'web/1', 'x'.repeat(256)]) t.throws(() => checkHostname(bad, true), { name: 'InvalidArgument', field: 'hostname' }, JSON.stringify(bad))
})
