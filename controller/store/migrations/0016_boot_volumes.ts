/**
 * Boot from volume (Nova's block device mappings on Cinder's attachments):
 * an attachment made by a server's create says whether its volume goes with
 * the server (`delete_on_termination`) and where it is in the boot order
 * (`boot_index`: 0 the root disk, vda; -1 not bootable, as every attachment
 * made by AttachVolume).
 */
import type { Kysely, Migration } from 'kysely'

export const migration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable('volume_attachments').addColumn('delete_on_termination', 'integer', (c) => c.notNull().defaultTo(0)).execute()
    await db.schema.alterTable('volume_attachments').addColumn('boot_index', 'integer', (c) => c.notNull().defaultTo(-1)).execute()
  },
}
