/**
 * Table types for Kysely, one file per area under schema/. Booleans are stored
 * as 0/1 integers and timestamps as ISO-8601 strings so the same schema runs on
 * SQLite and PostgreSQL.
 */
import type { ComputeTables } from './schema/compute.js'
import type { IdentityTables } from './schema/identity.js'
import type { ImageTables } from './schema/image.js'
import type { NetworkTables } from './schema/network.js'
import type { PlacementTables } from './schema/placement.js'
import type { ServerTables } from './schema/servers.js'
import type { VolumeTables } from './schema/volume.js'

export type * from './schema/identity.js'
export type * from './schema/compute.js'
export type * from './schema/image.js'
export type * from './schema/network.js'
export type * from './schema/placement.js'
export type * from './schema/servers.js'
export type * from './schema/volume.js'

export interface Database extends IdentityTables, ComputeTables, ImageTables, NetworkTables, PlacementTables, ServerTables, VolumeTables {}
