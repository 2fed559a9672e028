/**
 * What the compute service needs from the message bus, without knowing it is
 * NATS (`bus/bus.ts` implements it): casts to a host's durable work queue and
 * synchronous calls to a host's agent.
 */
import type { ServerCast } from '../../proto/server-actions.js'
import type { VolumeWork } from '../../proto/volume-work.js'
import type { VolumeAttachWork } from '../../proto/volume-attach.js'
import type { VolumeExport } from '../../proto/volume-export.js'

/** Work for a host's agent: a server action (the one action ↔ cast table's members), volume work, an attachment's or a ping; exactly one is set. */
export type CastAction = ServerCast & { ping?: { note: string }; volume?: VolumeWork; volumeAttach?: VolumeAttachWork }

/** A synchronous question to one agent. */
export interface AgentCall {
  consoleOutput?: { instanceUuid: string; maxBytes: number }
  /** The volume role of the host: export one of its volumes to `host` (or end that export). */
  volumeExport?: { volumeId: string; host: string; unexport: boolean }
}

export interface AgentAnswer {
  consoleOutput?: { output: string }
  volumeExport?: VolumeExport
}

export interface AgentTransport {
  /**
   * Queues `action` for `host`'s agent (kept until the agent acks it, across
   * restarts of either side); `id` deduplicates re-sends; `requestId` (the
   * API call's) goes with it to the agent's logs.
   * @throws Unavailable when the bus cannot take it now.
   */
  cast(host: string, action: CastAction, id: string, requestId?: string): Promise<string>
  /**
   * Asks `host`'s agent and waits for its answer.
   * @throws Unavailable when no agent answers within `timeoutMs`.
   */
  call(host: string, req: AgentCall, timeoutMs: number): Promise<AgentAnswer>
}

/** What became of a cast, as an agent reports it. */
export interface CastResultEvent {
  castId: string
  host: string
  ok: boolean
  errorCode: string
  message: string
  powerState: number
  instanceUuid: string
  action: string
  /** Volume work: the volume (and snapshot) it was about; empty otherwise. */
  volumeId: string
  snapshotId: string
}
