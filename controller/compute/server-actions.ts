/**
 * Server actions (Nova's compute API start/stop/reboot/delete): checked
 * against the state table, recorded as the server's task with the id of the
 * cast that carries them, then cast. A server with no host, or whose host is
 * down, is deleted here (Nova's local delete). Also the console output, a
 * synchronous call to the server's agent.
 */
import { FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, Unavailable } from '../../proto/errors.js'
import type { Db } from '../store/db.js'
import { checkName, checkText } from '../identity/validate.js'
import type { Trx } from '../quota/quota.js'
import type { PortCatalog } from '../network/ports.js'
import type { Scheduler } from '../scheduler/scheduler.js'
import type { HostRegistry } from './hosts.js'
import { beginAction, inProgress, localDelete, resetTo, type ServerAction } from './server-states.js'
import { castIdFor, type CastOutbox } from './cast-outbox.js'
import { writeOutcome } from './cast-results.js'
import type { ServerVolumes } from '../volume/server-volumes.js'
import type { ServerViews } from './server-views.js'
import { checkHostname, json, now, type Log, type ServerCaller, type ServerView } from './server-model.js'
import { checkMetadata } from './server-create-plan.js'

const CONSOLE_MAX_BYTES = 100 * 1024

export class ServerActions {
  constructor(
    private readonly db: Db,
    private readonly deps: { views: ServerViews; outbox: CastOutbox; ports: PortCatalog; scheduler: Scheduler; hosts: HostRegistry; serverVolumes: ServerVolumes },
    private readonly config: { agentCallTimeoutMs: number },
    private readonly log: Log,
  ) {}

  /** Starts, stops, reboots or deletes a server; returns it with the action's task_state. */
  async act(ref: string | undefined, action: Exclude<ServerAction, 'build'>, caller: ServerCaller): Promise<ServerView> {
    const first = await this.deps.views.find(ref, caller)
    if (!caller.isAdmin && !(caller.canWrite && first.project_id === caller.projectId)) throw new PermissionDenied(`server ${first.uuid} can be changed only by members of its project or a cloud admin`)
    const castId = castIdFor(action, first.uuid)
    const requestId = caller.requestId ?? ''
    // The answer is the server as this action left it: with a fast host the result can land
    // before the cast's publish returns, and the caller should still see the task it started.
    const reread = (trx: Trx) => trx.selectFrom('servers').selectAll().where('uuid', '=', first.uuid).executeTakeFirstOrThrow()
    const plan = await this.db.transaction().execute(async (trx) => {
      const row = (await trx.selectFrom('servers').selectAll().where('uuid', '=', first.uuid).executeTakeFirst())!
      if (inProgress(action, row)) return { kind: 'none' as const, row }
      const task = beginAction(action, row)
      // Nothing on a host (it never got one), or its host is down: delete here, as Nova's local delete;
      // a cast still goes to a down host so its agent cleans up when it is back.
      if (action === 'delete' && (!row.host || !this.deps.hosts.isUp(row.host))) {
        const doomed = await writeOutcome(trx, this.deps.ports, row, localDelete(), undefined, this.log)
        return { kind: 'local' as const, host: row.host, row: await reread(trx), doomed }
      }
      if (!row.host) throw new FailedPrecondition(`server ${row.uuid} has no host: it never got one (${row.fault_message || 'no fault recorded'})`)
      await trx.updateTable('servers').set({ task_state: task, pending_cast_id: castId, pending_request_id: requestId, cast_sent_at: null, updated_at: now() }).where('uuid', '=', row.uuid).execute()
      return { kind: 'cast' as const, host: row.host, row: await reread(trx) }
    })
    if (plan.kind === 'local') {
      await this.deps.scheduler.release(first.uuid)
      await this.deps.serverVolumes.sendDeletes(plan.doomed)
      this.log.info({ instance: first.uuid, host: plan.host }, plan.host ? 'server deleted locally: its host is down' : 'server deleted: it had no host')
      if (plan.host) await this.deps.outbox.send({ uuid: first.uuid, host: plan.host, action: 'delete', castId, requestId }, false)
    } else if (plan.kind === 'cast') {
      await this.deps.outbox.send({ uuid: first.uuid, host: plan.host, action, castId, requestId })
    }
    return (await this.deps.views.views([plan.row], caller))[0]!
  }

