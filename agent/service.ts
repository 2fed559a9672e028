/**
 * The agent daemon: connects to NATS, announces its host (capabilities from
 * the virt driver) to the conductor, reconciles its guests with what the
 * controller believes, sends heartbeats and power states, keeps the host's
 * security-group filtering current, answers synchronous calls (console
 * output), serves the metadata service in the namespaces attached to it
 * (`metadata/service.ts`), and hands its cast queue to the cast worker
 * (`cast-worker.ts`).
 * What it asks the controller goes through `conductor-client.ts`.
 *
 * Lifecycle INITIALIZED → RUNNING → STOPPING → STOPPED; stop() stops taking
 * casts, finishes the ones in hand, drains NATS.
 */
import { statfsSync } from 'node:fs'
import path from 'node:path'
import { connect, credsAuthenticator, type NatsConnection, type Subscription, type Msg } from '@nats-io/transport-node'
import { jetstream, type JetStreamClient } from '@nats-io/jetstream'
import type { Logger } from 'pino'
import { FailedPrecondition, InvalidArgument, NotFound, Unavailable } from '../proto/errors.js'
import { volumeExportToWire, type VolumeExport } from '../proto/volume-export.js'
import { errorHeaders } from '../proto/nats-errors.js'
import { encodeBounded } from '../proto/bus-payload.js'
import { DHCP_CHANGED_SUBJECT, FIREWALL_CHANGED_SUBJECT, ROUTER_CHANGED_SUBJECT, agentInboxPrefix, agentRpcSubject, heartbeatSubject, powerSubject } from '../proto/subjects.js'
import { AgentReply, AgentRequest, Heartbeat, PowerStates, type AgentAnnounce, type VolumeBackendStats } from '../proto/gen/strato/agent/v1/agent.js'
import { computeId, type AgentConfig } from './config.js'
import { CastWorker } from './cast-worker.js'
import { ComputeManager } from './compute-manager.js'
import { ConductorClient, type Announced } from './conductor-client.js'
import { GrpcImageSource } from './disk/grpc-image-source.js'
import type { KnownImage } from './disk/image-cache.js'
import { GuestDirs, groupId } from './disk/guest-dirs.js'
import { IptablesFirewall, RecordingFirewall, type Firewall } from './net/firewall.js'
import { DnsmasqDhcp, NoDhcp, type Dhcp, type DhcpNetwork } from './net/dhcp.js'
import { FakeRouterBuilder, L3Agent, type RouterBuilder } from './net/l3.js'
import { MetadataService } from './metadata/service.js'
import { HostGateway, type HostGatewayNetwork } from './net/host-gateway.js'
import type { VirtDriver } from './virt/driver.js'
import type { VolumeDriver } from './volume/driver.js'
import { FileVolumeDriver } from './volume/file.js'
import { VolumeManager } from './volume/manager.js'
import { VolumeUploader } from './volume/upload.js'
import { hostNbdTls, renewHostCertificate } from './volume/nbd-tls.js'

export type AgentState = 'INITIALIZED' | 'RUNNING' | 'STOPPING' | 'STOPPED'

/** How often the agent looks at its NBD certificate's expiry (it renews within 30 days of it). */
const NBD_CERT_CHECK_INTERVAL_MS = 24 * 3600 * 1000

