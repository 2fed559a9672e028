/**
 * Server create (Nova's compute API `create` and the conductor's
 * `schedule_and_build_instances`, in one place): the request is checked
 * (`server-create-plan.ts`), then a host is claimed for each server —
 * allocation and quota in one transaction (the scheduler) — then the servers
 * and their ports are recorded in one transaction, and only then are the
 * builds cast. Each claim adds its release to a Reverter, so a request that
 * fails part-way (a quota, no valid host, an exhausted subnet, a port taken
 * meanwhile) gives every claim back and leaves nothing behind. What fails
 * later, on the host, is the cast results' business.
 */
import { randomUUID } from 'node:crypto'
import { toStratoError } from '../../proto/errors.js'
import type { Db } from '../store/db.js'
import { compiledOnce } from '../store/engine.js'
import type { Trx, QuotaEngine } from '../quota/quota.js'
import type { PortCatalog } from '../network/ports.js'
import { loadNetwork } from '../network/access.js'
import type { Scheduler, Placed } from '../scheduler/scheduler.js'
import { DISK_GB, MEMORY_MB, VCPU, type GroupSpec, type LocalNetworkSpec } from '../scheduler/model.js'
import { Reverter } from '../../proto/revert.js'
import type { ServerGroupCatalog } from './server-groups.js'
import { CREATED } from './server-states.js'
import { castIdFor, castLease, type CastOutbox } from './cast-outbox.js'
import type { ServerViews } from './server-views.js'
import { CreatePlanner, type CreatePlan, type CreatePlannerDeps } from './server-create-plan.js'
import { hostnameOf, instanceName, now, type CreateServer, type Log, type ServerCaller, type ServerView } from './server-model.js'
import type { ServerVolumes } from '../volume/server-volumes.js'
import type { ServerTable, VolumeTable } from '../store/schema.js'

export interface ServerCreatorDeps extends CreatePlannerDeps {
  ports: PortCatalog
  scheduler: Scheduler
  quota: QuotaEngine
  serverGroups: ServerGroupCatalog
  views: ServerViews
  outbox: CastOutbox
  serverVolumes: ServerVolumes
}

type Claim = { uuid: string; placed: Placed }

export class ServerCreator {
  private readonly planner: CreatePlanner
  private readonly insertOne = new Map<string, (row: Record<string, unknown>) => Promise<unknown[]>>()

  constructor(
    private readonly db: Db,
    private readonly deps: ServerCreatorDeps,
    config: { defaultAvailabilityZone: string },
    private readonly log: Log,
  ) {
    this.planner = new CreatePlanner(db, deps, config)
  }

  async create(req: CreateServer, caller: ServerCaller): Promise<{ servers: ServerView[]; reservationId: string }> {
    const plan = await this.planner.plan(req, caller)
    // A server group's members are placed one request at a time, each seeing where the others went.
    return plan.serverGroup ? this.deps.serverGroups.serialize(plan.serverGroup, () => this.placeAndRecord(plan)) : this.placeAndRecord(plan)
  }

  /** Claims hosts for a validated request, then records its servers and ports and casts their builds. */
  private async placeAndRecord(plan: CreatePlan): Promise<{ servers: ServerView[]; reservationId: string }> {
    const { caller, minCount } = plan
    let maxCount = plan.maxCount
    const group = plan.serverGroup ? await this.deps.serverGroups.forCreate(plan.serverGroup, caller, minCount) : undefined
    if (group && group.room >= 0) maxCount = Math.min(maxCount, group.room)
    // Eight hex digits as before, from randomUUID's pooled entropy: randomBytes(4) was a getrandom syscall per create.
    const reservationId = `r-${randomUUID().slice(0, 8)}`
    const revert = new Reverter()
    let claims: Claim[]
    let recorded: { servers: ServerTable[]; volumes: VolumeTable[] }
    try {
      claims = await this.claim(plan, maxCount, group?.spec, reservationId, revert)
      recorded = await this.record(plan, claims, maxCount, group?.spec.id ?? '', reservationId)
      // Ports were bound or made in that (committed) transaction: hosts' filtering and metadata caches follow.
      this.deps.ports.onChange()
      revert.success()
    } catch (err) {
      const failures = await revert.fail()
      if (failures.length) this.log.warn({ reservationId, failures: failures.map((f) => `${f.description}: ${(f.error as Error).message}`) }, 'giving back the claims of a failed create failed in part')
      throw err
    }
    // The volumes the servers make first: their builds wait for them (server-volumes.ts).
    await this.deps.serverVolumes.sendCreates(recorded.volumes)
    for (const { uuid, placed: p } of claims) {
      this.log.info({ instance: uuid, host: p.host, reservationId, requestId: caller.requestId }, 'server placed; build cast to its host')
      // The row was recorded with this send's lease on it: no claim statement.
      await this.deps.outbox.send({ uuid, host: p.host, action: 'build', castId: castIdFor('build', uuid), requestId: caller.requestId ?? '' }, true, 'held')
    }
    // The rows as recorded (in launch_index order; only cast_sent_at moved since, which no view shows): not read again.
    // Ports and volumes are read only when the request asked for some (a view of a server made without shows none).
    const views = await this.deps.views.views(recorded.servers, caller, { noPorts: plan.nics.length === 0, noVolumes: !plan.blockDevices })
    return { servers: views, reservationId }
  }

