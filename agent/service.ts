/**
 * The agent daemon's core: connects to NATS, announces its host (capabilities
 * from the virt driver) to the conductor, reconciles its guests with what the
 * controller believes, sends heartbeats and power states, answers synchronous
 * calls (console output), and works through its cast queue (a JetStream
 * durable consumer: casts wait while the agent is down).
 *
 * Casts run concurrently across servers and in order for one server (the
 * compute manager's locks). A cast is acked only after its result is stored
 * in the event stream, so a crash at any point means the cast comes again;
 * redelivered casts are idempotent (by cast id, and by asking the hypervisor).
 * Lifecycle INITIALIZED → RUNNING → STOPPING → STOPPED; stop() stops taking
 * casts, finishes the ones in hand, drains NATS.
 */
import { chmodSync, mkdirSync, statfsSync, statSync } from 'node:fs'
import path from 'node:path'
import { connect, type NatsConnection, type Subscription, type Msg } from '@nats-io/transport-node'
import { jetstream, type ConsumerMessages, type JetStreamClient, type JsMsg } from '@nats-io/jetstream'
import type { Logger } from 'pino'
import { FailedPrecondition, NotFound, Unavailable, toStratoError } from '../proto/errors.js'
import { errorFromHeaders, errorHeaders } from '../proto/nats-errors.js'
import { CONDUCTOR_SUBJECT, FIREWALL_CHANGED_SUBJECT, agentRpcSubject, castResultSubject, heartbeatSubject, parseCastId, powerSubject } from '../proto/subjects.js'
import {
  AgentReply, AgentRequest, Cast, CastResult, ConductorReply, ConductorRequest, Heartbeat, PowerStates, type AnnounceReply,
} from '../proto/gen/strato/agent/v1/agent.js'
import { computeId, type AgentConfig } from './config.js'
import { ComputeManager, type BuildSpec, type KnownInstance } from './compute-manager.js'
import { GrpcImageSource } from './disk/grpc-image-source.js'
import type { VirtDriver } from './virt/driver.js'
import { IptablesFirewall, RecordingFirewall, type Firewall, type FirewallRule } from './net/firewall.js'

export type AgentState = 'INITIALIZED' | 'RUNNING' | 'STOPPING' | 'STOPPED'

/** Simple counting semaphore: at most `n` casts in hand. */
class Slots {
  private free: number
  private readonly waiting: Array<() => void> = []
  constructor(n: number) {
    this.free = n
  }
  async take(): Promise<void> {
    if (this.free > 0) {
      this.free--
      return
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve))
  }
  give(): void {
    const next = this.waiting.shift()
    if (next) next()
    else this.free++
  }
}

export class AgentService {
  state: AgentState = 'INITIALIZED'
  readonly uuid: string
  readonly manager: ComputeManager
  nc: NatsConnection | undefined
  /** What the controller said at the last announce. */
  announced: AnnounceReply | undefined
  private js: JetStreamClient | undefined
  private heartbeatTimer: NodeJS.Timeout | undefined
  private powerTimer: NodeJS.Timeout | undefined
  private firewallTimer: NodeJS.Timeout | undefined
  private firewallSub: Subscription | undefined
  /** Security groups on this host (iptables, or a recorder that filters nothing). */
  readonly firewall: Firewall
  private firewallRun: Promise<void> | undefined
  private firewallAgain = false
  private casts: ConsumerMessages | undefined
  private castLoop: Promise<void> | undefined
  private rpcSub: Subscription | undefined
  private readonly done = new Set<string>()
  private readonly inHand = new Map<string, Promise<void>>()
  private readonly slots: Slots
  private readonly log: Logger
  private imageSource: { address: string; source: GrpcImageSource } | undefined

  constructor(readonly config: AgentConfig, readonly driver: VirtDriver, log: Logger) {
    this.uuid = computeId(config)
    this.log = log.child({ host: config.host })
    this.slots = new Slots(config.maxConcurrentCasts)
    this.firewall = config.firewall === 'iptables' ? new IptablesFirewall({ host: config.host }) : new RecordingFirewall()
    this.manager = new ComputeManager(driver, {
      buildSpec: async (instanceUuid) => {
        const reply = await this.request({ buildSpec: { instanceUuid, host: this.config.host } })
        if (!reply.buildSpec) throw new Unavailable('the conductor sent no build spec')
        return reply.buildSpec as Required<typeof reply.buildSpec> as unknown as BuildSpec
      },
      hostInstances: async (also) => {
        const reply = await this.request({ hostInstances: { host: this.config.host, also } })
        return (reply.hostInstances?.instances ?? []) as KnownInstance[]
      },
    }, {
      host: config.host,
      instancesDir: config.instancesDir,
      bridgeMappings: config.bridgeMappings,
      manageBridges: driver.name !== 'fake',
      shutdownTimeoutMs: config.shutdownTimeoutMs,
      images: (token) => this.images(token),
      refreshFirewall: () => this.refreshFirewall(),
    })
  }