export class AgentService {
  state: AgentState = 'INITIALIZED'
  readonly uuid: string
  readonly manager: ComputeManager
  /** The volume role (undefined when config.volume is off). */
  readonly volumes: VolumeManager | undefined
  /** Uploads of this host's volumes to images (with the volume role). */
  nc: NatsConnection | undefined
  /** What the controller said at the last announce. */
  announced: Announced | undefined
  private js: JetStreamClient | undefined
  private readonly conductor: ConductorClient
  private worker: CastWorker | undefined
  private heartbeatTimer: NodeJS.Timeout | undefined
  private powerTimer: NodeJS.Timeout | undefined
  private firewallTimer: NodeJS.Timeout | undefined
  private firewallSub: Subscription | undefined
  private nbdCertTimer: NodeJS.Timeout | undefined
  /** Security groups on this host (iptables, or a recorder that filters nothing). */
  readonly firewall: Firewall
  /**
   * DHCP for the host's networks (dnsmasq in qdhcp- namespaces, or off).
   * Services living in those namespaces attach with `dhcp.onNamespace(…)`.
   */
  readonly dhcp: Dhcp
  private dhcpTimer: NodeJS.Timeout | undefined
  private dhcpSub: Subscription | undefined
  /**
   * The routers the controller places here (`qrouter-<id>` namespaces, or in
   * memory with l3Driver `fake`), when the agent has the L3 role and builds
   * them (l3Driver not `none`). The agent announces the L3 role only then.
   */
  readonly l3: RouterBuilder | undefined
  private l3Timer: NodeJS.Timeout | undefined
  private l3Sub: Subscription | undefined
  private rpcSub: Subscription | undefined
  private readonly log: Logger
  private imageSource: { address: string; source: GrpcImageSource } | undefined
  /** Which of the listed controller addresses images come from (it moves on when one is unreachable). */
  private controllerIndex = 0
  /**
   * The metadata service: the DHCP side calls `metadata.attach(networkId,
   * nsName)` when a network's namespace is up (also one found again after a
   * restart) and `metadata.detach(networkId)` before deleting it (a listener
   * keeps its namespace alive); both do nothing when config.metadata is off.
   */
  readonly metadata: MetadataService
  /** The host as the gateway of the physical networks config.hostGateway names (the demo), or undefined. */
  private readonly hostGateway: HostGateway | undefined

