/**
 * The controller's NATS edge: JetStream streams (casts as a work queue with a
 * durable consumer per host, events from agents), the conductor as a
 * queue-group service, and the consumer of agent events. Messages are
 * protobuf from proto/; errors in replies travel as NATS service-error
 * headers (proto/nats-errors.ts). Nothing else in the controller imports NATS.
 */
import { randomUUID } from 'node:crypto'
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node'
import {
  AckPolicy, DeliverPolicy, jetstream, jetstreamManager, JetStreamApiCodes, JetStreamApiError, RetentionPolicy, StorageType,
  type ConsumerMessages, type JetStreamClient, type JetStreamManager,
} from '@nats-io/jetstream'
import { nanos } from '@nats-io/transport-node'
import { InvalidArgument, PermissionDenied, Unavailable, toStratoError } from '../../proto/errors.js'
import { encodeBounded } from '../../proto/bus-payload.js'
import { errorFromHeaders, errorHeaders } from '../../proto/nats-errors.js'
import {
  CAST_STREAM, CAST_SUBJECTS, CONDUCTOR_QUEUE, CONDUCTOR_SUBJECTS, DHCP_CHANGED_SUBJECT, EVENT_CONSUMER, EVENT_STREAM, EVENT_SUBJECTS, FIREWALL_CHANGED_SUBJECT, IDENTITY_KEYS_SUBJECT, IDENTITY_REVOKED_SUBJECT, ROUTER_CHANGED_SUBJECT, agentRpcSubject, castConsumer, castSubject, hostToken, subjectHostToken,
} from '../../proto/subjects.js'
import { AgentReply, AgentRequest, Cast, CastResult, ConductorReply, ConductorRequest, Heartbeat, PowerStates, type RouterSpec as WireRouterSpec, type VolumeBackendStats } from '../../proto/gen/strato/agent/v1/agent.js'
import type { RouterSpec } from '../../proto/router.js'
import { volumeExportOf, volumeExportToWire } from '../../proto/volume-export.js'
import type { Conductor } from '../conductor/conductor.js'
import type { HostRegistry } from '../compute/hosts.js'
import type { AgentAnswer, AgentCall, AgentTransport, CastAction, CastResultEvent } from '../compute/transport.js'
import type { Logger } from '../log.js'
import type { IdentityChange } from '../identity/auth.js'

export type { CastAction, CastResultEvent }

/** What agents report besides heartbeats; listeners are awaited before the event is acked. */
export interface BusListeners {
  castResult?(r: CastResultEvent): Promise<void>
  powerStates?(host: string, sentAt: Date, guests: Map<string, number>): Promise<void>
  /** A host's volume backend capacity (announce and heartbeats); undefined: the host runs no volume role. */
  volumeStats?(host: string, stats: VolumeBackendReport | undefined): Promise<void>
  /** A controller (this one or another on the same database) revoked tokens or rotated the signing keys. */
  identityChanged?(what: IdentityChange): Promise<void>
}

/** What an agent's volume role reports of its backend. */
export interface VolumeBackendReport {
  backendName: string
  totalGb: number
  freeGb: number
}

function volumeReport(v: VolumeBackendStats | undefined): VolumeBackendReport | undefined {
  return v?.enabled ? { backendName: v.backendName ?? '', totalGb: v.totalGb ?? 0, freeGb: v.freeGb ?? 0 } : undefined
}

export class ControllerBus implements AgentTransport {
  private js!: JetStreamClient
  private jsm!: JetStreamManager
  private conductorSub: Subscription | undefined
  private identitySubs: Subscription[] = []
  private events: ConsumerMessages | undefined
  private eventsDone: Promise<void> | undefined
  private readonly castListeners = new Set<(r: CastResultEvent) => void>()

  constructor(
    private readonly nc: NatsConnection,
    private readonly conductor: Conductor,
    private readonly hosts: HostRegistry,
    private readonly log: Logger,
    /** The controller's gRPC address, told to agents for image downloads. */
    private readonly apiAddress: () => string = () => '',
    private readonly listeners: BusListeners = {},
    /** @default 30000 */
    private readonly castAckWaitMs = 30_000,
    /** Replicas of the streams (their consumers follow them): 3 on a 3-node NATS cluster. @default 1 */
    private readonly streamReplicas = 1,
  ) {}

