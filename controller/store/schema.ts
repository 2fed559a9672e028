/**
 * Table types for Kysely. Booleans are stored as 0/1 integers and timestamps
 * as ISO-8601 strings so the same schema runs on SQLite and PostgreSQL.
 */
import type { Generated } from 'kysely'

export interface DomainTable {
  id: string
  name: string
  description: string
  enabled: number
  created_at: string
}

export interface ProjectTable {
  id: string
  name: string
  domain_id: string
  description: string
  enabled: number
  created_at: string
}

export interface UserTable {
  id: string
  name: string
  domain_id: string
  password_hash: string
  enabled: number
  default_project_id: string | null
  description: string
  email: string
  password_changed_at: string
  created_at: string
}

export interface RoleTable {
  id: string
  name: string
  description: string
}

export interface RoleImplicationTable {
  prior_role_id: string
  implied_role_id: string
}

export interface RoleAssignmentTable {
  role_id: string
  user_id: string
  /** 'project' or 'domain' */
  target_type: string
  target_id: string
}

export interface RevocationEventTable {
  id: Generated<number>
  audit_id: string | null
  audit_chain_id: string | null
  user_id: string | null
  project_id: string | null
  domain_id: string | null
  scope_domain_id: string | null
  role_id: string | null
  /** Epoch milliseconds: tokens issued at or before this instant match. */
  issued_before: number
  created_at: string
}

export interface FlavorTable {
  id: string
  name: string
  vcpus: number
  ram: number
  disk: number
  ephemeral: number
  swap: number
  is_public: number
  description: string
  created_at: string
}

export interface FlavorExtraSpecTable {
  flavor_id: string
  key: string
  value: string
}

export interface FlavorProjectTable {
  flavor_id: string
  project_id: string
}

export interface KeypairTable {
  user_id: string
  name: string
  type: string
  public_key: string
  fingerprint: string
  fingerprint_sha256: string
  created_at: string
}

export interface ProjectQuotaTable {
  project_id: string
  resource: string
  hard_limit: number
}

export interface Database {
  domains: DomainTable
  projects: ProjectTable
  users: UserTable
  roles: RoleTable
  role_implications: RoleImplicationTable
  role_assignments: RoleAssignmentTable
  revocation_events: RevocationEventTable
  flavors: FlavorTable
  flavor_extra_specs: FlavorExtraSpecTable
  flavor_projects: FlavorProjectTable
  keypairs: KeypairTable
  project_quotas: ProjectQuotaTable
}
