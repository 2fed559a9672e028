/** Compute catalog tables. */

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

export interface ComputeTables {
  flavors: FlavorTable
  flavor_extra_specs: FlavorExtraSpecTable
  flavor_projects: FlavorProjectTable
  keypairs: KeypairTable
  project_quotas: ProjectQuotaTable
}
