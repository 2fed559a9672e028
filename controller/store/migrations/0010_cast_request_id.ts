/** The request id of the API call behind a server's pending cast, so a cast sent again still carries it to the agent's logs. */
import type { Kysely, Migration } from 'kysely'

export const migration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable('servers').addColumn('pending_request_id', 'text', (c) => c.notNull().defaultTo('')).execute()
  },
}
