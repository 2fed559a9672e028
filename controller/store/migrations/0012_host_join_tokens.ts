/** Join tokens: a new host's one-time, expiring way in (kubeadm's bootstrap tokens), and which host used each. */
import type { Kysely, Migration } from 'kysely'

export const migration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('host_join_tokens')
      .addColumn('id', 'varchar(6)', (c) => c.primaryKey())
      // sha256 of the secret half, hex: the secret itself is never stored.
      .addColumn('secret_sha256', 'varchar(64)', (c) => c.notNull())
      .addColumn('description', 'varchar(255)', (c) => c.notNull().defaultTo(''))
      .addColumn('host', 'varchar(255)', (c) => c.notNull().defaultTo(''))
      .addColumn('expires_at', 'varchar(40)', (c) => c.notNull())
      .addColumn('created_at', 'varchar(40)', (c) => c.notNull())
      .addColumn('created_by', 'varchar(64)', (c) => c.notNull().defaultTo(''))
      .addColumn('used_at', 'varchar(40)')
      .addColumn('used_by_host', 'varchar(255)', (c) => c.notNull().defaultTo(''))
      .execute()
  },
}