  /**
   * Forces the server's vm_state (Nova's os-resetState): nothing is cast and
   * the hypervisor is not asked; a task in progress is dropped, so its result
   * is ignored as stale when it comes.
   */
  async resetState(ref: string | undefined, state: string, caller: ServerCaller): Promise<ServerView> {
    const row = await this.deps.views.find(ref, caller)
    if (!caller.isAdmin) throw new PermissionDenied(`only a cloud admin may reset the state of server ${row.uuid}`)
    const to = resetTo(state, row)
    await this.db.updateTable('servers').set({ vm_state: to.vm_state, task_state: to.task_state, pending_cast_id: '', pending_request_id: '', updated_at: now() }).where('uuid', '=', row.uuid).where('deleted', '=', 0).execute()
    this.log.info({ instance: row.uuid, from: `${row.vm_state}/${row.task_state}`, to: to.vm_state, requestId: caller.requestId }, 'server state reset by an admin')
    return this.deps.views.get(row.uuid, caller)
  }

  /**
   * Renames a server, changes its description or its metadata (Nova's PUT
   * /servers/{id} and the metadata calls); nothing is cast. Metadata is
   * merged with `metadata`, or replaced whole with `replaceMetadata`, or
   * loses the keys in `removeMetadata` (NotFound for a key it lacks).
   */
  async update(ref: string | undefined, patch: { name?: string; hostname?: string; description?: string; metadata?: Record<string, string>; replaceMetadata?: boolean; removeMetadata?: string[] }, caller: ServerCaller): Promise<ServerView> {
    const row = await this.deps.views.find(ref, caller)
    if (!caller.isAdmin && !(caller.canWrite && row.project_id === caller.projectId)) throw new PermissionDenied(`server ${row.uuid} can be changed only by members of its project or a cloud admin`)
    let metadata: Record<string, string> | undefined
    if (patch.metadata || patch.removeMetadata) {
      const cur = patch.replaceMetadata ? {} : json<Record<string, string>>(row.metadata, {})
      for (const k of patch.removeMetadata ?? []) {
        if (!(k in cur)) throw new NotFound(`server ${row.uuid} has no metadata item '${k}'`, { field: 'metadata' })
        delete cur[k]
      }
      metadata = checkMetadata({ ...cur, ...patch.metadata })
    }
    const set = {
      ...(patch.name !== undefined ? { name: checkName('name', patch.name, 255) } : {}),
      ...(patch.hostname !== undefined ? { hostname: checkHostname(patch.hostname, true) } : {}),
      ...(patch.description !== undefined ? { description: checkText('description', patch.description, 255) } : {}),
      ...(metadata ? { metadata: JSON.stringify(metadata) } : {}),
    }
    if (Object.keys(set).length) await this.db.updateTable('servers').set({ ...set, updated_at: now() }).where('uuid', '=', row.uuid).execute()
    return this.deps.views.get(row.uuid, caller)
  }

  async consoleOutput(ref: string | undefined, length: number | undefined, caller: ServerCaller): Promise<string> {
    const row = await this.deps.views.find(ref, caller)
    if (row.vm_state === 'deleted') throw new FailedPrecondition(`server ${row.uuid} is deleted`)
    if (!row.host) throw new FailedPrecondition(`server ${row.uuid} has no host, so no console`)
    if (length !== undefined && (!Number.isInteger(length) || length < 0)) throw new InvalidArgument(`length must be a non-negative number of lines, got ${length}`, { field: 'length' })
    const transport = this.deps.outbox.bus
    if (!transport) throw new Unavailable('the controller runs without its message bus; consoles cannot be read')
    if (!this.deps.hosts.isUp(row.host)) throw new Unavailable(`host '${row.host}' of server ${row.uuid} is down; its console cannot be read now`)
    const answer = await transport.call(row.host, { consoleOutput: { instanceUuid: row.uuid, maxBytes: CONSOLE_MAX_BYTES } }, this.config.agentCallTimeoutMs)
    const out = answer.consoleOutput?.output ?? ''
    if (!length) return out
    const lines = out.split('\n')
    const trailing = lines[lines.length - 1] === '' ? 1 : 0
    return lines.slice(Math.max(0, lines.length - trailing - length)).join('\n')
  }
}