  /** `volumeDriver`: the volume role's backend; by default the file driver in config.volumeDir (when config.volume is on). */
  constructor(readonly config: AgentConfig, readonly driver: VirtDriver, log: Logger, volumeDriver?: VolumeDriver) {
    this.uuid = computeId(config)
    this.log = log.child({ host: config.host })
    this.firewall = config.firewall === 'iptables' ? new IptablesFirewall({ host: config.host }) : new RecordingFirewall()
    this.conductor = new ConductorClient(() => this.nc, { host: config.host, requestTimeoutMs: config.requestTimeoutMs })
    const ttl = config.metadataCacheTtlMs
    this.metadata = new MetadataService({
      enabled: config.metadata === 'on', port: config.metadataPort, cacheTtlMs: ttl, negativeTtlMs: Math.min(3_000, Math.ceil(ttl / 10)),
      lookup: (networkId, address) => this.conductor.metadata(networkId, address), log: this.log,
    })
    this.manager = new ComputeManager(driver, this.conductor, {
      host: config.host,
      instancesDir: config.instancesDir,
      // QEMU (the libvirt driver) passes through the guests' directories by group; no one else does.
      dirs: new GuestDirs(driver.name === 'libvirt' ? groupId(config.qemuGroup) : undefined),
      bridgeMappings: config.bridgeMappings,
      manageBridges: driver.name !== 'fake',
      shutdownTimeoutMs: config.shutdownTimeoutMs,
      images: (token, known) => this.images(token, known),
      upload: (imageId, file, token) => this.uploadImage(imageId, file, token),
      refreshFirewall: () => this.refreshFirewall(),
      ...(config.dhcp === 'off' ? {} : { refreshDhcp: () => this.refreshDhcp().catch((err) => this.log.warn({ err }, 'DHCP refresh before a guest starts failed')) }),
      log: this.log,
      // A volume of this host's backend attaches as its file (or its network export, when the agent forces
      // the network path or the volume is multiattach); one of another host's, as a network export the
      // conductor has that host make.
      volumes: {
        export: (volumeId: string, volumeHost: string, o?: { multiattach?: boolean }) => this.volumeExport(volumeId, volumeHost, o),
        unexport: (volumeId: string, volumeHost: string) => this.volumeUnexport(volumeId, volumeHost),
      },
    })
    if (config.volume === 'on') {
      const network = config.volumeExportAddress ? { network: { address: config.volumeExportAddress, tlsDir: config.volumeExportTlsDir } } : {}
      const guests = {
        snapshot: (uuid: string, device: string, overlay: string) => this.manager.snapshotVolumeDisk(uuid, device, overlay),
        source: (uuid: string, device: string) => this.manager.volumeDiskSource(uuid, device),
        pull: (uuid: string, device: string) => this.manager.pullVolumeDisk(uuid, device),
        settlePull: (uuid: string, device: string) => this.manager.settleVolumeDiskPull(uuid, device),
      }
      const backend = volumeDriver ?? new FileVolumeDriver({ dir: config.volumeDir, host: config.host, format: config.volumeFormat, guests, ...network })
      const log = this.log.child({ component: 'volumes' })
      this.volumes = new VolumeManager(backend, {
        imageOf: (volumeId) => this.volumeImage(volumeId),
        extended: (attached, bytes) => this.volumeExtended(attached, bytes),
        holdingGuests: (uuids, fn) => this.manager.holdingGuests(uuids, fn),
        uploads: new VolumeUploader({
          host: config.host, dir: path.join(config.stateDir, 'volume-uploads'), driver: backend,
          grant: (volumeId, castId) => this.conductor.volumeUpload(volumeId, castId),
          upload: (imageId, file, token) => this.uploadImage(imageId, file, token),
          log,
        }),
        host: config.host,
        log,
      })
    }
    this.dhcp = config.dhcp === 'dnsmasq'
      ? new DnsmasqDhcp({ dir: config.dhcpDir, bridgeFor: (n) => this.manager.bridgeFor(n), log: this.log.child({ component: 'dhcp' }) })
      : new NoDhcp()
    this.hostGateway = config.hostGateway.length
      ? new HostGateway({ stateDir: config.stateDir, nat: config.hostGatewayNat, host: config.host, log: this.log.child({ component: 'host-gateway' }) })
      : undefined
    this.l3 = !config.l3 || config.l3Driver === 'none' ? undefined
      : config.l3Driver === 'fake' ? new FakeRouterBuilder()
      : new L3Agent({ stateDir: config.stateDir, bridgeFor: (n) => this.manager.bridgeFor(n), log: this.log.child({ component: 'l3' }) })
    // The metadata service lives in the DHCP namespaces (Neutron's isolated metadata):
    // it listens in each one that comes up, and lets go before one is deleted.
    this.dhcp.onNamespace({
      namespaceUp: (networkId, ns) => this.metadata.attach(networkId, ns),
      namespaceDown: (networkId) => this.metadata.detach(networkId),
    })
  }

  /** Uploads a server snapshot's data with its image-upload token (the image service client, as downloads). */
  private async uploadImage(imageId: string, file: string, token: string): Promise<{ status: string; checksum: string; size: number }> {
    this.images(token) // makes the client for the controller's address now
    const image = await this.imageSource!.source.upload(imageId, file, token)
    return { status: image.status ?? '', checksum: image.checksum ?? '', size: Number(image.size ?? 0) }
  }

