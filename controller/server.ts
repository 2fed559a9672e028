/**
 * The controller daemon: database, identity, gRPC server (with health and
 * reflection) and the NATS connection, with a visible lifecycle
 * INITIALIZED → RUNNING → STOPPING → STOPPED. Stopping refuses new calls,
 * waits for in-flight ones up to `shutdownGraceMs`, then closes NATS and the
 * database.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { Server, ServerCredentials, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js'
import { connect, credsAuthenticator, type NatsConnection } from '@nats-io/transport-node'
import { readCredsFile } from '../proto/nats-creds.js'
import { parseNatsUrls } from '../proto/nats-urls.js'
import type { ControllerConfig } from './config.js'
import { createLogger, type Logger } from './log.js'
import { openDatabase, type Db } from './store/db.js'
import { IdentityCatalog } from './identity/catalog.js'
import { Authenticator } from './identity/auth.js'
import { KeyRepository } from './identity/keys.js'
import { bootstrap, type BootstrapResult } from './identity/bootstrap.js'
import { Policy, identityPolicy, type TargetLookup } from './identity/policy.js'
import { identityServices } from './api/identity.js'
import { computeServices } from './api/compute.js'
import { computePolicy, serverPolicy } from './compute/policy.js'
import { ServerCatalog } from './compute/servers.js'
import { serverServices } from './api/servers.js'
import { FlavorCatalog } from './compute/flavors.js'
import { KeypairCatalog } from './compute/keypairs.js'
import { QuotaEngine } from './quota/quota.js'
import { networkServices } from './api/network.js'
import { networkPolicy } from './network/policy.js'
import { NetworkCatalog } from './network/networks.js'
import { SubnetCatalog } from './network/subnets.js'
import { PortCatalog } from './network/ports.js'
import { FloatingIpCatalog } from './network/floating-ips.js'
import { SecurityGroupCatalog } from './network/security-groups.js'
import { DhcpPorts } from './network/dhcp.js'
import { RouterCatalog } from './network/routers.js'
import { ImageCatalog } from './image/catalog.js'
import { ImageStore } from './image/store.js'
import { imagePolicy } from './image/policy.js'
import { imageServices, imageStreamHandlers, MAX_MESSAGE, UploadSlots } from './api/images.js'
import { serveOnHttp2 } from './api/bulk.js'
import { hostServices } from './api/hosts.js'
import { placementServices } from './api/placement.js'
import { volumeServices } from './api/volumes.js'
import { volumePolicy } from './volume/policy.js'
import { VolumeTypeCatalog } from './volume/types.js'
import { VolumeBackends } from './volume/backends.js'
import { AttachmentCasts, VolumeCasts } from './volume/casts.js'
import { VolumeCatalog } from './volume/volumes.js'
import { SnapshotCatalog } from './volume/snapshots.js'
import { VolumeResults } from './volume/results.js'
import { AttachmentCatalog } from './volume/attachments.js'
import { VolumeUploads } from './volume/uploads.js'
import { HostRegistry } from './compute/hosts.js'
import { JoinTokens, type HostCredentialIssuer } from './compute/join-tokens.js'
import { ensureOperator, mintAgentJwt } from './bus/credentials.js'
import { ServerGroupCatalog } from './compute/server-groups.js'
import { Placement } from './scheduler/placement.js'
import { Scheduler } from './scheduler/scheduler.js'
import { schedulerPolicy } from './scheduler/policy.js'
import { Conductor } from './conductor/conductor.js'
import { ControllerBus } from './bus/bus.js'
import { inspectImage } from '../native/index.js'
import { HealthState } from './api/health.js'
import { ReflectionIndex, reflectionImplementation } from './api/reflection.js'
import { guardDecoding, type RpcDeps } from './api/rpc.js'
import { HealthService } from '../proto/gen/grpc/health/v1/health.js'
import { ServerReflectionService as ReflectionV1 } from '../proto/gen/grpc/reflection/v1/reflection.js'
import { ServerReflectionService as ReflectionV1Alpha } from '../proto/gen/grpc/reflection/v1alpha/reflection.js'
import type { CatalogEntry } from '../proto/gen/strato/identity/v1/identity.js'
import { FailedPrecondition, Unauthenticated, Unavailable } from '../proto/errors.js'
import { grpcUrl } from '../proto/grpc-url.js'
import { listenerTls, type ListenerTls } from './tls/listener.js'
import { ensureCa, signHostCertificate } from './tls/ca.js'
import { RestServer, REST_PREFIX } from './rest/http.js'
import { restServices } from './rest/services.js'

export type LifecycleState = 'INITIALIZED' | 'RUNNING' | 'STOPPING' | 'STOPPED'

export class Controller {
  state: LifecycleState = 'INITIALIZED'
  readonly log: Logger
  db!: Db
  catalog!: IdentityCatalog
  auth!: Authenticator
  nats: NatsConnection | undefined
  placement!: Placement
  scheduler!: Scheduler
  hosts!: HostRegistry
  servers!: ServerCatalog
  volumes!: VolumeCatalog
  /** Routers and their placement on L3 agents. */
  routers!: RouterCatalog
  /** Backend hosts of volumes and their reported capacity. */
  volumeBackends!: VolumeBackends
  private volumeCasts: VolumeCasts | undefined
  private volumeResults: VolumeResults | undefined
  private images: ImageCatalog | undefined
  private attachmentCasts: AttachmentCasts | undefined
  /** The NATS edge (streams, conductor, casts), when natsUrl is set. */
  bus: ControllerBus | undefined
  bootstrapResult: BootstrapResult = { created: false }
  /** The address clients use (host:port), known once RUNNING. */
  address = ''
  /** The listener's TLS (null: plaintext on loopback), known once RUNNING. */
  tls: ListenerTls | null = null
  /** Methods served on the HTTP/2 streams directly (api/bulk.ts); empty when grpc-js serves them. */
  bulkMethods: string[] = []
  /** What joining hosts are given (bus credentials, CA); set once the bus is up with an account to sign with. */
  joinIssuer: HostCredentialIssuer | undefined
  /** The OpenStack REST listener (rest/), when configured. */
  rest: RestServer | undefined
  private grpc: Server | undefined
  private health: HealthState | undefined
  private readonly inFlight = new Set<Promise<unknown>>()

  constructor(readonly config: ControllerConfig, log?: Logger) {
    this.log = log ?? createLogger({ name: 'strato-controller', level: config.log.level, pretty: config.log.pretty })
  }

  /**
   * Opens the store, connects to NATS and serves. A start that fails part-way releases what it
   * opened (the database pool, timers, the NATS connection) before it throws, so the process
   * can exit: an open PostgreSQL pool alone kept it alive.
   */
  async start(): Promise<void> {
    try {
      await this.startUp()
    } catch (err) {
      await this.stop().catch((e: unknown) => this.log.warn({ err: e }, 'releasing a failed start failed'))
      throw err
    }
  }

  private async startUp(): Promise<void> {
    const cfg = this.config
    // The database, signing keys and images: the controller's alone (an older version left it 0755).
    mkdirSync(cfg.dataDir, { recursive: true, mode: 0o700 })
    chmodSync(cfg.dataDir, 0o700)
    this.db = await openDatabase(cfg.databaseUrl)
    // Key files of a version that kept them in the data dir are imported once.
    const keys = new KeyRepository(this.db, cfg.token.maxActiveKeys, path.join(cfg.dataDir, 'keys'))
    await keys.load()
    let auth: Authenticator | undefined
    this.catalog = new IdentityCatalog(this.db, (e) => auth!.revoke(e), cfg.bootstrap.adminProjectName)
    auth = this.auth = new Authenticator(this.db, this.catalog, keys, { expirationSeconds: cfg.token.expirationSeconds, cacheSize: cfg.token.cacheSize, imageReadSeconds: cfg.token.imageReadSeconds, anyProjectAdmin: cfg.bootstrap.anyProjectAdmin }, this.log)
    await auth.load()
    auth.startPolling(cfg.token.revocationPollMs)

    if (cfg.natsUrl) {
      const creds = cfg.natsCredsFile ? readCredsFile(cfg.natsCredsFile) : undefined
      this.nats = await connect({
        // Every node of a cluster: the connection fails over between them (and learns others from the cluster).
        servers: parseNatsUrls(cfg.natsUrl).servers, name: 'strato-controller', maxReconnectAttempts: -1, reconnectTimeWait: 500,
        // No async stack traces: nats.js otherwise builds a RequestError and a TimeoutError (each capturing a stack)
        // per request — every cast's JetStream publish — in case it fails; a failure still says what (timeout, no responders).
        noAsyncTraces: true,
        ...(creds ? { authenticator: credsAuthenticator(creds) } : {}),
        // nats-server's certificate is checked against this CA (TLS, no plaintext fallback).
        ...(cfg.natsCaFile ? { tls: { caFile: cfg.natsCaFile } } : {}),
      }).catch((err: Error) => {
        if (err.name !== 'AuthorizationError') throw err
        throw new Unauthenticated(`NATS at ${cfg.natsUrl} refused the controller: ${cfg.natsCredsFile ? `the credentials in ${cfg.natsCredsFile} are not valid there` : 'it requires credentials (set natsCredsFile / STRATO_NATS_CREDS)'}`, { cause: err })
      })
      this.log.info({ nats: cfg.natsUrl }, 'connected to NATS')
    }

    const quota = new QuotaEngine(this.db)
    const flavors = new FlavorCatalog(this.db)
    const keypairs = new KeypairCatalog(this.db, quota)
    const securityGroups = new SecurityGroupCatalog(this.db, quota)
    const ports = new PortCatalog(this.db, quota, securityGroups)
    const dhcp = new DhcpPorts(this.db, ports, { leaseSeconds: cfg.network.dhcpLeaseSeconds })
    const images = (this.images = new ImageCatalog(this.db, new ImageStore(path.join(cfg.dataDir, 'images')), quota, inspectImage, { idleTimeoutMs: cfg.grpc.uploadIdleTimeoutMs }))
    const placement = (this.placement = new Placement(this.db, quota))
    const hosts = (this.hosts = new HostRegistry(this.db, placement, cfg.hosts, this.log))
    const scheduler = (this.scheduler = new Scheduler(this.db, placement, quota, hosts, cfg.scheduler))
    hosts.onChange = () => scheduler.invalidate()
    await hosts.load()
    hosts.start()
    const routers = (this.routers = new RouterCatalog(this.db, quota, ports, hosts, { rescheduleAfterMs: cfg.network.routerRescheduleAfterMs }, this.log.child({ component: 'routers' })))
    const network = {
      networks: new NetworkCatalog(this.db, quota, cfg.network),
      subnets: new SubnetCatalog(this.db, quota),
      ports,
      floatingIps: new FloatingIpCatalog(this.db, quota, ports),
      securityGroups,
      routers,
    }
    const serverGroups = new ServerGroupCatalog(this.db, quota)
    const volumeLog = this.log.child({ component: 'volumes' })
    const volumeTypes = new VolumeTypeCatalog(this.db)
    const volumeBackends = (this.volumeBackends = new VolumeBackends(this.db, (h) => hosts.isUp(h)))
    const volumeCasts = (this.volumeCasts = new VolumeCasts(this.db, cfg.servers.castRetryMs, volumeLog))
    const snapshots = new SnapshotCatalog(this.db, { quota, casts: volumeCasts, backends: volumeBackends }, volumeLog)
    const servers = (this.servers = new ServerCatalog(
      this.db,
      { flavors, images, keypairs, ports, securityGroups, scheduler, hosts, quota, serverGroups, volumeTypes, volumeBackends, volumeCasts, volumeSnapshots: snapshots },
      { defaultAvailabilityZone: cfg.hosts.defaultAvailabilityZone, ...cfg.servers },
      this.log.child({ component: 'servers' }),
    ))
    await servers.releaseOrphanAllocations()
    servers.startOrphanSweep()
    const volumes = (this.volumes = new VolumeCatalog(this.db, { quota, types: volumeTypes, images, backends: volumeBackends, casts: volumeCasts }, volumeLog))
    const attachmentCasts = (this.attachmentCasts = new AttachmentCasts(this.db, cfg.servers.castRetryMs, volumeLog))
    const attachments = new AttachmentCatalog(this.db, {
      casts: attachmentCasts,
      // Relayed to the volume's host as the conductor does (agents never call each other).
      unexport: async (volumeHost, volumeId, host) => {
        if (!this.bus) throw new Unavailable('no NATS connection to reach the volume host')
        await this.bus.call(volumeHost, { volumeExport: { volumeId, host, unexport: true } }, 50_000)
      },
    }, volumeLog)
    const uploads = new VolumeUploads(this.db, { images, casts: volumeCasts, backends: volumeBackends }, volumeLog)
    const volumeResults = (this.volumeResults = new VolumeResults(this.db, volumeLog, (h) => hosts.isUp(h), cfg.volumes.stuckAfterMs, attachments, images))

    const policy = new Policy(identityPolicy, computePolicy, serverPolicy, imagePolicy, networkPolicy, schedulerPolicy, volumePolicy)
    const lookup: TargetLookup = { catalog: this.catalog, tokenOwner: async (t) => (await auth!.validate(t)).user.id }
    const rpc: RpcDeps = { policy, authenticate: (t) => auth!.authenticate(t), imageRead: (t) => auth!.authenticateImageRead(t), imageUpload: (t) => auth!.authenticateImageUpload(t), lookup, log: this.log, track: (p) => this.track(p) }
    // One set of upload turns for both paths (bulk.ts and grpc-js).
    const uploadLimits = { idleTimeoutMs: cfg.grpc.uploadIdleTimeoutMs, maxConcurrent: cfg.grpc.maxConcurrentUploads }
    const uploadSlots = new UploadSlots(uploadLimits)
    const services: Array<[object, UntypedServiceImplementation]> = [
      ...identityServices({ catalog: this.catalog, auth, serviceCatalog: () => this.serviceCatalog() }, rpc),
      ...computeServices({ flavors, keypairs, quota }, rpc),
      ...imageServices(images, rpc, uploadLimits, uploadSlots),
      ...networkServices(network, rpc),
      ...hostServices(hosts, new JoinTokens(this.db, cfg.joinTokens), () => this.joinIssuer, rpc),
      ...serverServices(servers, serverGroups, hosts, cfg.hosts.defaultAvailabilityZone, rpc, attachments),
      ...placementServices(placement, rpc),
      ...volumeServices({ volumes, snapshots, types: volumeTypes, attachments, uploads }, rpc),
    ]
    const served = new Set(services.map(([def]) => serviceName(def)))
    this.health = new HealthState(served)
    const server = new Server({
      'grpc.max_receive_message_length': MAX_MESSAGE,
      // Pings free connections nghttp2 gave up on (see config.ts); idle ones are closed.
      'grpc.keepalive_time_ms': cfg.grpc.keepaliveTimeMs,
      'grpc.keepalive_timeout_ms': cfg.grpc.keepaliveTimeoutMs,
      'grpc.max_connection_idle_ms': cfg.grpc.maxConnectionIdleMs,
    })
    for (const [def, impl] of services) server.addService(guardDecoding(def) as ServiceDefinition, impl)
    server.addService(HealthService as unknown as ServiceDefinition, this.health.implementation())
    const reflection = new ReflectionIndex(new Set([...served, 'grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection']))
    server.addService(ReflectionV1 as unknown as ServiceDefinition, reflectionImplementation(reflection))
    server.addService(ReflectionV1Alpha as unknown as ServiceDefinition, reflectionImplementation(reflection))
    this.tls = await listenerTls(cfg, this.log)
    const creds = this.tls ? ServerCredentials.createSsl(null, [{ cert_chain: this.tls.certPem, private_key: this.tls.keyPem }], false) : ServerCredentials.createInsecure()
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${cfg.grpc.host}:${cfg.grpc.port}`, creds, (err, p) => (err ? reject(new Unavailable(`cannot listen on ${cfg.grpc.host}:${cfg.grpc.port}: ${err.message}`, { cause: err })) : resolve(p))),
    )
    this.grpc = server
    const bulk = imageStreamHandlers(images, rpc, uploadLimits, uploadSlots)
    if (serveOnHttp2(server, bulk, this.log)) this.bulkMethods = Object.keys(bulk)
    this.address = cfg.grpc.publicAddress ?? `${cfg.grpc.host}:${port}`
    if (cfg.rest.port !== null) {
      const rest = new RestServer({ policy, authenticate: rpc.authenticate, lookup, log: this.log.child({ component: 'rest' }), track: (p) => this.track(p) }, cfg.rest.publicUrl)
      for (const svc of restServices({
        identity: this.catalog, auth, serviceCatalog: () => this.restCatalog(), region: cfg.bootstrap.region,
        flavors, keypairs, servers, serverGroups, hosts, images, quota, network, placement, defaultAvailabilityZone: cfg.hosts.defaultAvailabilityZone,
        imageUploads: { slots: uploadSlots, limits: uploadLimits }, volume: { volumes, snapshots, types: volumeTypes, uploads, attachments, backends: volumeBackends },
      })) rest.add(svc)
      await rest.listen(cfg.rest.host ?? cfg.grpc.host, cfg.rest.port, this.tls)
      this.rest = rest
    }

    if (this.nats) {
      this.bus = new ControllerBus(this.nats, new Conductor(hosts, this.db, { images, imageReadToken: (imageId, host, uuid) => auth!.issueImageRead(imageId, host, uuid), imageUploadToken: (imageId, host, uuid) => auth!.issueImageUpload(imageId, host, uuid), dhcp, routers, attachments,
        // Volume exports are relayed to the volume's host over its agent's request subject (agents never call each other).
        agents: { call: (host, req, timeoutMs) => this.bus!.call(host, req, timeoutMs) }, agentCallTimeoutMs: 50_000,
        // Hosts renew their NBD certificates over the bus, signed as at JoinHost (only where their bus identity is their own).
        hostIssuer: () => this.joinIssuer }), hosts, this.log, () => this.url, {
        castResult: async (r) => {
          if (await attachments.apply(r)) return
          if (!(await volumeResults.apply(r))) await servers.applyResult(r)
        },
        volumeStats: (host, stats) => volumeBackends.report(host, stats),
        powerStates: (host, sentAt, guests) => servers.applyPowerStates(host, sentAt, guests),
        identityChanged: (what) => auth!.changedElsewhere(what),
      }, cfg.hosts.castAckWaitMs, cfg.natsStreamReplicas)
      await this.bus.start()
      servers.attach(this.bus)
      volumeCasts.attach(this.bus)
      attachmentCasts.attach(this.bus)
      volumeResults.start()
      // Uploads a dead controller was receiving (server snapshots, volume uploads, Glance PUTs) are put back to queued.
      images.startUploadSweep(this.log.child({ component: 'images' }))
      const bus = this.bus
      auth.onChange = (what) => bus.identityChanged(what)
      ports.onChange = () => {
        bus.firewallChanged()
        bus.dhcpChanged()
        // A port's addresses or its floating IPs may be in a router's spec.
        bus.routerChanged()
      }
      routers.onChange = () => bus.routerChanged()
      network.floatingIps.onChange = () => bus.routerChanged()
      // Routers waiting for an L3 agent, or on one down too long, are (re)placed as often as agents beat.
      routers.start(cfg.hosts.heartbeatIntervalMs)
      network.subnets.onChange = () => {
        bus.dhcpChanged()
        bus.routerChanged()
      }
      network.networks.onChange = () => bus.dhcpChanged()
      securityGroups.onChange = () => bus.firewallChanged()
      // Casts the previous run recorded but could not queue go out now.
      await servers.resend()
      await volumeCasts.resend()
      await attachmentCasts.resend()
      if (cfg.natsOperatorDir) this.joinIssuer = this.hostCredentialIssuer(cfg.natsOperatorDir)
    }

    if (cfg.bootstrap.openrcPath) {
      this.bootstrapResult = await bootstrap(this.db, this.catalog, {
        adminProjectName: cfg.bootstrap.adminProjectName,
        openrcPath: cfg.bootstrap.openrcPath,
        authUrl: this.url,
        caFile: this.tls?.caFile ?? null,
        region: cfg.bootstrap.region,
        openstackAuthUrl: this.rest ? `${this.rest.url(REST_PREFIX.identity)}/v3` : null,
      }, this.log)
    }
    this.health.set(true)
    this.state = 'RUNNING'
    this.log.info({ address: this.address, services: [...served] }, 'controller running')
  }

  /** Stops accepting calls, finishes in-flight ones (up to the grace period), closes NATS and the database. */
  async stop(): Promise<void> {
    if (this.state === 'STOPPING' || this.state === 'STOPPED') return
    this.state = 'STOPPING'
    this.log.info({ inFlight: this.inFlight.size }, 'controller stopping')
    this.health?.set(false)
    const rest = this.rest
    const restClosed = rest?.close()
    const server = this.grpc
    if (server) {
      const drained = new Promise<void>((resolve) => server.tryShutdown(() => resolve()))
      const timer = setTimeout(() => server.forceShutdown(), this.config.shutdownGraceMs)
      await drained
      clearTimeout(timer)
    }
    await Promise.allSettled([...this.inFlight])
    await restClosed
    this.auth?.stop()
    this.hosts?.stop()
    this.routers?.stop()
    this.servers?.stop()
    this.volumeCasts?.stop()
    this.attachmentCasts?.stop()
    this.volumeResults?.stop()
    this.images?.stop()
    await this.bus?.stop().catch((err) => this.log.warn({ err }, 'NATS bus stop failed'))
    if (this.nats) await this.nats.drain().catch((err) => this.log.warn({ err }, 'NATS drain failed'))
    await this.db?.destroy()
    this.state = 'STOPPED'
    this.log.info('controller stopped')
  }

  /**
   * What joining hosts get: a NATS user JWT signed with the account key in
   * `operatorDir` (the host's own public key, its own subjects), where NATS is,
   * and the CA. The keys must exist: a new operator would sign credentials
   * the running nats-server does not trust.
   */
  private hostCredentialIssuer(operatorDir: string): HostCredentialIssuer {
    if (!existsSync(path.join(operatorDir, 'strato-account.nk'))) throw new FailedPrecondition(`natsOperatorDir ${operatorDir} holds no NATS account key (strato-account.nk); it must be the directory nats-server's operator was made in`)
    const op = ensureOperator(operatorDir)
    const cfg = this.config
    const natsUrls = cfg.natsAdvertiseUrls.length ? cfg.natsAdvertiseUrls : cfg.natsUrl ? parseNatsUrls(cfg.natsUrl).servers : []
    const caFile = this.tls?.caFile ?? cfg.natsCaFile
    return {
      busCredentials: async (host, publicKey) => ({ natsUrls, userJwt: mintAgentJwt(op, host, publicKey) }),
      // The CA the controller made (tls.dir) signs; an operator's certificate comes without its CA's key.
      hostCertificate: async (host, csrPem, addresses) => (this.tls && !cfg.tls.certFile ? signHostCertificate(await ensureCa(cfg.tls.dir), host, csrPem, addresses) : ''),
      caPem: () => (caFile ? readFileSync(caFile, 'utf8') : ''),
      controllerAddress: () => this.url,
    }
  }

  /** The URL clients are given (catalog, openrc, agents): `grpcs://` when the listener speaks TLS. */
  get url(): string {
    return grpcUrl(this.address, this.tls !== null)
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inFlight.add(p)
    const done = () => this.inFlight.delete(p)
    p.then(done, done)
    return p
  }

  /** Every service type this controller serves, all at its gRPC address. */
  serviceCatalog(): CatalogEntry[] {
    const url = this.url
    return this.catalogOf([['identity', 'keystone', url], ['compute', 'nova', url], ['image', 'glance', url], ['network', 'neutron', url], ['placement', 'placement', url], ['block-storage', 'cinder', url]])
  }

  /** The services REST serves, each at its REST endpoint (what REST tokens carry); empty without a REST listener. */
  restCatalog(): CatalogEntry[] {
    const rest = this.rest
    if (!rest) return []
    return this.catalogOf([
      ['identity', 'keystone', rest.url(REST_PREFIX.identity)],
      ['compute', 'nova', rest.url(`${REST_PREFIX.compute}/v2.1`)],
      ['image', 'glance', rest.url(REST_PREFIX.image)],
      ['network', 'neutron', rest.url(REST_PREFIX.network)],
      // Cinder's two names for v3 (older clients look for volumev3, newer for block-storage); project-less paths (3.67).
      ['volumev3', 'cinderv3', rest.url(`${REST_PREFIX.volume}/v3`)],
      ['block-storage', 'cinder', rest.url(`${REST_PREFIX.volume}/v3`)],
    ])
  }

  private catalogOf(services: Array<[type: string, name: string, url: string]>): CatalogEntry[] {
    return services.map(([type, name, url]) => ({
      id: type,
      type,
      name,
      endpoints: ['public', 'internal', 'admin'].map((iface) => ({ id: `${type}-${iface}`, interface: iface, region: this.config.bootstrap.region, url })),
    }))
  }
}

function serviceName(def: object): string {
  const first = Object.values(def)[0] as { path: string }
  return first.path.slice(1, first.path.lastIndexOf('/'))
}
