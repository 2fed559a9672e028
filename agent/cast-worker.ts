/**
 * The agent's cast queue: a JetStream durable consumer of
 * `strato.agent.<host>.cast`, so casts wait while the agent is down.
 *
 * Casts run concurrently across servers and in order for one server (the
 * compute manager's locks), at most `maxConcurrentCasts` at a time. A cast is
 * acked only after its result is stored in the event stream, so a crash at
 * any point means the cast comes again; redelivered casts are idempotent (by
 * cast id, and by asking the hypervisor), and volume-role casts run only while
 * the controller says their row still waits for them (a create redelivered
 * after its volume was deleted must not make it again).
 */
import type { ConsumerMessages, JetStreamClient, JsMsg } from '@nats-io/jetstream'
import type { Logger } from 'pino'
import { FailedPrecondition, NotFound, Unavailable, toStratoError } from '../proto/errors.js'
import { castAction, serverActionOf, type ServerAction } from '../proto/server-actions.js'
import { castResultSubject, parseCastId } from '../proto/subjects.js'
import { Cast, CastResult } from '../proto/gen/strato/agent/v1/agent.js'
import type { ComputeManager } from './compute-manager.js'
import type { VolumeManager } from './volume/manager.js'
import { GiB } from './volume/driver.js'
import { volumeAction, volumeWorkOf } from '../proto/volume-work.js'
import { volumeAttachOf } from '../proto/volume-attach.js'

export interface CastWorkerOptions {
  host: string
  /** Casts in hand at once. */
  maxConcurrentCasts: number
  /**
   * Whether the agent is running: then a cast that meets an unreachable
   * controller or NATS is tried again later; while it stops, it fails.
   */
  running: () => boolean
}

/** What each server action runs on the compute manager; every one returns the guest's power state. */
const RUN: Record<ServerAction, (manager: ComputeManager, uuid: string, castId: string) => Promise<number>> = {
  build: (m, uuid) => m.build(uuid),
  start: (m, uuid) => m.start(uuid),
  stop: (m, uuid) => m.stop(uuid),
  reboot: (m, uuid) => m.reboot(uuid, false),
  reboot_hard: (m, uuid) => m.reboot(uuid, true),
  delete: (m, uuid) => m.delete(uuid),
  // Snapshots are named by their cast id (it carries the image's id).
  snapshot: (m, uuid, castId) => m.snapshot(uuid, castId, false),
  snapshot_compressed: (m, uuid, castId) => m.snapshot(uuid, castId, true),
}

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

export class CastWorker {
  private casts: ConsumerMessages | undefined
  private loop: Promise<void> | undefined
  /** Cast ids done lately (their results stored): a redelivery is acked at once. */
  private readonly done = new Set<string>()
  /** Cast ids running now. */
  private readonly running = new Set<string>()
  /**
   * Casts done whose result could not be stored (NATS away): when the cast
   * comes again its result is stored, the work is not done a second time.
   */
  private readonly unreported = new Map<string, CastResult>()
  private readonly inHand = new Map<string, Promise<void>>()
  private readonly slots: Slots
  private readonly log: Logger

  constructor(
    private readonly js: JetStreamClient,
    private readonly manager: ComputeManager,
    /** The volume role; undefined: volume work is refused (the host runs none). */
    private readonly volumes: VolumeManager | undefined,
    private readonly o: CastWorkerOptions,
    log: Logger,
  ) {
    this.slots = new Slots(o.maxConcurrentCasts)
    this.log = log
  }

