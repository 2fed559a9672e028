/** Compute hosts (cells v2 mapping, service status, heartbeats) and placement (providers, inventories, traits, allocations). */

export interface ComputeHostTable {
  host: string
  /** Compute node uuid = resource provider uuid. */
  uuid: string
  availability_zone: string
  cpu_model: string
  arch: string
  accelerator: string
  hypervisor_type: string
  hypervisor_version: string
  /** Nova's host_ip: the address the agent reports ('' from agents that report none). */
  host_ip: string
  vcpus: number
  memory_mb: number
  disk_gb: number
  /** 0 until DiscoverHosts (or auto-discovery) maps it. */
  mapped: number
  mapped_at: string | null
  disabled: number
  disabled_reason: string
  last_heartbeat_at: string | null
  /** 1 when the host's agent has the L3 role (router namespaces). */
  l3: number
  created_at: string
  updated_at: string
}

/** A join token (its secret only as a hash). */
export interface HostJoinTokenTable {
  id: string
  secret_sha256: string
  description: string
  /** '' or the only host name that may use it. */
  host: string
  expires_at: string
  created_at: string
  created_by: string
  used_at: string | null
  used_by_host: string
}

export interface ResourceProviderTable {
  uuid: string
  name: string
  generation: number
  created_at: string
}

export interface InventoryTable {
  provider_uuid: string
  resource_class: string
  total: number
  reserved: number
  min_unit: number
  max_unit: number
  step_size: number
  allocation_ratio: number
}

export interface ProviderTraitTable {
  provider_uuid: string
  trait: string
}

export interface AllocationTable {
  consumer_uuid: string
  provider_uuid: string
  resource_class: string
  used: number
  project_id: string
  user_id: string
  created_at: string
}

export interface PlacementTables {
  compute_hosts: ComputeHostTable
  host_join_tokens: HostJoinTokenTable
  resource_providers: ResourceProviderTable
  inventories: InventoryTable
  provider_traits: ProviderTraitTable
  allocations: AllocationTable
}
