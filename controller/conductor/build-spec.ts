/**
 * What the conductor reads for agents (Nova's conductor building the request
 * for the compute host): the build spec of a server a host is about to build
 * — its flavor, image, NICs (network/'s), key, user data and an image-read
 * token to fetch the image with (never the owner's own token) — and the servers placed on a host, for the agent's
 * start-up reconciliation.
 */
import { isUuid } from '../../proto/ids.js'
import { FailedPrecondition, NotFound, Unavailable } from '../../proto/errors.js'
import type { BuildSpec, BuildVolume } from '../../proto/build-spec.js'
import { volumesForBuild } from '../volume/server-volumes.js'
import type { Db } from '../store/db.js'
import type { ImageCatalog } from '../image/catalog.js'
import { nicsOfDevice } from '../network/device-ports.js'
import { beginBuild } from '../compute/server-states.js'
import { json, now } from '../compute/server-model.js'

/** What the controller believes about a server of a host. */
export interface HostInstance {
  instanceUuid: string
  host: string
  pendingCastId: string
  /** The request id of the API call behind the pending cast, '' when none. */
  pendingRequestId: string
  vmState: string
  taskState: string
  powerState: number
  name: string
}

/** Issues a token that downloads `imageId` only, for the host building `instanceUuid` (Authenticator.issueImageRead). */
export type ImageReadTokens = (imageId: string, host: string, instanceUuid: string) => string

export interface BuildSpecDeps {
  images: ImageCatalog
  imageReadToken: ImageReadTokens
}

/** The conductor reads images as a service, whoever owns them. */
export const CONDUCTOR = { isAdmin: true, projectId: undefined, domainId: '', canWrite: false }

/**
 * The build spec of a server its host is about to build; marks it spawning
 * (the state table's build rule).
 * @throws NotFound when the server is not placed on `host`.
 * @throws FailedPrecondition when it is no longer building (deleted, failed).
 */
export async function buildSpec(db: Db, deps: BuildSpecDeps, uuid: string, host: string): Promise<BuildSpec> {
  const row = await db.selectFrom('servers').selectAll().where('uuid', '=', uuid).executeTakeFirst()
  if (!row || row.host !== host) throw new NotFound(`no server ${uuid} is placed on host '${host}'`)
  beginBuild(row)
  let volumes: BuildVolume[]
  try {
    volumes = await volumesForBuild(db, uuid)
  } catch (err) {
    // Its volumes are still being made: the server shows it waits for them, and the host asks again.
    const wait = err instanceof Unavailable ? beginBuild(row, 'block_device_mapping') : undefined
    if (wait) await db.updateTable('servers').set({ task_state: wait.task, updated_at: now() }).where('uuid', '=', uuid).where('task_state', 'in', wait.whileIn).execute()
    throw err
  }
  const step = beginBuild(row)
  if (step) await db.updateTable('servers').set({ task_state: step.task, updated_at: now() }).where('uuid', '=', uuid).where('task_state', 'in', step.whileIn).execute()
  const nics = await nicsOfDevice(db, uuid)
  // Booted from a volume, the server has no image to download.
  const image = row.image_id ? await deps.images.get({ id: row.image_id }, CONDUCTOR).catch((err) => {
    throw err instanceof NotFound ? new FailedPrecondition(`image ${row.image_id} of server ${uuid} was deleted before the server was built`, { cause: err }) : err
  }) : undefined
  return {
    instanceUuid: uuid,
    name: row.instance_name,
    displayName: row.name,
    vcpus: Number(row.vcpus),
    memoryMb: Number(row.ram),
    diskGb: Number(row.disk),
    projectId: row.project_id,
    imageId: row.image_id,
    imageChecksum: image?.checksum ?? '',
    imageDiskFormat: image?.diskFormat ?? '',
    imageReadToken: image ? deps.imageReadToken(row.image_id, host, uuid) : '',
    nics,
    keyName: row.key_name,
    publicKey: row.key_data,
    userData: row.user_data,
    metadata: json<Record<string, string>>(row.metadata, {}),
    availabilityZone: row.availability_zone || row.requested_az,
    hostname: row.hostname,
    configDrive: row.config_drive === 'True',
    volumes,
  }
}

/** What the controller places on `host` (and the state of `also`, whatever it is), for an agent's start-up reconciliation. */
export async function hostInstances(db: Db, host: string, also: string[]): Promise<HostInstance[]> {
  const columns = ['uuid', 'host', 'vm_state', 'task_state', 'power_state', 'instance_name', 'pending_cast_id', 'pending_request_id'] as const
  const rows = await db.selectFrom('servers').select(columns).where('host', '=', host).where('deleted', '=', 0).execute()
  const known = new Set(rows.map((r) => r.uuid))
  const extra = also.filter((u) => isUuid(u) && !known.has(u))
  if (extra.length) rows.push(...(await db.selectFrom('servers').select(columns).where('uuid', 'in', extra).execute()))
  return rows.map((r) => ({ instanceUuid: r.uuid, host: r.host ?? '', pendingCastId: r.pending_cast_id, pendingRequestId: r.pending_request_id, vmState: r.vm_state, taskState: r.task_state, powerState: Number(r.power_state), name: r.instance_name }))
}