  /** The image service client (one per controller address); the token is the build's. */
  private images(token: string, known?: KnownImage): { download: (imageId: string) => ReturnType<GrpcImageSource['download']> } {
    // Several controllers (comma-separated controllerAddress): one that cannot be reached is left
    // for the next; the cast worker tries the download again (Unavailable), there.
    const listed = (this.config.controllerAddress ?? '').split(',').map((a) => a.trim()).filter(Boolean)
    const addresses = listed.length ? listed : this.announced?.apiAddress ? [this.announced.apiAddress] : []
    const address = addresses[this.controllerIndex % Math.max(addresses.length, 1)]
    if (!address) throw new Unavailable('the controller has not told this agent its address yet; set STRATO_AGENT_CONTROLLER')
    if (this.imageSource?.address !== address) {
      this.imageSource?.source.close()
      this.imageSource = { address, source: new GrpcImageSource(address, () => '', this.config.caFile) }
    }
    const source = this.imageSource.source
    const failover = (err: unknown): never => {
      if (err instanceof Unavailable && addresses.length > 1 && addresses[this.controllerIndex % addresses.length] === address) {
        this.controllerIndex++
        this.log.warn({ controller: address, next: addresses[this.controllerIndex % addresses.length] }, 'controller unreachable for images; using the next one')
      }
      throw err
    }
    return {
      download: async (imageId) => {
        const r = await source.download(imageId, token, known).catch(failover)
        return {
          ...r,
          data: (async function* () {
            try {
              yield* r.data
            } catch (err) {
              failover(err)
            }
          })(),
        }
      },
    }
  }

  /** The cached base of the image a volume is made from (the conductor grants the download). */
  private async volumeImage(volumeId: string): Promise<string> {
    const v = await this.conductor.volumeImage(volumeId)
    return this.manager.imageBase(v.imageId, { token: v.imageReadToken, ...(v.diskFormat ? { known: { checksum: v.checksum, diskFormat: v.diskFormat, status: 'active' } } : {}) })
  }

  /**
   * Has the running guests of this host grow a volume of theirs to `bytes`
   * (QEMU resizes the image it has open). A server gone meanwhile is
   * skipped; a stopped guest reads the size when it starts.
   */
  private async volumeExtended(attached: Array<{ instanceUuid: string; device: string }>, bytes: number): Promise<void> {
    for (const a of attached) {
      await this.manager.resizeVolume(a.instanceUuid, a.device, bytes).catch((err: Error) => {
        if (!(err instanceof NotFound)) throw err
        this.log.warn({ instance: a.instanceUuid, device: a.device, err: err.message }, 'extended volume: its server is not here')
      })
    }
  }

  /**
   * Where volume `volumeId` of `volumeHost`'s backend is for this host's
   * guests (see ComputeManagerOptions.volumes): a multiattach volume of this
   * host's is its network export too (QEMU lets one process alone write a
   * qcow2 file; the export's daemon is that one for every guest). A backend
   * that serves no exports gives the file, as before multiattach volumes
   * were exported: one guest of this host at a time can have it.
   */
  private async volumeExport(volumeId: string, volumeHost: string, o: { multiattach?: boolean } = {}): Promise<VolumeExport> {
    const exportsHere = this.volumes?.driver.networkExports ?? false
    if (o.multiattach && !exportsHere && volumeHost === this.config.host) this.log.warn({ volume: volumeId }, 'multiattach volume attached as its file: this host serves no network exports (volumeExportAddress), so a second guest of this host cannot have it')
    const network = this.config.volumeAttach === 'network' || (Boolean(o.multiattach) && exportsHere)
    if (volumeHost === this.config.host && this.volumes) return this.volumes.driver.export(volumeId, this.config.host, { network })
    if (volumeHost === this.config.host) throw new FailedPrecondition(`volume ${volumeId} is recorded on host '${volumeHost}', which runs no volume role (STRATO_AGENT_VOLUME=off)`)
    return (await this.conductor.volumeExport(volumeId))!
  }

  /** Ends what volumeExport gave (volumeHost '': the controller knows the volume's host). */
  private async volumeUnexport(volumeId: string, volumeHost: string): Promise<void> {
    if (volumeHost === this.config.host && this.volumes) return this.volumes.driver.unexport(volumeId, this.config.host)
    await this.conductor.volumeExport(volumeId, true)
  }

