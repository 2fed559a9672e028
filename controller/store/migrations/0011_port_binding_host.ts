/** A port's binding:host_id: the host whose agent serves it (its server's host; a network:dhcp port's DHCP agent). */
import type { Kysely, Migration } from 'kysely'

export const migration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable('ports').addColumn('binding_host_id', 'varchar(255)', (c) => c.notNull().defaultTo('')).execute()
    await db.schema.createIndex('ports_binding_host').on('ports').columns(['binding_host_id', 'device_owner']).execute()
  },
}