  /** The image service client (one per controller address); the token is the build's. */
  private images(token: string): { download: GrpcImageSource['download'] } {
    const address = this.config.controllerAddress ?? this.announced?.apiAddress ?? ''
    if (!address) throw new Unavailable('the controller has not told this agent its address yet; set STRATO_AGENT_CONTROLLER')
    if (this.imageSource?.address !== address) {
      this.imageSource?.source.close()
      this.imageSource = { address, source: new GrpcImageSource(address, () => '') }
    }
    const source = this.imageSource.source
    return { download: (imageId) => source.download(imageId, token) }
  }

  async start(): Promise<void> {
    try {
      await this.run()
    } catch (err) {
      // Leave nothing running behind a failed start.
      this.clearTimers()
      this.rpcSub?.unsubscribe()
      await this.casts?.close().catch(() => {})
      await this.nc?.close().catch(() => {})
      await this.driver.close()
      this.state = 'STOPPED'
      throw err
    }
  }

  private async run(): Promise<void> {
    await this.driver.init()
    mkdirSync(this.config.instancesDir, { recursive: true })
    if (this.config.driver === 'libvirt') guestReachable(this.config.instancesDir)
    this.nc = await connect({ servers: this.config.natsUrl, name: `strato-agent-${this.config.host}`, maxReconnectAttempts: -1, reconnectTimeWait: 250 })
    this.js = jetstream(this.nc)
    void this.watchStatus(this.nc)
    this.rpcSub = this.nc.subscribe(agentRpcSubject(this.config.host), { callback: (err, msg) => (err ? this.log.warn({ err }, 'rpc subscription failed') : void this.answer(msg)) })
    this.announced = await this.announce()
    this.firewallSub = this.nc.subscribe(FIREWALL_CHANGED_SUBJECT, { callback: () => void this.refreshFirewall().catch((err) => this.log.warn({ err }, 'security group refresh failed')) })
    await this.refreshFirewall()
    this.firewallTimer = setInterval(() => void this.refreshFirewall().catch((err) => this.log.warn({ err }, 'security group refresh failed')), this.config.firewallSyncIntervalMs)
    this.firewallTimer.unref()
    const r = await this.manager.reconcile()
    if (r.removed.length) this.log.warn({ removed: r.removed }, 'removed guests and disks the controller no longer places here')
    this.state = 'RUNNING'
    this.resume(r.resume)
    this.scheduleHeartbeats(this.announced.heartbeatIntervalMs || this.config.heartbeatIntervalMs)
    await this.reportPower()
    this.powerTimer = setInterval(() => void this.reportPower(), this.config.powerSyncIntervalMs)
    this.powerTimer.unref()
    await this.consumeCasts()
    this.log.info({ uuid: this.uuid, mapped: this.announced.mapped, driver: this.driver.name }, 'agent running')
  }

  async stop(): Promise<void> {
    if (this.state === 'STOPPING' || this.state === 'STOPPED') return
    this.state = 'STOPPING'
    this.clearTimers()
    this.rpcSub?.unsubscribe()
    await this.casts?.close().catch(() => {})
    await this.castLoop?.catch(() => {})
    await Promise.allSettled([...this.inHand.values()])
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
    this.firewallSub?.unsubscribe()
  }

  /**
   * Makes this host's filtering what the controller says now, for all its
   * ports at once. Calls while one runs coalesce into one more run after it,
   * so every caller sees a state at least as new as when it called.
   */
  refreshFirewall(): Promise<void> {
    if (this.firewallRun) {
      this.firewallAgain = true
      return this.firewallRun
    }
    const once = async (): Promise<void> => {
      do {
        this.firewallAgain = false
        const reply = await this.request({ firewall: { host: this.config.host } })
        const ports = (reply.firewall?.ports ?? []).map((p) => ({
          portId: p.portId ?? '', macAddress: p.macAddress ?? '', fixedIps: p.fixedIps ?? [],
          rules: (p.rules ?? []).map((r) => ({
            direction: r.direction as FirewallRule['direction'], ethertype: r.ethertype as FirewallRule['ethertype'],
            protocol: r.protocol ?? -1, portMin: r.portMin ?? 0, portMax: r.portMax ?? 0, remotePrefix: r.remotePrefix ?? '',
          })),
        }))
        await this.firewall.apply(ports)
      } while (this.firewallAgain)
    }
    this.firewallRun = once().finally(() => (this.firewallRun = undefined))
    return this.firewallRun
  }