  /**
   * The volume role's part of a call from the conductor: export one of this
   * host's volumes to another host, or end that export.
   */
  private async answerVolumeExport(q: { volumeId?: string; host?: string; unexport?: boolean }): Promise<VolumeExport | undefined> {
    if (!this.volumes) throw new FailedPrecondition(`host '${this.config.host}' runs no volume role (STRATO_AGENT_VOLUME=off), so it exports no volume`)
    const volumeId = q.volumeId ?? ''
    const host = q.host ?? ''
    if (!host) throw new InvalidArgument('a volume export names the host it is for', { field: 'host' })
    if (q.unexport) {
      await this.volumes.driver.unexport(volumeId, host)
      this.log.info({ volume: volumeId, for: host }, 'volume export ended')
      return undefined
    }
    const e = await this.volumes.driver.export(volumeId, host, { network: true })
    this.log.info({ volume: volumeId, for: host, ...(e.kind === 'nbd' ? { address: e.address, port: e.port } : {}) }, 'volume exported')
    return e
  }

  /** The volume backend's capacity, for the announce and heartbeats (undefined without the volume role). */
  private async volumeStats(): Promise<VolumeBackendStats | undefined> {
    if (!this.volumes) return undefined
    const s = await this.volumes.driver.stats()
    return { enabled: true, backendName: s.backendName, totalGb: s.totalGb, freeGb: s.freeGb }
  }

  async start(): Promise<void> {
    try {
      await this.run()
    } catch (err) {
      // Leave nothing running behind a failed start.
      this.clearTimers()
      this.rpcSub?.unsubscribe()
      await this.metadata.close()
      await this.worker?.stop()
      await this.nc?.close().catch(() => {})
      await this.driver.close()
      this.state = 'STOPPED'
      throw err
    }
  }

