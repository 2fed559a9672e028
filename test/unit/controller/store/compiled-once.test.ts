// compiledOnce (controller/store/engine.ts): a query built once and run again with new values for its named
// parameters — each call gets its own values in their places, the query's constants stay, and a name used
// twice takes the same value in both places.
import BetterSqlite3 from 'better-sqlite3'
import { Kysely, SqliteDialect, sql } from 'kysely'
import t from 'tap'
import { compiledOnce } from '../../../../controller/store/engine.js'

t.test('each call runs the one compiled query with its own values, constants kept', async (t) => {
  const db = new Kysely<any>({ dialect: new SqliteDialect({ database: new BetterSqlite3(':memory:') }) })
  t.teardown(() => db.destroy())
  await sql`CREATE TABLE flavors (id TEXT PRIMARY KEY, name TEXT, ram INTEGER, disabled INTEGER)`.execute(db)
  await db.insertInto('flavors').values([['1', 'm1.tiny', 64], ['2', 'm1.small', 128], ['3', 'm1.large', 512]].map(([id, name, ram]) => ({ id, name, ram, disabled: 0 }))).execute()
  let built = 0
  const find = compiledOnce(db, ['key', 'minRam'] as const, (p) => {
    built++
    return db.selectFrom('flavors').select(['id']).where((eb) => eb.or([eb('id', '=', p.key), eb('name', '=', p.key)])).where('ram', '>=', p.minRam).where('disabled', '=', 0).orderBy('id')
  })
  t.same(await find({ key: '2', minRam: 0 }), [{ id: '2' }], 'by id')
  t.same(await find({ key: 'm1.large', minRam: 0 }), [{ id: '3' }], 'by name: the name used twice takes the value in both places')
  t.same(await find({ key: 'm1.tiny', minRam: 100 }), [], 'another value of the second name')
  await db.updateTable('flavors').set({ disabled: 1 }).where('id', '=', '2').execute()
  t.same(await find({ key: '2', minRam: 0 }), [], "the query's constant (disabled = 0) kept")
  t.equal(built, 1, 'built once')
})