  /** Durable cast consumers known to exist (made once per host, not per cast). */
  private readonly consumers = new Set<string>()

  async start(): Promise<void> {
    this.jsm = await jetstreamManager(this.nc)
    this.js = jetstream(this.nc)
    await this.untilJetStreamAnswers(async () => {
      const num_replicas = this.streamReplicas
      await this.ensureStream({ name: CAST_STREAM, subjects: [CAST_SUBJECTS], retention: RetentionPolicy.Workqueue, storage: StorageType.File, duplicate_window: nanos(120_000), num_replicas })
      await this.ensureStream({ name: EVENT_STREAM, subjects: [EVENT_SUBJECTS], retention: RetentionPolicy.Limits, storage: StorageType.File, max_age: nanos(3_600_000), num_replicas })
      await this.jsm.consumers.add(EVENT_STREAM, { durable_name: EVENT_CONSUMER, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, ack_wait: nanos(30_000) })
    })

    this.conductorSub = this.nc.subscribe(CONDUCTOR_SUBJECTS, { queue: CONDUCTOR_QUEUE, callback: (err, msg) => (err ? this.log.warn({ err }, 'conductor subscription failed') : void this.answer(msg)) })
    for (const [subject, what] of [[IDENTITY_REVOKED_SUBJECT, 'revocations'], [IDENTITY_KEYS_SUBJECT, 'keys']] as const) {
      this.identitySubs.push(this.nc.subscribe(subject, {
        callback: (err) => {
          if (err) return this.log.warn({ err, subject }, 'identity change subscription failed')
          this.listeners.identityChanged?.(what).catch((e) => this.log.warn({ err: e, what }, `reading ${what} after a notice failed (the next poll reads them)`))
        },
      }))
    }
    const consumer = await this.js.consumers.get(EVENT_STREAM, EVENT_CONSUMER)
    this.events = await consumer.consume({ max_messages: 256 })
    const events = this.events
    this.eventsDone = (async () => {
      for await (const m of events) {
        try {
          await this.onEvent(m.subject, m.data)
          m.ack()
        } catch (err) {
          // A passing failure (the database was busy) is retried; a message that keeps failing is dropped.
          if (m.info.deliveryCount < 5) {
            this.log.warn({ err, subject: m.subject, attempt: m.info.deliveryCount }, 'agent event failed; retrying')
            m.nak(500)
          } else {
            this.log.error({ err, subject: m.subject }, 'agent event dropped after 5 attempts')
            m.term()
          }
        }
      }
    })()
    this.log.info({ streams: [CAST_STREAM, EVENT_STREAM], replicas: this.streamReplicas }, 'NATS bus ready')
  }

  /**
   * Runs the stream setup until JetStream answers it. A NATS cluster that has
   * just started (or lost its meta leader) says "temporarily unavailable"
   * until its nodes have elected one; a refusal that names what is wrong with
   * the configuration (too many replicas for the cluster) stops the start.
   * @throws Unavailable when JetStream has not answered within `timeoutMs`.
   */
  private async untilJetStreamAnswers(setup: () => Promise<void>, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    for (let attempt = 1; ; attempt++) {
      try {
        return await setup()
      } catch (err) {
        const api = err instanceof JetStreamApiError ? err : undefined
        // 503 (no meta leader yet, or no quorum) and request time-outs are passing; other API errors are answers.
        if (api && api.status !== 503) throw new InvalidArgument(`JetStream refused the streams (${this.streamReplicas} replica(s)): ${api.message}`, { cause: err })
        if (Date.now() > deadline) throw new Unavailable(`JetStream did not answer within ${timeoutMs} ms: ${(err as Error).message}`, { cause: err })
        if (attempt === 1 || attempt % 10 === 0) this.log.warn({ err, attempt }, 'JetStream is not ready yet (a cluster still electing its leader?); trying again')
        await new Promise((r) => setTimeout(r, 500))
      }
    }
  }

