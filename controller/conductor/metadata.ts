/**
 * What the conductor tells a metadata service about the server behind a
 * request (Neutron's metadata agent finding the port by network and fixed IP,
 * then Nova's metadata API reading the instance): (network, address) → port
 * → device → server. Only a compute port's live server counts; the server may
 * run on any host.
 */
import { InvalidArgument, NotFound } from '../../proto/errors.js'
import type { InstanceMetadata } from '../../proto/instance-metadata.js'
import { formatIp, parseIp } from '../network/ip.js'
import { nicsOfDevice, portsOfDevices } from '../network/device-ports.js'
import { json } from '../compute/server-model.js'
import type { Db } from '../store/db.js'

/**
 * The metadata of the server whose port on `networkId` holds `address`.
 * @throws InvalidArgument when `address` is not an IP address.
 * @throws NotFound when no live server's port on that network holds it.
 */
export async function instanceMetadata(db: Db, networkId: string, address: string): Promise<InstanceMetadata> {
  const ip = parseIp(address)
  if (!ip) throw new InvalidArgument(`metadata request: '${address}' is not an IP address`, { field: 'address' })
  const canonical = formatIp(ip.version, ip.value)
  const port = await db
    .selectFrom('ip_allocations as a')
    .innerJoin('ports as p', 'p.id', 'a.port_id')
    .select(['p.device_id', 'p.device_owner'])
    .where('a.network_id', '=', networkId)
    .where('a.ip_address', '=', canonical)
    .executeTakeFirst()
  const gone = () => new NotFound(`no server's port on network ${networkId} holds ${canonical}`)
  if (!port || !port.device_owner.startsWith('compute:') || !port.device_id) throw gone()
  const row = await db.selectFrom('servers').selectAll().where('uuid', '=', port.device_id).where('deleted', '=', 0).executeTakeFirst()
  if (!row) throw gone()
  const nics = await nicsOfDevice(db, row.uuid)
  const views = await portsOfDevices(db, [row.uuid])
  return {
    instanceUuid: row.uuid,
    displayName: row.name,
    hostname: row.hostname,
    projectId: row.project_id,
    availabilityZone: row.availability_zone || row.requested_az,
    keyName: row.key_name,
    publicKey: row.key_data,
    userData: row.user_data,
    metadata: json<Record<string, string>>(row.metadata, {}),
    nics,
    flavorName: row.flavor_name,
    imageId: row.image_id,
    reservationId: row.reservation_id,
    securityGroups: [...new Set(views.flatMap((v) => v.securityGroups))],
    floatingIps: views.flatMap((v) => v.floatingIps),
  }
}