  /** Announces the host until the conductor answers (the controller may start later). */
  private async announce(): Promise<AnnounceReply> {
    const caps = await this.driver.getHostCapabilities()
    const diskGb = this.config.diskGb ?? Math.floor((() => {
      const s = statfsSync(this.config.instancesDir)
      return (s.blocks * s.bsize) / 2 ** 30
    })())
    const req: ConductorRequest = {
      announce: {
        host: this.config.host,
        uuid: this.uuid,
        availabilityZone: this.config.availabilityZone,
        capabilities: {
          cpuModel: caps.cpuModel, arch: caps.arch, vcpus: caps.vcpus, memoryMb: caps.memoryMiB, diskGb,
          accelerator: caps.accelerator, hypervisorType: caps.hypervisorType, hypervisorVersion: caps.hypervisorVersion, hostIp: this.config.myIp,
        },
      },
    }
    for (let delay = 100; ; delay = Math.min(delay * 2, 5_000)) {
      try {
        const reply = await this.request(req)
        if (!reply.announce) throw new Unavailable('the conductor did not answer the announce')
        return reply.announce
      } catch (err) {
        if (!(err instanceof Unavailable) || this.state === 'STOPPING') throw err
        this.log.warn({ err: err.message, retryInMs: delay }, 'controller not reachable; announcing again')
        await new Promise((r) => setTimeout(r, delay))
      }
    }
  }