  /** Pending change notices, by subject (one timer each). */
  private readonly notices = new Map<string, NodeJS.Timeout>()

  /**
   * Tells every agent, `delayMs` from now, that something under `subject`
   * changed; calls until then coalesce into that one message. Agents also
   * refresh on a timer, so a notice lost only delays.
   */
  private notice(subject: string, delayMs: number, what: string): void {
    if (this.notices.has(subject)) return
    this.notices.set(subject, setTimeout(() => {
      this.notices.delete(subject)
      try {
        this.nc.publish(subject)
      } catch (err) {
        this.log.warn({ err }, `could not tell agents that ${what} changed (they refresh on their timer)`)
      }
    }, delayMs))
  }

  /**
   * Security groups, rules or members changed: tells every agent to refresh
   * its filtering. Coalesced (one message per 200 ms at most), and sent after
   * the change's transaction has committed.
   */
  firewallChanged(): void {
    this.notice(FIREWALL_CHANGED_SUBJECT, 200, 'security groups')
  }

  /**
   * Ports, their addresses, or subnets changed: tells every agent to refresh
   * its DHCP service. Coalesced (one message per 100 ms at most), sent 100 ms
   * after the change, by when its transaction has committed (agents also
   * refresh before a guest first runs and on a timer, so a notice that came
   * too early only delays).
   */
  dhcpChanged(): void {
    this.notice(DHCP_CHANGED_SUBJECT, 100, 'DHCP')
  }

  /**
   * Routers, their ports, routes, placement or floating IPs changed: tells
   * every L3 agent to ask for its routers again. Coalesced as dhcpChanged
   * (one message per 100 ms at most, after the change committed).
   */
  routerChanged(): void {
    this.notice(ROUTER_CHANGED_SUBJECT, 100, 'routers')
  }

  /**
   * Tells every controller, now, that revocation events or signing keys
   * changed in the database (after the change committed). Not coalesced: a
   * revocation must reach the others within a second.
   */
  identityChanged(what: IdentityChange): void {
    try {
      this.nc.publish(what === 'revocations' ? IDENTITY_REVOKED_SUBJECT : IDENTITY_KEYS_SUBJECT)
    } catch (err) {
      this.log.warn({ err, what }, `could not tell the other controllers that ${what} changed (they poll the database)`)
    }
  }

  async stop(): Promise<void> {
    for (const timer of this.notices.values()) clearTimeout(timer)
    this.notices.clear()
    this.conductorSub?.unsubscribe()
    for (const s of this.identitySubs) s.unsubscribe()
    this.identitySubs = []
    await this.events?.close()
    await this.eventsDone?.catch(() => {})
  }

