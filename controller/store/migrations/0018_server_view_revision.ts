/**
 * `servers.view_revision`: a number that changes whenever anything a server's
 * view shows changes — the server's own row, its ports (bound or unbound, MAC,
 * network), their fixed and floating IPs and security groups, the names of
 * those networks and groups (and of the groups the server asked for), and its
 * volume attachments. Controllers keep views keyed by it (ServerViews), so an
 * unchanged server is not rebuilt for every listing; because the number lives
 * in the database and triggers bump it in the same transaction as the write,
 * it holds for every writer — any code path, any controller on one
 * PostgreSQL — with nothing for the code that writes to remember.
 *
 * A write to the servers row that leaves view_revision as it was bumps it
 * (one that sets it itself is taken as is, so the triggers' own bumps do not
 * repeat). Writes elsewhere bump the servers they touch through the rows' old
 * and new references (a port moving from one device to another bumps both).
 */
import { sql, type Kysely, type Migration } from 'kysely'
import { engineOf } from '../engine.js'

/** Each table whose writes change server views: the writes that matter, and the servers a row (`r`: OLD or NEW) concerns, as SQL. */
const SOURCES: Array<{ table: string; servers: (r: string) => string; ops: string }> = [
  { table: 'ports', servers: (r) => `SELECT ${r}.device_id`, ops: 'INSERT OR UPDATE OR DELETE' },
  { table: 'ip_allocations', servers: (r) => `SELECT device_id FROM ports WHERE id = ${r}.port_id`, ops: 'INSERT OR UPDATE OR DELETE' },
  { table: 'floating_ips', servers: (r) => `SELECT device_id FROM ports WHERE id = ${r}.port_id`, ops: 'INSERT OR UPDATE OR DELETE' },
  { table: 'port_security_groups', servers: (r) => `SELECT device_id FROM ports WHERE id = ${r}.port_id`, ops: 'INSERT OR UPDATE OR DELETE' },
  { table: 'volume_attachments', servers: (r) => `SELECT ${r}.server_id`, ops: 'INSERT OR UPDATE OR DELETE' },
  { table: 'networks', servers: (r) => `SELECT device_id FROM ports WHERE network_id = ${r}.id`, ops: 'UPDATE OF name OR DELETE' },
  {
    // Its ports' groups, and (for servers without ports) the groups asked for, kept as a JSON array of ids.
    table: 'security_groups',
    servers: (r) => `SELECT p.device_id FROM ports p JOIN port_security_groups ps ON ps.port_id = p.id WHERE ps.security_group_id = ${r}.id
      UNION SELECT uuid FROM servers WHERE security_groups LIKE '%' || ${r}.id || '%'`,
    ops: 'UPDATE OF name OR DELETE',
  },
]

const bump = (r: string, servers: (r: string) => string) => `UPDATE servers SET view_revision = view_revision + 1 WHERE uuid IN (${servers(r)});`

export const migration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable('servers').addColumn('view_revision', 'integer', (c) => c.notNull().defaultTo(1)).execute()
    if (engineOf(db) === 'postgres') {
      await sql.raw(`CREATE FUNCTION servers_view_revision() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.view_revision = OLD.view_revision THEN NEW.view_revision := OLD.view_revision + 1; END IF;
          RETURN NEW;
        END $$`).execute(db)
      await sql.raw('CREATE TRIGGER servers_view_revision BEFORE UPDATE ON servers FOR EACH ROW EXECUTE FUNCTION servers_view_revision()').execute(db)
      for (const s of SOURCES) {
        await sql.raw(`CREATE FUNCTION ${s.table}_server_view_revision() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN
            IF TG_OP <> 'INSERT' THEN ${bump('OLD', s.servers)} END IF;
            IF TG_OP <> 'DELETE' THEN ${bump('NEW', s.servers)} END IF;
            RETURN NULL;
          END $$`).execute(db)
        await sql.raw(`CREATE TRIGGER ${s.table}_server_view_revision AFTER ${s.ops} ON ${s.table} FOR EACH ROW EXECUTE FUNCTION ${s.table}_server_view_revision()`).execute(db)
      }
      return
    }
    // SQLite: one trigger per operation; recursive triggers are off, and the WHEN stops the bump's own update anyway.
    await sql.raw(`CREATE TRIGGER servers_view_revision AFTER UPDATE ON servers FOR EACH ROW WHEN NEW.view_revision = OLD.view_revision
      BEGIN UPDATE servers SET view_revision = OLD.view_revision + 1 WHERE uuid = NEW.uuid; END`).execute(db)
    for (const s of SOURCES) {
      for (const op of s.ops.split(' OR ')) {
        const verb = op.split(' ')[0]!
        const body = [verb !== 'INSERT' ? bump('OLD', s.servers) : '', verb !== 'DELETE' ? bump('NEW', s.servers) : ''].join(' ')
        await sql.raw(`CREATE TRIGGER ${s.table}_server_view_revision_${verb.toLowerCase()} AFTER ${op} ON ${s.table} FOR EACH ROW BEGIN ${body} END`).execute(db)
      }
    }
  },
}
