/**
 * Servers (Nova semantics): the API's side of the seed's 29 steps, wired from
 * the parts Nova also keeps apart.
 *
 * - `server-create-plan.ts` + `server-create.ts`: create — every part of the
 *   request checked first, then claims (allocation + quota, atomically), then
 *   servers and ports recorded in one transaction, then the builds cast; a
 *   failure part-way gives the claims back (a Reverter).
 * - `server-views.ts`: get and list, the ServerView of a row.
 * - `server-actions.ts`: start, stop, reboot, delete, console output.
 * - `server-snapshots.ts`: createImage and createBackup (the image recorded, the snapshot cast, a failed one's image deleted, backups rotated).
 * - `cast-outbox.ts`: pending casts and their resending.
 * - `cast-results.ts`: agents' results and power states applied.
 * - `server-states.ts`: the state table every vm_state/task_state write comes from.
 * - `../conductor/build-spec.ts`: what a host gets to build a server.
 *
 * Ports, networks and security groups are network/'s, read and written
 * through its catalogs; allocations are the scheduler's; images image/'s.
 */
import type { Db } from '../store/db.js'
import type { QuotaEngine } from '../quota/quota.js'
import type { FlavorCatalog } from './flavors.js'
import type { KeypairCatalog } from './keypairs.js'
import type { ImageCatalog } from '../image/catalog.js'
import type { PortCatalog } from '../network/ports.js'
import type { SecurityGroupCatalog } from '../network/security-groups.js'
import type { Scheduler } from '../scheduler/scheduler.js'
import type { HostRegistry } from './hosts.js'
import type { ServerGroupCatalog } from './server-groups.js'
import type { ServerAction } from './server-states.js'
import type { AgentTransport, CastResultEvent } from './transport.js'
import { CastOutbox } from './cast-outbox.js'
import { CastResults } from './cast-results.js'
import { ServerActions } from './server-actions.js'
import { ServerCreator } from './server-create.js'
import { ServerViews, type ServerListing } from './server-views.js'
import { ServerSnapshots, type CreateServerImage } from './server-snapshots.js'
import type { CreateServer, ListServers, Log, ServerCaller, ServersConfig, ServerView } from './server-model.js'
import type { VolumeTypeCatalog } from '../volume/types.js'
import type { VolumeBackends } from '../volume/backends.js'
import type { VolumeCasts } from '../volume/casts.js'
import { ServerVolumes } from '../volume/server-volumes.js'
import type { SnapshotCatalog } from '../volume/snapshots.js'

export type { BuildSpec, CreateServer, ListServers, ServerAddress, ServerCaller, ServersConfig, ServerView } from './server-model.js'
export { checkHostname, instanceName } from './server-model.js'
export type { ServerListing } from './server-views.js'

export interface ServerCatalogDeps {
  flavors: FlavorCatalog
  images: ImageCatalog
  keypairs: KeypairCatalog
  ports: PortCatalog
  securityGroups: SecurityGroupCatalog
  scheduler: Scheduler
  hosts: HostRegistry
  quota: QuotaEngine
  serverGroups: ServerGroupCatalog
  /** Block storage: the volumes servers are created with (boot from volume). */
  volumeTypes: VolumeTypeCatalog
  volumeBackends: VolumeBackends
  volumeCasts: VolumeCasts
  /** Volume snapshots: snapshots of servers booted from volumes are made of them. */
  volumeSnapshots?: SnapshotCatalog
}

export class ServerCatalog {
  private readonly outbox: CastOutbox
  private readonly results: CastResults
  private readonly views: ServerViews
  private readonly creator: ServerCreator
  private readonly actions: ServerActions
  private readonly snapshots: ServerSnapshots

  private sweepTimer: NodeJS.Timeout | undefined