  private async ensureStream(cfg: { name: string; subjects: string[] } & Record<string, unknown>): Promise<void> {
    try {
      await this.jsm.streams.info(cfg.name)
    } catch (err) {
      if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound)) throw err
      await this.jsm.streams.add(cfg)
      return
    }
    // It exists: bring it to this configuration (a single node's R1 stream grows to R3 on a cluster).
    await this.jsm.streams.update(cfg.name, cfg)
  }

  /** Makes sure the durable consumer that feeds `host`'s agent its casts exists (idempotent). */
  async ensureCastConsumer(host: string): Promise<{ stream: string; consumer: string }> {
    const consumer = castConsumer(host)
    if (this.consumers.has(consumer)) return { stream: CAST_STREAM, consumer }
    const cfg = {
      durable_name: consumer,
      filter_subject: castSubject(host),
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      // How soon a cast an agent took but never acked (it died) is delivered again; agents in work report progress.
      ack_wait: nanos(this.castAckWaitMs),
      max_deliver: -1,
    }
    try {
      await this.jsm.consumers.add(CAST_STREAM, cfg)
    } catch {
      // It exists with other settings (an older configuration): bring it up to date.
      await this.jsm.consumers.update(CAST_STREAM, consumer, { ack_wait: cfg.ack_wait, max_deliver: cfg.max_deliver })
    }
    this.consumers.add(consumer)
    return { stream: CAST_STREAM, consumer }
  }

  /**
   * Queues work for a host's agent (JetStream: kept until the agent acks it,
   * across restarts of either side). The id deduplicates re-sends.
   */
  async cast(host: string, action: CastAction, id: string = randomUUID(), requestId = ''): Promise<string> {
    if (Object.values(action).filter(Boolean).length !== 1) throw new InvalidArgument('a cast needs exactly one action')
    await this.ensureCastConsumer(host)
    const msg = encodeBounded(`the ${Object.keys(action).find((k) => action[k as keyof CastAction])} cast ${id} for host '${host}'`, Cast.encode(Cast.fromPartial({ id, sentAt: new Date(), ...action, ...(requestId ? { requestId } : {}) })).finish(), this.nc.info?.max_payload, 256)
    try {
      await this.js.publish(castSubject(host), msg, { msgID: id })
    } catch (err) {
      throw new Unavailable(`cannot queue a cast for host '${host}': ${(err as Error).message}`, { cause: err })
    }
    return id
  }

  /**
   * A synchronous call to `host`'s agent, answered within `timeoutMs`.
   * @throws Unavailable when no agent answers (down, or too slow).
   */
  async call(host: string, req: AgentCall, timeoutMs: number): Promise<AgentAnswer> {
    const data = encodeBounded(`the call to the agent of host '${host}'`, AgentRequest.encode(AgentRequest.fromPartial(req)).finish(), this.nc.info?.max_payload)
    let msg
    try {
      msg = await this.nc.request(agentRpcSubject(host), data, { timeout: timeoutMs })
    } catch (err) {
      throw new Unavailable(`the agent of host '${host}' did not answer within ${timeoutMs} ms: ${(err as Error).message}`, { cause: err })
    }
    const error = errorFromHeaders(msg.headers)
    if (error) throw error
    const reply = AgentReply.decode(msg.data)
    if (reply.volumeExport) return { volumeExport: volumeExportOf(reply.volumeExport) }
    return reply.consoleOutput ? { consoleOutput: { output: reply.consoleOutput.output ?? '' } } : {}
  }

  /** Called with every cast result agents report. Returns an unsubscribe function. */
  onCastResult(listener: (r: CastResultEvent) => void): () => void {
    this.castListeners.add(listener)
    return () => this.castListeners.delete(listener)
  }

  private async answer(msg: Msg): Promise<void> {
    let what = 'a conductor reply'
    try {
      const req = ConductorRequest.decode(msg.data)
      what = `the conductor's ${Object.entries(req).find(([, v]) => v)?.[0] ?? 'empty'} reply`
      // Who asks is the subject (NATS permissions let an agent publish only on its own), never the payload.
      onlyFor(subjectHostToken(msg.subject), conductorHostOf(req))
      let reply: ConductorReply
      if (req.announce) {
        const a = req.announce
        const c = a.capabilities ?? {}
        const r = await this.conductor.announce({
          host: a.host ?? '',
          uuid: a.uuid ?? '',
          availabilityZone: a.availabilityZone ?? '',
          // Absent: an agent older than the flag, which has the role as every agent does by default.
          l3: a.l3 ?? true,
          capabilities: {
            cpuModel: c.cpuModel ?? '', arch: c.arch ?? '', vcpus: c.vcpus ?? 0, memoryMb: c.memoryMb ?? 0, diskGb: c.diskGb ?? 0,
            accelerator: c.accelerator ?? '', hypervisorType: c.hypervisorType ?? '', hypervisorVersion: c.hypervisorVersion ?? '', hostIp: c.hostIp ?? '',
          },
        })
        await this.listeners.volumeStats?.(a.host ?? '', volumeReport(a.volume))
        const where = await this.ensureCastConsumer(a.host ?? '')
        reply = { announce: { mapped: r.mapped, heartbeatIntervalMs: r.heartbeatIntervalMs, castStream: where.stream, castConsumer: where.consumer, apiAddress: this.apiAddress() } }
        this.log.info({ host: a.host, mapped: r.mapped }, 'host announced')
      } else if (req.buildSpec) {
        what = `the build spec of server ${req.buildSpec.instanceUuid ?? ''}`
        reply = { buildSpec: await this.conductor.buildSpec(req.buildSpec.instanceUuid ?? '', req.buildSpec.host ?? '') }
      } else if (req.volumeImage) {
        what = `the image of volume ${req.volumeImage.volumeId ?? ''}`
        reply = { volumeImage: await this.conductor.volumeImage(req.volumeImage.volumeId ?? '', req.volumeImage.host ?? '') }
      } else if (req.volumeUpload) {
        const q = req.volumeUpload
        what = `the upload of volume ${q.volumeId ?? ''}`
        reply = { volumeUpload: await this.conductor.volumeUpload(q.volumeId ?? '', q.host ?? '', q.castId ?? '') }
      } else if (req.snapshotStep) {
        const q = req.snapshotStep
        what = `the snapshot step ${q.taskState ?? ''} of server ${q.instanceUuid ?? ''}`
        reply = { snapshotStep: await this.conductor.snapshotStep(q.host ?? '', q.instanceUuid ?? '', q.castId ?? '', q.taskState ?? '') }
      } else if (req.firewall) {
        reply = { firewall: { ports: await this.conductor.firewall(req.firewall.host ?? '') } }
      } else if (req.dhcp) {
        reply = { dhcp: { networks: (await this.conductor.dhcp(req.dhcp.host ?? '')).map(({ port, ...n }) => ({ ...n, portId: port.id, macAddress: port.macAddress, fixedIps: port.fixedIps })) } }
      } else if (req.routers) {
        reply = { routers: { routers: (await this.conductor.routers(req.routers.host ?? '')).map(routerToWire) } }
      } else if (req.metadata) {
        reply = { metadata: await this.conductor.metadata(req.metadata.host ?? '', req.metadata.networkId ?? '', req.metadata.address ?? '') }
      } else if (req.hostInstances) {
        reply = { hostInstances: { instances: await this.conductor.hostInstances(req.hostInstances.host ?? '', req.hostInstances.also ?? []) } }
      } else if (req.hostVolumes) {
        const q = req.hostVolumes
        const disks = (q.disks ?? []).map((d) => ({ instanceUuid: d.instanceUuid ?? '', device: d.device ?? '', serial: d.serial ?? '', volumeId: d.volumeId ?? '' }))
        const exports = (q.exports ?? []).map((e) => ({ volumeId: e.volumeId ?? '', host: e.host ?? '' }))
        reply = { hostVolumes: await this.conductor.hostVolumes(q.host ?? '', q.instanceUuids ?? [], disks, exports) }
      } else if (req.volumeExport) {
        const q = req.volumeExport
        what = `the export of volume ${q.volumeId ?? ''}`
        const e = await this.conductor.volumeExport(q.host ?? '', q.volumeId ?? '', q.unexport ?? false)
        reply = e ? { volumeExport: volumeExportToWire(e) } : {}
      } else if (req.renewHostCertificate) {
        const q = req.renewHostCertificate
        what = `the NBD certificate of host '${q.host ?? ''}'`
        reply = { renewHostCertificate: await this.conductor.renewHostCertificate(q.host ?? '', q.csrPem ?? '', q.addresses ?? []) }
        this.log.info({ host: q.host, addresses: q.addresses }, 'renewed the NBD certificate of a host (CN=<host>)')
      } else if (req.volumeCast) {
        what = `the state of cast ${req.volumeCast.castId ?? ''}`
        reply = { volumeCast: await this.conductor.volumeCast(req.volumeCast.host ?? '', req.volumeCast.castId ?? '') }
      } else {
        throw new InvalidArgument('empty conductor request')
      }
      msg.respond(encodeBounded(what, ConductorReply.encode(reply).finish(), this.nc.info?.max_payload))
    } catch (err) {
      // The reply carries what went wrong; an internal error's cause (or an oversized reply) is for the log.
      const code = toStratoError(err).code
      if (code === 'INTERNAL' || code === 'RESOURCE_EXHAUSTED') this.log.error({ err, what }, 'conductor request failed')
      msg.respond(new Uint8Array(), { headers: errorHeaders(err) })
    }
  }

  /**
   * An event's payload names the host it speaks for; the subject (the only
   * events an agent may publish are its own host's) says who sent it. An
   * event where they differ is a forgery or a bug: dropped.
   */
  private fromItsHost(subject: string, host: string | undefined): boolean {
    if (hostToken(host ?? '') === subjectHostToken(subject)) return true
    this.log.warn({ subject, host }, `event dropped: it speaks for host '${host ?? ''}' but was published on ${subject}, another host's subject`)
    return false
  }

  private async onEvent(subject: string, data: Uint8Array): Promise<void> {
    const kind = subject.split('.')[2]
    if (kind === 'heartbeat') {
      const hb = Heartbeat.decode(data)
      if (!this.fromItsHost(subject, hb.host)) return
      // A replayed heartbeat (controller restart) must not make a dead host look alive.
      const sent = hb.sentAt && hb.sentAt.getTime() < Date.now() ? hb.sentAt : new Date()
      const known = await this.hosts.heartbeat(hb.host ?? '', sent)
      if (!known) this.log.debug({ host: hb.host }, 'heartbeat from an unknown host')
      // A heartbeat without volume stats changes nothing (the announce says whether the host runs the role).
      else if (hb.volume) await this.listeners.volumeStats?.(hb.host ?? '', volumeReport(hb.volume))
    } else if (kind === 'cast') {
      const r = CastResult.decode(data)
      if (!this.fromItsHost(subject, r.host)) return
      const event: CastResultEvent = {
        castId: r.castId ?? '', host: r.host ?? '', ok: r.ok ?? false, errorCode: r.errorCode ?? '', message: r.message ?? '', powerState: r.powerState ?? 0, instanceUuid: r.instanceUuid ?? '', action: r.action ?? '',
        volumeId: r.volumeId ?? '', snapshotId: r.snapshotId ?? '',
      }
      this.log.debug(event, 'cast done')
      await this.listeners.castResult?.(event)
      for (const l of this.castListeners) l(event)
    } else if (kind === 'power') {
      const p = PowerStates.decode(data)
      if (!this.fromItsHost(subject, p.host)) return
      const guests = new Map((p.guests ?? []).map((g) => [g.instanceUuid ?? '', g.powerState ?? 0]))
      await this.listeners.powerStates?.(p.host ?? '', p.sentAt ?? new Date(0), guests)
    }
  }
}