  private async run(): Promise<void> {
    await this.driver.init()
    await this.volumes?.driver.init()
    this.manager.dirs.ensureTree(this.config.stateDir, this.config.instancesDir)
    // Attached volumes are opened by QEMU in place: it passes through their directory as through the guests'.
    if (this.volumes) this.manager.dirs.ensure(this.config.volumeDir)
    const creds = this.config.natsCreds
    // Its own inbox prefix: the only inboxes its credentials let it subscribe to.
    this.nc = await connect({
      servers: this.config.nats.servers, name: `strato-agent-${this.config.host}`, maxReconnectAttempts: -1, reconnectTimeWait: 250,
      inboxPrefix: agentInboxPrefix(this.config.host), ...(creds ? { authenticator: credsAuthenticator(creds) } : {}),
      // tls:// URLs: nats-server's certificate is checked against the cloud's CA (the one the controller's is).
      ...(this.config.nats.tls ? { tls: this.config.caFile ? { caFile: this.config.caFile } : {} } : {}),
    }).catch((err: Error) => {
      if (err.name !== 'AuthorizationError') throw err
      throw new FailedPrecondition(`NATS at ${this.config.natsUrl} refused the agent of '${this.config.host}': ${this.config.natsCredsFile ? `the credentials in ${this.config.natsCredsFile} are not valid there` : 'it requires credentials (set STRATO_AGENT_NATS_CREDS)'}`, { cause: err })
    })
    this.js = jetstream(this.nc)
    void this.watchStatus(this.nc)
    this.rpcSub = this.nc.subscribe(agentRpcSubject(this.config.host), { callback: (err, msg) => (err ? this.log.warn({ err }, 'rpc subscription failed') : void this.answer(msg)) })
    this.announced = await this.announce()
    // This host's NBD certificate (issued at join) is renewed before it expires, over the host's own bus identity.
    const renewFailed = (err: unknown) => this.log.warn({ err }, "renewing this host's NBD certificate failed; tried again at the next daily check")
    await this.renewNbdCertificate().catch(renewFailed)
    this.nbdCertTimer = setInterval(() => void this.renewNbdCertificate().catch(renewFailed), NBD_CERT_CHECK_INTERVAL_MS)
    this.nbdCertTimer.unref()
    this.firewallSub = this.nc.subscribe(FIREWALL_CHANGED_SUBJECT, {
      callback: () => {
        // Ports changed: cached metadata answers may name the wrong server now.
        this.metadata.invalidate()
        void this.refreshFirewall().catch((err) => this.log.warn({ err }, 'security group refresh failed'))
      },
    })
    await this.refreshFirewall()
    this.firewallTimer = setInterval(() => void this.refreshFirewall().catch((err) => this.log.warn({ err }, 'security group refresh failed')), this.config.firewallSyncIntervalMs)
    this.firewallTimer.unref()
    if (this.config.dhcp !== 'off') {
      const failed = (err: unknown) => this.log.warn({ err }, 'DHCP refresh failed')
      this.dhcpSub = this.nc.subscribe(DHCP_CHANGED_SUBJECT, { callback: () => void this.refreshDhcp().catch(failed) })
      // Serving DHCP is not a reason to refuse to start: the timer tries again.
      await this.refreshDhcp().catch(failed)
      this.dhcpTimer = setInterval(() => void this.refreshDhcp().catch(failed), this.config.dhcpSyncIntervalMs)
      this.dhcpTimer.unref()
    }
    if (this.l3) {
      const failed = (err: unknown) => this.log.warn({ err }, 'router refresh failed')
      this.l3Sub = this.nc.subscribe(ROUTER_CHANGED_SUBJECT, { callback: () => void this.refreshRouters().catch(failed) })
      // As for DHCP: routers that cannot be built now are retried by the timer.
      await this.refreshRouters().catch(failed)
      this.l3Timer = setInterval(() => void this.refreshRouters().catch(failed), this.config.l3SyncIntervalMs)
      this.l3Timer.unref()
    }
    const r = await this.manager.reconcile()
    if (r.removed.length) this.log.warn({ removed: r.removed }, 'removed guests and disks the controller no longer places here')
    // The volume role's network exports go with the sync: those no live attachment needs end here.
    const v = await this.manager.reconcileVolumes(this.volumes ? await this.volumes.driver.exports() : [])
    if (v.detached.length) this.log.warn({ detached: v.detached }, 'detached volume disks no attachment asks for')
    for (const e of v.unexport) await this.volumes?.driver.unexport(e.volumeId, e.host)
    if (v.unexport.length) this.log.warn({ unexported: v.unexport }, 'ended volume exports no attachment needs')
    this.state = 'RUNNING'
    this.worker = new CastWorker(this.js, this.manager, this.volumes, { host: this.config.host, maxConcurrentCasts: this.config.maxConcurrentCasts, running: () => this.state === 'RUNNING' }, this.log)
    this.worker.resume(r.resume)
    this.worker.resumeCasts(v.resume)
    this.scheduleHeartbeats(this.announced.heartbeatIntervalMs || this.config.heartbeatIntervalMs)
    await this.reportPower()
    this.powerTimer = setInterval(() => void this.reportPower(), this.config.powerSyncIntervalMs)
    this.powerTimer.unref()
    await this.worker.consume(this.announced.castStream, this.announced.castConsumer)
    this.log.info({ uuid: this.uuid, mapped: this.announced.mapped, driver: this.driver.name }, 'agent running')
  }

  async stop(): Promise<void> {
    if (this.state === 'STOPPING' || this.state === 'STOPPED') return
    this.state = 'STOPPING'
    this.clearTimers()
    this.rpcSub?.unsubscribe()
    await this.metadata.close()
    await this.worker?.stop()
    await this.nc?.drain().catch((err) => this.log.warn({ err }, 'NATS drain failed'))
    this.imageSource?.source.close()
    await this.driver.close()
    this.state = 'STOPPED'
    this.log.info('agent stopped')
  }