  /** Starts taking casts from the host's durable consumer. */
  async consume(stream: string, consumerName: string): Promise<void> {
    const consumer = await this.js.consumers.get(stream, consumerName)
    const casts = (this.casts = await consumer.consume({ max_messages: this.o.maxConcurrentCasts }))
    this.loop = (async () => {
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

  /**
   * Resumes actions the controller says are in progress here (after a
   * restart), under their own cast ids and with the request id of the API
   * call behind them.
   */
  resume(pending: Array<{ castId: string; requestId: string }>): void {
    const casts: Cast[] = []
    for (const { castId: id, requestId } of pending) {
      const p = parseCastId(id)
      if (!p) continue
      casts.push({ id, ...castAction(p.action, p.uuid), ...(requestId ? { requestId } : {}) })
      this.log.info({ cast: id, instance: p.uuid, action: p.action, ...(requestId ? { requestId } : {}) }, 'resuming an action in progress')
    }
    this.resumeCasts(casts)
  }

  /** Runs these casts now (work the controller says is pending here); each is done once, whether it also comes again or not. */
  resumeCasts(casts: Cast[]): void {
    for (const cast of casts) {
      const id = cast.id ?? ''
      const key = `resume-${id}`
      const run = this.slots.take().then(() => this.perform(cast)).finally(() => {
        this.slots.give()
        this.inHand.delete(key)
      })
      this.inHand.set(key, run.then(() => {}, () => {}))
    }
  }

  /** Stops taking casts and waits for the ones in hand. */
  async stop(): Promise<void> {
    await this.casts?.close().catch(() => {})
    await this.loop?.catch(() => {})
    await Promise.allSettled([...this.inHand.values()])
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
    const log = this.log.child({ cast: id, ...(cast.requestId ? { requestId: cast.requestId } : {}) })
    const stored = this.unreported.get(id)
    const result: CastResult = stored ?? { castId: id, host: this.o.host, ok: true }
    try {
      if (stored) log.info({ instance: result.instanceUuid, action: result.action }, `${result.action} done before; storing its result again`)
      else try {
        if (cast.volume) {
          // Volume work: reported under the volume (and snapshot) it was about.
          const w = volumeWorkOf(cast.volume)
          Object.assign(result, { action: volumeAction(w.op), volumeId: w.volumeId, snapshotId: w.snapshotId })
          const ctx = { volume: w.volumeId, ...(w.snapshotId ? { snapshot: w.snapshotId } : {}), action: result.action }
          if (!this.volumes) throw new FailedPrecondition(`host '${this.o.host}' runs no volume role (STRATO_AGENT_VOLUME=off)`)
          const ran = await this.volumes.run(w, id, async () => {
            if (!(await this.wanted(id, log, ctx, result.action ?? ''))) return false
            log.info(ctx, `${result.action} started`)
            return true
          })
          if (!ran) return 'ack'
          log.info(ctx, `${result.action} finished`)
        } else if (cast.volumeAttach) {
          // Attach, detach or extend_volume on a server of this host: reported under the server and the volume.
          const w = volumeAttachOf(cast.volumeAttach)
          Object.assign(result, { action: w.op, instanceUuid: w.instanceUuid, volumeId: w.volumeId })
          const ctx = { instance: w.instanceUuid, volume: w.volumeId, device: w.device, action: w.op }
          // A cast the controller gave up on (its host was down too long) must not change the guest now.
          if (!(await this.wanted(id, log, ctx, w.op))) return 'ack'
          log.info(ctx, `${w.op} started`)
          result.powerState = w.op === 'attach_volume'
            ? await this.manager.attachVolume(w.instanceUuid, w.volumeId, w.device, w.volumeHost, w.multiattach)
            : w.op === 'detach_volume'
              ? await this.manager.detachVolume(w.instanceUuid, w.volumeId, w.device, w.volumeHost)
              : await this.manager.extendVolume(w.instanceUuid, w.volumeId, w.device, w.sizeGb * GiB)
          log.info(ctx, `${w.op} finished`)
        } else {
          const [action, uuid, run] = this.actionOf(cast)
          result.action = action
          result.instanceUuid = uuid
          if (uuid) log.info({ instance: uuid, action }, `${action} started`)
          result.powerState = await run()
          if (uuid) log.info({ instance: uuid, action, powerState: result.powerState }, `${action} finished`)
          else result.message = `pong: ${cast.ping?.note ?? ''}`
        }
      } catch (err) {
        const e = toStratoError(err)
        if (e instanceof Unavailable && this.o.running()) {
          // The controller or NATS is away: try again later, the cast stays queued.
          log.warn({ err: e.message }, 'cast postponed')
          return 'retry'
        }
        log.warn({ err: e.message, code: e.code, instance: result.instanceUuid, action: result.action }, 'cast failed')
        // A fault is a sentence, not a payload: a runaway message must not make the result too big for the bus (stored forever, retried forever).
        Object.assign(result, { ok: false, errorCode: e.code, message: e.message.length > 8192 ? `${e.message.slice(0, 8192)}… (${e.message.length} characters)` : e.message })
      }
      try {
        // Stored before the ack: a crash in between means the cast comes again, never that the result is lost.
        await this.js.publish(castResultSubject(this.o.host), CastResult.encode(result).finish(), { msgID: `result-${id}` })
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'cast result not stored; the cast will come again (and its result be stored then)')
        this.unreported.set(id, result)
        return 'retry'
      }
      this.unreported.delete(id)
      this.remember(id)
      return 'ack'
    } finally {
      this.running.delete(id)
    }
  }

  /**
   * Whether the volume-role cast `id` (volume or snapshot work, an attach,
   * detach or extend_volume) is still the one its volume, snapshot or
   * attachment waits for, as the controller says. One that is not is not
   * run: it was done before (JetStream redelivers a cast whose ack was lost
   * when the agent stopped between storing its result and acking it), newer
   * work replaced it, or the controller gave up on it. It is remembered as
   * done and acked, with no result (nothing waits for one).
   * @throws Unavailable when the controller does not answer (the cast is tried again later).
   */
  private async wanted(id: string, log: Logger, ctx: object, action: string): Promise<boolean> {
    const state = await this.manager.volumeCastState(id)
    if (state.current) return true
    log.info({ ...ctx, reason: state.reason }, `${action} skipped: the controller no longer waits for this cast${state.reason ? ` (${state.reason})` : ''}`)
    this.remember(id)
    return false
  }

  /** A cast done (or skipped): its redeliveries are acked at once. */
  private remember(id: string): void {
    this.done.add(id)
    if (this.done.size > 10_000) this.done.delete(this.done.values().next().value!)
  }

  /** The cast's action name, server and work. */
  private actionOf(cast: Cast): [string, string, () => Promise<number>] {
    if (cast.ping) return ['ping', '', async () => 0]
    const carried = serverActionOf(cast)
    if (!carried) {
      return ['unknown', '', async () => {
        throw new NotFound('cast with no known action')
      }]
    }
    const { action, instanceUuid } = carried
    return [action, instanceUuid, () => RUN[action](this.manager, instanceUuid, cast.id ?? '')]
  }
}