/** A router spec on the wire (agent.v1 RouterSpec: the gateway's port is nested). */
function routerToWire(r: RouterSpec): WireRouterSpec {
  const { gateway, ...rest } = r
  if (!gateway) return rest
  const { nexthop, enableSnat, ...port } = gateway
  return { ...rest, gateway: { port, nexthop, enableSnat } }
}

/** The host a conductor request speaks for (every request names one). */
function conductorHostOf(req: ConductorRequest): string {
  return req.announce?.host ?? req.buildSpec?.host ?? req.volumeImage?.host ?? req.volumeUpload?.host ?? req.snapshotStep?.host ?? req.firewall?.host ?? req.dhcp?.host ?? req.routers?.host ?? req.metadata?.host ?? req.hostInstances?.host ?? req.hostVolumes?.host ?? req.volumeCast?.host ?? req.volumeExport?.host ?? req.renewHostCertificate?.host ?? ''
}

/**
 * @throws PermissionDenied when an agent asks, on its own host's conductor
 * subject, for something of another host.
 */
function onlyFor(subjectToken: string, host: string): void {
  if (hostToken(host) !== subjectToken) {
    throw new PermissionDenied(`host '${subjectToken}' asked the conductor for host '${host}': an agent may only ask for its own host`)
  }
}