  /** One request to the conductor; errors come back as Strato errors. */
  private async request(req: ConductorRequest): Promise<ConductorReply> {
    let msg
    try {
      msg = await this.nc!.request(CONDUCTOR_SUBJECT, ConductorRequest.encode(req).finish(), { timeout: this.config.requestTimeoutMs })
    } catch (err) {
      throw new Unavailable(`conductor request failed: ${(err as Error).message}`, { cause: err })
    }
    const error = errorFromHeaders(msg.headers)
    if (error) throw error
    return ConductorReply.decode(msg.data)
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
      if (req.consoleOutput) {
        const { instanceUuid = '', maxBytes = 0 } = req.consoleOutput
        reply = { consoleOutput: { output: await this.manager.consoleOutput(instanceUuid, maxBytes || 100 * 1024) } }
      } else {
        throw new NotFound('agent request with no known call')
      }
      msg.respond(AgentReply.encode(reply).finish())
    } catch (err) {
      msg.respond(new Uint8Array(), { headers: errorHeaders(err) })
    }
  }

  private scheduleHeartbeats(intervalMs: number): void {
    const beat = () => {
      this.manager.ownGuests().then(
        (guests) => {
          if (this.state !== 'RUNNING' || this.nc?.isClosed()) return
          this.nc!.publish(heartbeatSubject(this.config.host), Heartbeat.encode({ host: this.config.host, uuid: this.uuid, sentAt: new Date(), guests: guests.length }).finish())
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

  private async consumeCasts(): Promise<void> {
    const a = this.announced!
    const consumer = await this.js!.consumers.get(a.castStream!, a.castConsumer!)
    const casts = (this.casts = await consumer.consume({ max_messages: this.config.maxConcurrentCasts }))
    this.castLoop = (async () => {
      for await (const m of casts) {
        await this.slots.take()
        const id = `${m.info.streamSequence}`
        const p = this.handle(m).finally(() => {
          this.slots.give()
          this.inHand.delete(id)
        })
        this.inHand.set(id, p)
      }
    })()
  }

  private readonly running = new Set<string>()

  private async handle(m: JsMsg): Promise<void> {
    let cast: Cast
    try {
      cast = Cast.decode(m.data)
    } catch (err) {
      this.log.error({ err }, 'undecodable cast dropped')
      m.term()
      return
    }
    const working = setInterval(() => m.working(), 1_000)
    try {
      const outcome = await this.perform(cast)
      if (outcome === 'ack') m.ack()
      else if (outcome === 'retry') m.nak(1_000)
    } finally {
      clearInterval(working)
    }
  }

  /**
   * Runs a cast once and stores its result in the event stream. `ack`: done
   * (now or before); `retry`: not done, deliver again; `busy`: the same cast is
   * in hand already (a redelivery, or a resumed action) and will be acked there.
   */
  private async perform(cast: Cast): Promise<'ack' | 'retry' | 'busy'> {
    const id = cast.id ?? ''
    if (this.done.has(id)) return 'ack'
    if (this.running.has(id)) return 'busy'
    this.running.add(id)
    const log = this.log.child({ cast: id })
    const result: CastResult = { castId: id, host: this.config.host, ok: true }
    try {
      try {
        const [action, uuid, run] = this.actionOf(cast)
        result.action = action
        result.instanceUuid = uuid
        if (uuid) log.info({ instance: uuid, action }, `${action} started`)
        result.powerState = await run()
        if (uuid) log.info({ instance: uuid, action, powerState: result.powerState }, `${action} finished`)
        else result.message = `pong: ${cast.ping?.note ?? ''}`
      } catch (err) {
        const e = toStratoError(err)
        if (e instanceof Unavailable && this.state === 'RUNNING') {
          // The controller or NATS is away: try again later, the cast stays queued.
          log.warn({ err: e.message }, 'cast postponed')
          return 'retry'
        }
        log.warn({ err: e.message, code: e.code, instance: result.instanceUuid, action: result.action }, 'cast failed')
        Object.assign(result, { ok: false, errorCode: e.code, message: e.message })
      }
      try {
        // Stored before the ack: a crash in between means the cast comes again, never that the result is lost.
        await this.js!.publish(castResultSubject(this.config.host), CastResult.encode(result).finish(), { msgID: `result-${id}` })
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'cast result not stored; the cast will come again')
        return 'retry'
      }
      this.done.add(id)
      if (this.done.size > 10_000) this.done.delete(this.done.values().next().value!)
      return 'ack'
    } finally {
      this.running.delete(id)
    }
  }

  /** Resumes actions the controller says are in progress here (after a restart), under their own cast ids. */
  private resume(castIds: string[]): void {
    for (const id of castIds) {
      const p = parseCastId(id)
      if (!p) continue
      const instance = { instanceUuid: p.uuid }
      const cast: Cast = { id, ...(p.action === 'reboot' || p.action === 'reboot_hard' ? { reboot: { ...instance, hard: p.action === 'reboot_hard' } } : { [p.action]: instance }) }
      this.log.info({ cast: id, instance: p.uuid, action: p.action }, 'resuming an action in progress')
      const key = `resume-${id}`
      const run = this.slots.take().then(() => this.perform(cast)).finally(() => {
        this.slots.give()
        this.inHand.delete(key)
      })
      this.inHand.set(key, run.then(() => {}, () => {}))
    }
  }

  private actionOf(cast: Cast): [string, string, () => Promise<number>] {
    if (cast.ping) return ['ping', '', async () => 0]
    if (cast.build) return ['build', cast.build.instanceUuid ?? '', () => this.manager.build(cast.build!.instanceUuid ?? '')]
    if (cast.start) return ['start', cast.start.instanceUuid ?? '', () => this.manager.start(cast.start!.instanceUuid ?? '')]
    if (cast.stop) return ['stop', cast.stop.instanceUuid ?? '', () => this.manager.stop(cast.stop!.instanceUuid ?? '')]
    if (cast.reboot) {
      const hard = cast.reboot.hard ?? false
      return [hard ? 'reboot_hard' : 'reboot', cast.reboot.instanceUuid ?? '', () => this.manager.reboot(cast.reboot!.instanceUuid ?? '', hard)]
    }
    if (cast.delete) return ['delete', cast.delete.instanceUuid ?? '', () => this.manager.delete(cast.delete!.instanceUuid ?? '')]
    return ['unknown', '', async () => {
      throw new NotFound('cast with no known action')
    }]
  }
}

/**
 * QEMU runs as its own user (libvirt-qemu), so it must be able to walk down to
 * the guests' disks: the instances dir is made 0755, and every directory above
 * it must let others through. Checked at start, so the failure names the
 * directory instead of every build failing with "Permission denied".
 */
function guestReachable(instancesDir: string): void {
  chmodSync(instancesDir, 0o755)
  for (let dir = path.dirname(instancesDir); ; dir = path.dirname(dir)) {
    const mode = statSync(dir).mode
    if ((mode & 0o001) === 0) {
      throw new FailedPrecondition(`QEMU (user libvirt-qemu) cannot reach ${instancesDir}: ${dir} has mode ${(mode & 0o777).toString(8).padStart(4, '0')}; run chmod o+x ${dir}, or set STRATO_AGENT_INSTANCES_DIR (or STRATO_AGENT_STATE_DIR) to a path others can traverse`)
    }
    if (dir === path.dirname(dir)) return
  }
}
