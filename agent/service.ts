/**
 * The agent daemon's core: connects to NATS, announces its host (capabilities
 * from the virt driver) to the conductor, sends heartbeats, and works through
 * its cast queue (a JetStream durable consumer: casts wait while the agent is
 * down). Casts are acked after they are done; a redelivered cast that was
 * already done is acked again without redoing it (by cast id, and for builds
 * by asking the hypervisor). Lifecycle INITIALIZED → RUNNING → STOPPING →
 * STOPPED; stop() stops taking casts, finishes the one in hand, drains NATS.
 */
import { statfsSync, mkdirSync } from 'node:fs'
import path from 'node:path'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { jetstream, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream'
import type { Logger } from 'pino'
import { NotFound, Unavailable, toStratoError } from '../proto/errors.js'
import { errorFromHeaders } from '../proto/nats-errors.js'
import { CONDUCTOR_SUBJECT, castResultSubject, heartbeatSubject } from '../proto/subjects.js'
import { Cast, CastResult, ConductorReply, ConductorRequest, Heartbeat, type AnnounceReply, type BuildSpec } from '../proto/gen/strato/agent/v1/agent.js'
import { computeId, type AgentConfig } from './config.js'
import type { VirtDriver } from './virt/driver.js'

export type AgentState = 'INITIALIZED' | 'RUNNING' | 'STOPPING' | 'STOPPED'

export class AgentService {
  state: AgentState = 'INITIALIZED'
  readonly uuid: string
  nc: NatsConnection | undefined
  /** What the controller said at the last announce. */
  announced: AnnounceReply | undefined
  private heartbeatTimer: NodeJS.Timeout | undefined
  private casts: ConsumerMessages | undefined
  private castLoop: Promise<void> | undefined
  private readonly done = new Set<string>()
  private readonly log: Logger

  constructor(readonly config: AgentConfig, readonly driver: VirtDriver, log: Logger) {
    this.uuid = computeId(config)
    this.log = log.child({ host: config.host })
  }

  async start(): Promise<void> {
    try {
      await this.run()
    } catch (err) {
      // Leave nothing running behind a failed start.
      if (this.heartbeatTimer) clearInterval(this.heartbeatTimer)
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
    this.nc = await connect({ servers: this.config.natsUrl, name: `strato-agent-${this.config.host}`, maxReconnectAttempts: -1, reconnectTimeWait: 250 })
    void this.watchStatus(this.nc)
    this.announced = await this.announce()
    this.state = 'RUNNING'
    this.scheduleHeartbeats(this.announced.heartbeatIntervalMs || this.config.heartbeatIntervalMs)
    await this.consumeCasts()
    this.log.info({ uuid: this.uuid, mapped: this.announced.mapped }, 'agent running')
  }

  async stop(): Promise<void> {
    if (this.state === 'STOPPING' || this.state === 'STOPPED') return
    this.state = 'STOPPING'
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer)
    await this.casts?.close().catch(() => {})
    await this.castLoop?.catch(() => {})
    await this.nc?.drain().catch((err) => this.log.warn({ err }, 'NATS drain failed'))
    await this.driver.close()
    this.state = 'STOPPED'
    this.log.info('agent stopped')
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
          accelerator: caps.accelerator, hypervisorType: caps.hypervisorType, hypervisorVersion: caps.hypervisorVersion,
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

  private scheduleHeartbeats(intervalMs: number): void {
    const beat = () => {
      this.driver.listGuests().then(
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

  private async consumeCasts(): Promise<void> {
    const a = this.announced!
    const consumer = await jetstream(this.nc!).consumers.get(a.castStream!, a.castConsumer!)
    const casts = (this.casts = await consumer.consume({ max_messages: 16 }))
    this.castLoop = (async () => {
      for await (const m of casts) await this.handle(m)
    })()
  }

  private async handle(m: JsMsg): Promise<void> {
    let cast: Cast
    try {
      cast = Cast.decode(m.data)
    } catch (err) {
      this.log.error({ err }, 'undecodable cast dropped')
      m.term()
      return
    }
    const id = cast.id ?? ''
    const log = this.log.child({ cast: id })
    if (this.done.has(id)) {
      m.ack()
      return
    }
    const result: CastResult = { castId: id, host: this.config.host, ok: true }
    try {
      if (cast.ping) {
        result.message = `pong: ${cast.ping.note ?? ''}`
      } else if (cast.build) {
        const uuid = cast.build.instanceUuid ?? ''
        result.instanceUuid = uuid
        log.info({ instance: uuid }, 'build started')
        result.powerState = await this.build(uuid)
        log.info({ instance: uuid }, 'build finished')
      } else {
        throw new NotFound('cast with no known action')
      }
    } catch (err) {
      const e = toStratoError(err)
      if (e instanceof Unavailable) {
        // The controller or NATS is away: try again later, the cast stays queued.
        log.warn({ err: e.message }, 'cast postponed')
        m.nak(1_000)
        return
      }
      log.warn({ err: e.message, code: e.code }, 'cast failed')
      Object.assign(result, { ok: false, errorCode: e.code, message: e.message })
    }
    this.nc!.publish(castResultSubject(this.config.host), CastResult.encode(result).finish())
    this.done.add(id)
    if (this.done.size > 10_000) this.done.delete(this.done.values().next().value!)
    m.ack()
  }

  /** Builds a server from the conductor's spec; a guest that already exists is not built twice. */
  private async build(instanceUuid: string): Promise<number> {
    try {
      return (await this.driver.getInfo(instanceUuid)).powerState
    } catch (err) {
      if (!(err instanceof NotFound)) throw err
    }
    const reply = await this.request({ buildSpec: { instanceUuid, host: this.config.host } })
    const spec = reply.buildSpec as Required<BuildSpec>
    const dir = path.join(this.config.instancesDir, instanceUuid)
    const info = await this.driver.spawn({
      uuid: instanceUuid,
      name: spec.name,
      vcpus: spec.vcpus,
      memoryMiB: spec.memoryMb,
      disks: [{ path: path.join(dir, 'disk'), format: 'qcow2', bus: 'virtio', device: 'vda' }],
      nics: [],
      consoleLogPath: path.join(dir, 'console.log'),
    })
    return info.powerState
  }
}
