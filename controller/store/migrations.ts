/**
 * Versioned schema migrations, one file per step under migrations/, applied in
 * name order by Kysely's Migrator. Never edit a released migration: add a new one.
 */
import type { Migration } from 'kysely'
import { migration as m0001 } from './migrations/0001_identity.js'
import { migration as m0002 } from './migrations/0002_compute_catalogs.js'
import { migration as m0003 } from './migrations/0003_network.js'
import { migration as m0004 } from './migrations/0004_images.js'
import { migration as m0005 } from './migrations/0005_placement.js'
import { migration as m0006 } from './migrations/0006_servers.js'
import { migration as m0007 } from './migrations/0007_server_groups.js'
import { migration as m0008 } from './migrations/0008_host_ip.js'
import { migration as m0009 } from './migrations/0009_config_drive.js'
import { migration as m0010 } from './migrations/0010_cast_request_id.js'
import { migration as m0011 } from './migrations/0011_port_binding_host.js'
import { migration as m0012 } from './migrations/0012_host_join_tokens.js'
import { migration as m0013 } from './migrations/0013_volumes.js'
import { migration as m0014 } from './migrations/0014_routers.js'
import { migration as m0015 } from './migrations/0015_volume_attachments.js'
import { migration as m0016 } from './migrations/0016_boot_volumes.js'
import { migration as m0017 } from './migrations/0017_signing_keys.js'
import { migration as m0018 } from './migrations/0018_server_view_revision.js'
import { migration as m0019 } from './migrations/0019_cast_claims.js'
import { migration as m0020 } from './migrations/0020_allocation_project_indexes.js'
import { migration as m0021 } from './migrations/0021_server_hostname.js'

export const migrations: Record<string, Migration> = {
  '0001_identity': m0001,
  '0002_compute_catalogs': m0002,
  '0003_network': m0003,
  '0004_images': m0004,
  '0005_placement': m0005,
  '0006_servers': m0006,
  '0007_server_groups': m0007,
  '0008_host_ip': m0008,
  '0009_config_drive': m0009,
  '0010_cast_request_id': m0010,
  '0011_port_binding_host': m0011,
  '0012_host_join_tokens': m0012,
  '0013_volumes': m0013,
  '0014_routers': m0014,
  '0015_volume_attachments': m0015,
  '0016_boot_volumes': m0016,
  '0017_signing_keys': m0017,
  '0018_server_view_revision': m0018,
  '0019_cast_claims': m0019,
  '0020_allocation_project_indexes': m0020,
  '0021_server_hostname': m0021,
}