  private clearTimers(): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer)
    if (this.powerTimer) clearInterval(this.powerTimer)
    if (this.firewallTimer) clearInterval(this.firewallTimer)
    if (this.nbdCertTimer) clearInterval(this.nbdCertTimer)
    this.firewallSub?.unsubscribe()
    if (this.dhcpTimer) clearInterval(this.dhcpTimer)
    this.dhcpSub?.unsubscribe()
    if (this.l3Timer) clearInterval(this.l3Timer)
    this.l3Sub?.unsubscribe()
  }

  /**
   * Renews this host's NBD certificate when it is due (volume/nbd-tls.ts:
   * within 30 days of expiry or past 2/3 of its lifetime). New exports and
   * guests' new NBD disks use the new one. QEMU reads its x509 files once,
   * and cannot swap a serving NBD server's: an export daemon that loaded an
   * older one is served again with it when no client is connected (checked
   * at each daily pass); a running guest's QEMU keeps the one it loaded until
   * it restarts (the old one is good until its notAfter, 30 days or more on).
   */
  private async renewNbdCertificate(): Promise<void> {
    const nbd = hostNbdTls(this.config)
    const why = await renewHostCertificate(nbd, (csrPem, addresses) => this.conductor.renewHostCertificate(csrPem, addresses))
    if (why) this.log.info({ why, dir: nbd.dir, clientDir: nbd.clientDir, addresses: nbd.addresses }, `renewed this host's NBD certificate (CN=${nbd.host})`)
    // Exports served with an older one (at this start, or busy at the last check) take it up once no client is connected.
    const again = (await this.volumes?.driver.reloadTls?.()) ?? []
    if (again.length) this.log.info({ volumes: again }, 'volume exports served again with the renewed NBD certificate (no client was connected)')
  }

  /**
   * Makes this host's filtering what the controller says now, for all its
   * ports at once (coalesced: see `coalesced`).
   */
  readonly refreshFirewall = coalesced(async () => this.firewall.apply(await this.conductor.firewall()))

  /**
   * Makes this host's DHCP what the controller says now (the controller makes
   * or removes the host's DHCP ports as it answers), and the host the gateway
   * of the networks config.hostGateway names. Coalesced as the firewall is.
   * dnsmasq keeps running when the agent stops; the next agent adopts it.
   */
  readonly refreshDhcp = coalesced(async () => {
    const networks = await this.conductor.dhcp()
    await this.dhcp.apply(networks)
    if (this.hostGateway) await this.hostGateway.apply(this.gatewaysOf(networks))
  })

  /**
   * Makes this host's routers what the controller places here now. Coalesced
   * as the firewall is. Routers keep forwarding when the agent stops (as
   * dnsmasq keeps serving); the next agent adopts them from its state file.
   */
  readonly refreshRouters = coalesced(async () => {
    if (this.l3) await this.l3.apply(await this.conductor.routers())
  })

  /** The flat networks of config.hostGateway's physical networks, with their first IPv4 subnet that has a gateway. */
  private gatewaysOf(networks: DhcpNetwork[]): HostGatewayNetwork[] {
    const out: HostGatewayNetwork[] = []
    for (const n of networks) {
      if (n.networkType !== 'flat' || !this.config.hostGateway.includes(n.physicalNetwork)) continue
      const s = n.subnets.find((x) => x.ipVersion === 4 && x.gatewayIp)
      if (!s) continue
      out.push({ networkId: n.networkId, bridge: this.manager.bridgeFor(n), gateway: `${s.gatewayIp}/${s.cidr.split('/')[1]}`, cidr: s.cidr })
    }
    return out
  }

  /** Announces the host until the conductor answers (the controller may start later). */
  private async announce(): Promise<Announced> {
    const caps = await this.driver.getHostCapabilities()
    const diskGb = this.config.diskGb ?? Math.floor((() => {
      const s = statfsSync(this.config.instancesDir)
      return (s.blocks * s.bsize) / 2 ** 30
    })())
    const volume = await this.volumeStats()
    const announce: AgentAnnounce = {
      ...(volume ? { volume } : {}),
      host: this.config.host,
      uuid: this.uuid,
      availabilityZone: this.config.availabilityZone,
      // The role follows what the agent builds: a host that builds no routers is never given one.
      l3: this.l3 !== undefined,
      capabilities: {
        cpuModel: caps.cpuModel, arch: caps.arch, vcpus: caps.vcpus, memoryMb: caps.memoryMiB, diskGb,
        accelerator: caps.accelerator, hypervisorType: caps.hypervisorType, hypervisorVersion: caps.hypervisorVersion, hostIp: this.config.myIp,
      },
    }
    for (let delay = 100; ; delay = Math.min(delay * 2, 5_000)) {
      try {
        return await this.conductor.announce(announce)
      } catch (err) {
        if (!(err instanceof Unavailable) || this.state === 'STOPPING') throw err
        this.log.warn({ err: err.message, retryInMs: delay }, 'controller not reachable; announcing again')
        await new Promise((r) => setTimeout(r, delay))
      }
    }
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === 'reconnect' && this.state === 'RUNNING') {
        // A restarted controller (or nats-server) learns about this host again.
        this.announce().then((a) => (this.announced = a), (err) => this.log.warn({ err }, 're-announce failed'))
      }
    }
  }

  /** Synchronous calls from the controller (console output), answered at once. */
  private async answer(msg: Msg): Promise<void> {
    try {
      const req = AgentRequest.decode(msg.data)
      let reply: AgentReply
      let what: string
      if (req.consoleOutput) {
        const { instanceUuid = '', maxBytes = 0 } = req.consoleOutput
        what = `the console output of server ${instanceUuid}`
        reply = { consoleOutput: { output: await this.manager.consoleOutput(instanceUuid, maxBytes || 100 * 1024) } }
      } else if (req.volumeExport) {
        what = `the export of volume ${req.volumeExport.volumeId ?? ''}`
        const e = await this.answerVolumeExport(req.volumeExport)
        reply = e ? { volumeExport: volumeExportToWire(e) } : {}
      } else {
        throw new NotFound('agent request with no known call')
      }
      msg.respond(encodeBounded(what, AgentReply.encode(reply).finish(), this.nc?.info?.max_payload))
    } catch (err) {
      msg.respond(new Uint8Array(), { headers: errorHeaders(err) })
    }
  }

  private scheduleHeartbeats(intervalMs: number): void {
    const beat = () => {
      Promise.all([this.manager.ownGuests(), this.volumeStats().catch((err) => void this.log.warn({ err }, 'volume backend capacity unknown'))]).then(
        ([guests, volume]) => {
          if (this.state !== 'RUNNING' || this.nc?.isClosed()) return
          this.nc!.publish(heartbeatSubject(this.config.host), Heartbeat.encode({ host: this.config.host, uuid: this.uuid, sentAt: new Date(), guests: guests.length, ...(volume ? { volume } : {}) }).finish())
        },
        (err) => this.log.warn({ err }, 'heartbeat skipped: hypervisor not answering'),
      )
    }
    beat()
    this.heartbeatTimer = setInterval(beat, intervalMs)
    this.heartbeatTimer.unref()
  }

  /** Publishes the power state of every own guest (the controller syncs servers from it). */
  async reportPower(): Promise<void> {
    try {
      const sentAt = new Date()
      const guests = await this.manager.ownGuests()
      await this.js!.publish(powerSubject(this.config.host), PowerStates.encode({ host: this.config.host, sentAt, guests: guests.map((g) => ({ instanceUuid: g.uuid, powerState: g.powerState })) }).finish())
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'power states not reported')
    }
  }
}

/**
 * A refresh that runs one at a time: calls while it runs coalesce into one
 * more run after it, so every caller sees a state at least as new as when it
 * called.
 */
function coalesced(run: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined
  let again = false
  return () => {
    if (running) {
      again = true
      return running
    }
    running = (async () => {
      do {
        again = false
        await run()
      } while (again)
    })().finally(() => (running = undefined))
    return running
  }
}
