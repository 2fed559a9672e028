/**
 * `servers.hostname`: Nova's instance hostname, kept instead of derived from
 * the display name on every read. A server gets it at create (asked for from
 * compute microversion 2.90, else derived from its name) and keeps it across
 * renames; PUT /servers may change it (2.90). The guest sees it through the
 * config drive and the metadata service.
 *
 * Servers made before it keep the hostname they were shown so far: the name
 * made a DNS label as Strato derived it until now (lower case, runs of other
 * characters one '-', at most 63), frozen here as this migration's own copy.
 */
import { sql, type Kysely, type Migration } from 'kysely'

function legacyHostname(displayName: string): string {
  const label = displayName.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 63).replace(/-+$/, '')
  return label || 'server'
}

export const migration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable('servers').addColumn('hostname', 'varchar(255)', (c) => c.notNull().defaultTo('')).execute()
    const rows = await sql<{ uuid: string; name: string }>`SELECT uuid, name FROM servers`.execute(db)
    // One update per distinct hostname, not per server.
    const byHostname = new Map<string, string[]>()
    for (const r of rows.rows) {
      const h = legacyHostname(r.name)
      byHostname.set(h, [...(byHostname.get(h) ?? []), r.uuid])
    }
    for (const [hostname, uuids] of byHostname) {
      for (let i = 0; i < uuids.length; i += 500) {
        const batch = uuids.slice(i, i + 500)
        await sql`UPDATE servers SET hostname = ${hostname} WHERE uuid IN (${sql.join(batch)})`.execute(db)
      }
    }
  },
}
