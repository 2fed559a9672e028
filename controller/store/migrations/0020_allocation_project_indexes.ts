/**
 * Indexes the quota counters read inside every claim batch (controller/scheduler/placement.ts):
 * a project's instances are its distinct consumers, its cores and ram the sums
 * of `used` per resource class. Without them SQLite sorted every allocation of the
 * project into a temporary b-tree per batch (count distinct) and fetched each row
 * for the sums; with them both are read from an index alone.
 * (project_id, resource_class, used) covers what allocations_project_idx did.
 */
import type { Kysely, Migration } from 'kysely'

export const migration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.createIndex('allocations_project_consumer_idx').on('allocations').columns(['project_id', 'consumer_uuid']).execute()
    await db.schema.createIndex('allocations_project_usage_idx').on('allocations').columns(['project_id', 'resource_class', 'used']).execute()
    await db.schema.dropIndex('allocations_project_idx').execute()
  },
}