  constructor(db: Db, deps: ServerCatalogDeps, private readonly config: ServersConfig, private readonly log: Log, transport: AgentTransport | undefined = undefined) {
    this.outbox = new CastOutbox(db, config.castRetryMs, log, transport)
    const serverVolumes = new ServerVolumes(db, { quota: deps.quota, types: deps.volumeTypes, backends: deps.volumeBackends, casts: deps.volumeCasts }, log)
    this.results = new CastResults(db, { ...deps, serverVolumes }, log)
    this.views = new ServerViews(db, deps)
    this.creator = new ServerCreator(db, { ...deps, views: this.views, outbox: this.outbox, serverVolumes }, config, log)
    this.actions = new ServerActions(db, { ...deps, views: this.views, outbox: this.outbox, serverVolumes }, config, log)
    this.snapshots = new ServerSnapshots(db, { images: deps.images, views: this.views, outbox: this.outbox, ...(deps.volumeSnapshots ? { volumeSnapshots: deps.volumeSnapshots } : {}) }, log)
  }

  /** Connects the bus (after it started) and sends what could not be sent before. */
  attach(transport: AgentTransport): void {
    this.outbox.attach(transport)
  }

  stop(): void {
    this.outbox.stop()
    if (this.sweepTimer) clearInterval(this.sweepTimer)
    this.sweepTimer = undefined
  }

  create(req: CreateServer, caller: ServerCaller): Promise<{ servers: ServerView[]; reservationId: string }> {
    return this.creator.create(req, caller)
  }

  get(ref: string | undefined, caller: ServerCaller): Promise<ServerView> {
    return this.views.get(ref, caller)
  }

  /** The same frozen array for as long as nothing it shows changed (see ServerViews). */
  list(f: ListServers, caller: ServerCaller): Promise<ServerListing> {
    return this.views.list(f, caller)
  }

  /** Starts, stops, reboots or deletes a server; returns it with the action's task_state. */
  act(ref: string | undefined, action: Exclude<ServerAction, 'build'>, caller: ServerCaller): Promise<ServerView> {
    return this.actions.act(ref, action, caller)
  }

  /** Forces a server's vm_state to active or error (Nova's os-resetState; cloud admins only). */
  resetState(ref: string | undefined, state: string, caller: ServerCaller): Promise<ServerView> {
    return this.actions.resetState(ref, state, caller)
  }

  /** Renames a server, changes its description or its metadata. */
  update(ref: string | undefined, patch: Parameters<ServerActions['update']>[1], caller: ServerCaller): Promise<ServerView> {
    return this.actions.update(ref, patch, caller)
  }

  /** Nova's createImage (and createBackup, with `req.backup`): records the image (queued) and casts the snapshot to the server's host. */
  createImage(ref: string | undefined, req: CreateServerImage, caller: ServerCaller): Promise<{ imageId: string; server: ServerView }> {
    return this.snapshots.create(ref, req, caller)
  }

  consoleOutput(ref: string | undefined, length: number | undefined, caller: ServerCaller): Promise<string> {
    return this.actions.consoleOutput(ref, length, caller)
  }

  /** Sends again every cast the bus did not take (NATS was away, or the controller stopped in between). */
  resend(): Promise<void> {
    return this.outbox.resend()
  }

  /** Applies an agent's result to the server waiting for that cast; other results are stale and ignored. */
  async applyResult(r: CastResultEvent): Promise<void> {
    await this.results.applyResult(r)
    await this.snapshots.applyResult(r)
  }

  /** A host's hypervisor reported its guests: servers with no action in progress follow it. */
  applyPowerStates(host: string, sentAt: Date, guests: Map<string, number>): Promise<void> {
    return this.results.applyPowerStates(host, sentAt, guests)
  }

  /**
   * Allocations whose consumer is no server (a controller stopped between
   * claim and record), claimed more than `orphanAllocationGraceMs` ago:
   * younger ones may be a create another controller is making. Released at
   * start-up, then every grace period (`startOrphanSweep`).
   */
  releaseOrphanAllocations(): Promise<number> {
    return this.creator.releaseOrphanAllocations(this.config.orphanAllocationGraceMs)
  }

  /** Releases orphan allocations every `orphanAllocationGraceMs` (those a crash left younger than the grace at start-up). */
  startOrphanSweep(): void {
    if (this.sweepTimer) return
    this.sweepTimer = setInterval(() => {
      this.releaseOrphanAllocations().catch((err) => this.log.warn({ err: (err as Error).message }, 'releasing orphan allocations failed; trying again'))
    }, Math.max(this.config.orphanAllocationGraceMs, 1000))
    this.sweepTimer.unref()
  }
}