  /**
   * Claims a host for each server, from min_count up to max_count (fewer when
   * no more fit): allocation + quota (instances, cores, ram), atomically.
   * Every claim's release goes on `revert`.
   */
  private async claim(plan: CreatePlan, maxCount: number, group: GroupSpec | undefined, reservationId: string, revert: Reverter): Promise<Claim[]> {
    const { caller, projectId, minCount, flavor, image, zone } = plan
    const claims: Claim[] = []
    // Booted from a volume, the root disk is no disk of the host's (Nova requests no root_gb then).
    const rootGb = plan.blockDevices?.bootFromVolume ? 0 : flavor.disk
    const resources = { [VCPU]: flavor.vcpus, [MEMORY_MB]: flavor.ram, [DISK_GB]: rootGb + flavor.ephemeral + Math.ceil(flavor.swap / 1024) }
    const volumeHosts = plan.blockDevices?.hosts
    const localNetworks = await this.localNetworksOf(plan.nics)
    for (let i = 0; i < maxCount; i++) {
      const uuid = randomUUID()
      try {
        const p = await this.deps.scheduler.schedule({
          instanceUuid: uuid, projectId, userId: caller.userId, resources,
          ...(zone.zone ? { availabilityZone: zone.zone } : {}),
          ...(zone.host ? { forceHost: zone.host } : {}),
          imageProperties: (image ?? plan.blockDevices?.bootImage)?.properties ?? {},
          ...(volumeHosts ? { volumeHosts } : {}),
          ...(group ? { group } : {}),
          ...(localNetworks.length ? { localNetworks } : {}),
        })
        revert.add(`release the allocation of ${uuid}`, () => this.deps.scheduler.release(uuid))
        claims.push({ uuid, placed: p })
        group?.memberHosts.push(p.host)
        for (const n of localNetworks) n.hosts.push(p.host)
      } catch (err) {
        if (i < minCount) throw minCount > 1 && claims.length > 0 ? withPrefix(err, `only ${claims.length} of min_count ${minCount} servers could be placed`) : err
        this.log.info({ reservationId, created: i, asked: maxCount, err: (err as Error).message }, 'fewer servers than max_count fit')
        break
      }
    }
    return claims
  }

  /**
   * The request's networks of type `local` and the hosts their ports are
   * bound to now (servers', DHCP, router interfaces): a local network is a
   * bridge on each host, so the servers on one must share a host.
   */
  private async localNetworksOf(nics: CreatePlan['nics']): Promise<LocalNetworkSpec[]> {
    const portIds = nics.flatMap((n) => (n.kind === 'port' ? [n.portId] : []))
    const ids = new Set(nics.flatMap((n) => (n.kind === 'network' ? [n.networkId] : [])))
    if (portIds.length) for (const r of await this.db.selectFrom('ports').select('network_id').where('id', 'in', portIds).execute()) ids.add(r.network_id)
    if (ids.size === 0) return []
    const local = await this.db.selectFrom('networks').select('id').where('id', 'in', [...ids]).where('network_type', '=', 'local').orderBy('id').execute()
    if (local.length === 0) return []
    const bound = await this.db.selectFrom('ports').select(['network_id', 'binding_host_id']).distinct()
      .where('network_id', 'in', local.map((n) => n.id)).where('binding_host_id', '!=', '').execute()
    return local.map((n) => ({ networkId: n.id, hosts: bound.filter((b) => b.network_id === n.id).map((b) => b.binding_host_id) }))
  }

