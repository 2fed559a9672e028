/**
 * What the metadata service serves for one server (agent.v1 InstanceMetadata
 * on the wire; here the plain shape the conductor and the agent share): the
 * config drive's content plus what the EC2-compatible paths show.
 */
import type { BuildSpec } from './build-spec.js'

export interface InstanceMetadata {
  instanceUuid: string
  displayName: string
  hostname: string
  projectId: string
  availabilityZone: string
  keyName: string
  publicKey: string
  /** Base64, as the API took it; '' when none. */
  userData: string
  metadata: Record<string, string>
  /** Every NIC of the server, as in its build spec. */
  nics: BuildSpec['nics']
  /** EC2 instance-type. */
  flavorName: string
  /** EC2 ami-id is derived from it. */
  imageId: string
  /** EC2 reservation-id. */
  reservationId: string
  /** EC2 security-groups: names of the groups of the server's ports. */
  securityGroups: string[]
  /** EC2 public-ipv4: the floating IPs of the server's ports. */
  floatingIps: string[]
}
