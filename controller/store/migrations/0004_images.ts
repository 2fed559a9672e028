/** Images: metadata, tags, properties, members. Image data lives in the file store, not here. */
import type { Kysely, Migration } from 'kysely'

export const migration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('images')
      .addColumn('id', 'varchar(64)', (c) => c.primaryKey())
      .addColumn('name', 'varchar(255)', (c) => c.notNull())
      .addColumn('status', 'varchar(16)', (c) => c.notNull())
      .addColumn('visibility', 'varchar(16)', (c) => c.notNull())
      .addColumn('owner', 'varchar(64)', (c) => c.notNull())
      .addColumn('owner_domain_id', 'varchar(64)', (c) => c.notNull())
      .addColumn('disk_format', 'varchar(16)', (c) => c.notNull())
      .addColumn('container_format', 'varchar(16)', (c) => c.notNull())
      .addColumn('checksum', 'varchar(32)', (c) => c.notNull().defaultTo(''))
      .addColumn('os_hash_value', 'varchar(128)', (c) => c.notNull().defaultTo(''))
      .addColumn('size', 'bigint', (c) => c.notNull().defaultTo(0))
      .addColumn('virtual_size', 'bigint', (c) => c.notNull().defaultTo(0))
      .addColumn('min_disk', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('min_ram', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('protected', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('created_at', 'varchar(40)', (c) => c.notNull())
      .addColumn('updated_at', 'varchar(40)', (c) => c.notNull())
      .execute()
    await db.schema.createIndex('images_owner').on('images').column('owner').execute()
    await db.schema
      .createTable('image_tags')
      .addColumn('image_id', 'varchar(64)', (c) => c.notNull().references('images.id').onDelete('cascade'))
      .addColumn('tag', 'varchar(255)', (c) => c.notNull())
      .addPrimaryKeyConstraint('image_tags_pk', ['image_id', 'tag'])
      .execute()
    await db.schema
      .createTable('image_properties')
      .addColumn('image_id', 'varchar(64)', (c) => c.notNull().references('images.id').onDelete('cascade'))
      .addColumn('key', 'varchar(255)', (c) => c.notNull())
      .addColumn('value', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('image_properties_pk', ['image_id', 'key'])
      .execute()
    await db.schema
      .createTable('image_members')
      .addColumn('image_id', 'varchar(64)', (c) => c.notNull().references('images.id').onDelete('cascade'))
      .addColumn('member_id', 'varchar(64)', (c) => c.notNull())
      .addColumn('status', 'varchar(16)', (c) => c.notNull())
      .addColumn('created_at', 'varchar(40)', (c) => c.notNull())
      .addColumn('updated_at', 'varchar(40)', (c) => c.notNull())
      .addPrimaryKeyConstraint('image_members_pk', ['image_id', 'member_id'])
      .execute()
  },
}