  /** Records the claimed servers and makes (or binds) their ports, in one transaction. */
  private async record(plan: CreatePlan, claims: Claim[], maxCount: number, serverGroupId: string, reservationId: string): Promise<{ servers: ServerTable[]; volumes: VolumeTable[] }> {
    const { caller, projectId, actor, name, hostname, description, flavor, image, key, userData, configDrive, metadata, zone, nics, groupIds } = plan
    const ts = now()
    // A server's zone is its host's as the scheduler judged it (Nova's conductor records the chosen host's zone).
    const serverRow = (index: number, { uuid, placed: p }: Claim, own: string[]): ServerTable => ({
      uuid, name: maxCount > 1 ? `${name}-${index + 1}` : name, hostname: hostname ?? hostnameOf(name, uuid, index, maxCount), description, project_id: projectId, user_id: caller.userId,
      flavor_id: flavor.id, flavor_name: flavor.name, vcpus: flavor.vcpus, ram: flavor.ram, disk: flavor.disk, ephemeral: flavor.ephemeral, swap: flavor.swap,
      image_id: image?.id ?? '', image_name: image?.name ?? '', key_name: key?.name ?? '', key_data: key?.publicKey ?? '', user_data: userData, config_drive: configDrive ? 'True' : '',
      metadata: JSON.stringify(metadata), security_groups: JSON.stringify(groupIds), requested_az: zone.zone ?? '',
      host: p.host, node_uuid: p.providerUuid, availability_zone: p.availabilityZone, instance_name: instanceName(uuid),
      ...CREATED, pending_cast_id: castIdFor('build', uuid), ...castLease(castIdFor('build', uuid), ts), pending_request_id: caller.requestId ?? '', cast_sent_at: null,
      own_ports: JSON.stringify(own), reservation_id: reservationId, launch_index: index,
      fault_code: '', fault_message: '', fault_at: null, created_at: ts, updated_at: ts, launched_at: null, terminated_at: null, deleted: 0,
      server_group_id: serverGroupId, view_revision: 1,
    })
    // Neither ports nor volumes (and one bounded statement): the insert alone is atomic, no transaction (BEGIN and COMMIT
    // were two more statements per create, round trips on PostgreSQL).
    if (nics.length === 0 && !plan.blockDevices && claims.length <= 100) {
      const servers = claims.map((c, index) => serverRow(index, c, []))
      if (servers.length === 1) {
        // The usual create, one server: its ~50-column INSERT compiled once (per set of columns given: as Kysely does,
        // a column left undefined is left out, to its default), not built by Kysely per create.
        const row = servers[0]! as unknown as Record<string, unknown>
        const columns = Object.keys(row).filter((k) => row[k] !== undefined)
        const key = columns.join()
        let insert = this.insertOne.get(key)
        if (!insert) this.insertOne.set(key, (insert = compiledOnce(this.db, columns, (p) => this.db.insertInto('servers').values(p as unknown as ServerTable))))
        await insert(row)
      } else {
        await this.db.insertInto('servers').values(servers).execute()
      }
      return { servers, volumes: [] }
    }
    return this.db.transaction().execute(async (trx: Trx) => {
      const portsNeeded = nics.filter((n) => n.kind === 'network').length * claims.length
      if (portsNeeded) await this.deps.quota.check(trx, { projectId }, { ports: portsNeeded })
      const devices = plan.blockDevices
      if (devices) await this.deps.serverVolumes.checkQuotaIn(trx, projectId, devices, claims.length)
      const volumes: VolumeTable[] = []
      const servers: ServerTable[] = []
      for (const [index, { uuid, placed: p }] of claims.entries()) {
        const deviceOwner = `compute:${p.availabilityZone}`
        const own: string[] = []
        for (const [i, nic] of nics.entries()) {
          if (nic.kind === 'port') {
            await this.deps.ports.bindIn(trx, nic.portId, { deviceId: uuid, deviceOwner, hostId: p.host }, `networks[${i}].port`)
          } else {
            const net = await loadNetwork(trx, actor, nic.networkId, `networks[${i}].uuid`)
            own.push(await this.deps.ports.createIn(trx, net, {
              projectId, deviceOwner, deviceId: uuid, bindingHostId: p.host, securityGroups: groupIds,
              ...(nic.fixedIp ? { fixedIps: [{ ipAddress: nic.fixedIp }] } : {}),
            }))
          }
        }
        servers.push(serverRow(index, { uuid, placed: p }, own))
      }
      // The servers of a multi-server request in one statement (bounded: ~50 columns a row), then their volumes.
      for (let i = 0; i < servers.length; i += 100) await trx.insertInto('servers').values(servers.slice(i, i + 100)).execute()
      if (devices) for (const { uuid, placed: p } of claims) volumes.push(...(await this.deps.serverVolumes.recordIn(trx, { uuid, host: p.host, zone: p.availabilityZone }, devices, caller)))
      return { servers, volumes }
    })
  }

  /** Allocations whose consumer is no server (a controller stopped between claim and record): released at start-up. */
  async releaseOrphanAllocations(graceMs = 0): Promise<number> {
    const consumers = await this.deps.scheduler.consumers(new Date(Date.now() - graceMs))
    const live = new Set(consumers.length ? (await this.db.selectFrom('servers').select('uuid').where('uuid', 'in', consumers).where('deleted', '=', 0).execute()).map((r) => r.uuid) : [])
    const orphans = consumers.filter((c) => !live.has(c))
    for (const o of orphans) await this.deps.scheduler.release(o)
    if (orphans.length) this.log.warn({ consumers: orphans }, 'released allocations of consumers that are no server')
    return orphans.length
  }
}

function withPrefix(err: unknown, prefix: string): unknown {
  const e = toStratoError(err)
  const Ctor = e.constructor as new (m: string, o: { cause?: unknown; field?: string }) => Error
  return new Ctor(`${prefix}: ${e.message}`, { cause: err, ...(e.field ? { field: e.field } : {}) })
}
