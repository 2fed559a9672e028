/** Servers (Nova instances) and their faults. */

export interface ServerTable {
  uuid: string
  name: string
  /** Nova's instance hostname: asked for (2.90) or derived from the name at create, then kept (migration 0021). */
  hostname: string
  description: string
  project_id: string
  user_id: string
  /** A copy of the flavor at build time. */
  flavor_id: string
  flavor_name: string
  vcpus: number
  ram: number
  disk: number
  ephemeral: number
  swap: number
  image_id: string
  image_name: string
  key_name: string
  /** The keypair's public key at build time (the keypair may be deleted later). */
  key_data: string
  /** Base64, as given. */
  user_data: string
  /** 'True' when the host gives the guest a config drive (all servers since migration 0009), else ''. */
  config_drive: string
  /** JSON object of string → string. */
  metadata: string
  /** JSON array of the security group ids the server's own ports get. */
  security_groups: string
  /** The zone asked for ('' for any). */
  requested_az: string
  /** Where it runs; null until placed. */
  host: string | null
  node_uuid: string | null
  availability_zone: string
  /** The hypervisor's domain name. */
  instance_name: string
  vm_state: string
  /** '' when no action is in progress. */
  task_state: string
  power_state: number
  /** The cast carrying the action in progress ('' when none); results of other casts are stale. */
  pending_cast_id: string
  /** The request id of the API call behind the pending cast ('' when none or unknown); it goes out with every send. */
  pending_request_id: string
  /** When JetStream took the pending cast; null while it still has to be sent. */
  cast_sent_at: string | null
  /** The cast a controller is handing to the bus, and since when (its lease; PostgreSQL, see cast-outbox.ts); null when none. Optional: the outbox alone writes them. */
  cast_claim_id?: string | null
  cast_claimed_at?: string | null
  /** JSON array of the ports the server made for itself (deleted with it; other ports are only unbound). */
  own_ports: string
  reservation_id: string
  launch_index: number
  fault_code: string
  fault_message: string
  fault_at: string | null
  created_at: string
  updated_at: string
  launched_at: string | null
  terminated_at: string | null
  deleted: number
  /** The server group it joined at create ('' for none). */
  server_group_id: string
  /**
   * Changes with anything the server's view shows (its row, ports, addresses,
   * groups, their names, volume attachments): bumped by triggers (migration
   * 0018) in the writing transaction; a new server starts at 1.
   */
  view_revision: number
}

/** Nova's instance groups: a policy for where their members run. */
export interface ServerGroupTable {
  id: string
  name: string
  /** affinity | anti-affinity | soft-affinity | soft-anti-affinity */
  policy: string
  /** anti-affinity's rule; 1 otherwise. */
  max_server_per_host: number
  project_id: string
  user_id: string
  created_at: string
}

export interface ServerTables {
  servers: ServerTable
  server_groups: ServerGroupTable
}
