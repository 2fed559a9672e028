/**
 * Token signing keys in the database, so that every controller on one
 * database signs and validates with the same repository (controller/identity/keys.ts).
 * `position` is Keystone's file index: 0 the staged key, the highest the primary.
 */
import type { Kysely, Migration } from 'kysely'

export const migration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('signing_keys')
      // A digest of the public key, the JWS header's `kid`.
      .addColumn('kid', 'varchar(64)', (c) => c.primaryKey())
      .addColumn('position', 'integer', (c) => c.notNull().unique())
      // PKCS#8 PEM of the Ed25519 private key.
      .addColumn('private_key', 'text', (c) => c.notNull())
      .addColumn('created_at', 'varchar(40)', (c) => c.notNull())
      .execute()
  },
}
