/** Identity tables. */
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

/** A token signing key (identity/keys.ts): position 0 is staged, the highest is the primary. */
export interface SigningKeyTable {
  kid: string
  position: number
  /** PKCS#8 PEM. */
  private_key: string
  created_at: string
}

export interface IdentityTables {
  domains: DomainTable
  projects: ProjectTable
  users: UserTable
  roles: RoleTable
  role_implications: RoleImplicationTable
  role_assignments: RoleAssignmentTable
  revocation_events: RevocationEventTable
  signing_keys: SigningKeyTable
}
