/**
 * NATS subjects, streams and consumer names shared by the controller and the
 * agents (the one place they are spelled). A host name appears in subjects as
 * a single token: '.' becomes '_' (host names are DNS names, without '_').
 */
import { isServerAction, isSnapshot, type ServerAction } from './server-actions.js'

/**
 * Request/reply, queue group `strato-conductor`: agents ask the controller
 * (announce, build specs) on `strato.conductor.<host>`, their own subject —
 * the only one their NATS permissions let them publish to — so the
 * controller knows who asks from the subject, not from the payload.
 */
export const CONDUCTOR_SUBJECTS = 'strato.conductor.*'
export const CONDUCTOR_QUEUE = 'strato-conductor'

export function conductorSubject(host: string): string {
  return `strato.conductor.${hostToken(host)}`
}

/** The host token of a `strato.conductor.<host>` or `strato.events.<kind>.<host>` subject. */
export function subjectHostToken(subject: string): string {
  return subject.split('.').at(-1) ?? ''
}

/**
 * The inbox prefix of `host`'s agent (replies to its requests, JetStream
 * deliveries): its own, so it may subscribe to nothing else's inbox.
 */
export function agentInboxPrefix(host: string): string {
  return `_INBOX_${hostToken(host)}`
}

/** JetStream work queue of casts to agents, one durable consumer per host. */
export const CAST_STREAM = 'STRATO_CASTS'
export const CAST_SUBJECTS = 'strato.agent.*.cast'

/** JetStream stream of everything agents report. */
export const EVENT_STREAM = 'STRATO_EVENTS'
export const EVENT_SUBJECTS = 'strato.events.>'
/** The controller's durable consumer of the event stream. */
export const EVENT_CONSUMER = 'strato-controller'

/** A host name as one subject token (and a valid consumer name). */
export function hostToken(host: string): string {
  return host.replaceAll('.', '_')
}

export function castSubject(host: string): string {
  return `strato.agent.${hostToken(host)}.cast`
}

export function castConsumer(host: string): string {
  return `agent-${hostToken(host)}`
}

/** Request/reply calls to one agent (synchronous, with deadlines). */
export function agentRpcSubject(host: string): string {
  return `strato.agent.${hostToken(host)}.rpc`
}

export function heartbeatSubject(host: string): string {
  return `strato.events.heartbeat.${hostToken(host)}`
}

export function castResultSubject(host: string): string {
  return `strato.events.cast.${hostToken(host)}`
}

/** Power states of a host's guests (JetStream, for the controller's power-state sync). */
export function powerSubject(host: string): string {
  return `strato.events.power.${hostToken(host)}`
}

/**
 * Core NATS, no payload: security groups, their rules or their members, or
 * ports (made, deleted, bound to or released by a server) changed somewhere;
 * every agent refreshes its ports' filtering (agents also refresh on a
 * timer, so a missed message only delays) and forgets its cached metadata
 * answers (which expire anyway).
 */
export const FIREWALL_CHANGED_SUBJECT = 'strato.firewall.changed'

/**
 * Core NATS, no payload: ports, their addresses or subnets changed; every
 * agent that serves DHCP asks the conductor for its DHCP networks again
 * (agents also resync on a timer).
 */
export const DHCP_CHANGED_SUBJECT = 'strato.dhcp.changed'

/**
 * Core NATS, no payload: routers, their interfaces, gateways, routes,
 * placement or floating IPs changed; every agent with the L3 role asks the
 * conductor for its routers again (agents also resync on a timer).
 */
export const ROUTER_CHANGED_SUBJECT = 'strato.router.changed'

/**
 * Core NATS, no payload, between controllers on one database: a token was
 * revoked (REVOKED) or the signing keys were rotated (KEYS) through one of
 * them; every controller reads the revocation events or the keys again from
 * the database, at once (controllers also poll, so a missed message only
 * delays, by at most `token.revocationPollMs`). Agents may not publish here.
 */
export const IDENTITY_REVOKED_SUBJECT = 'strato.identity.revoked'
export const IDENTITY_KEYS_SUBJECT = 'strato.identity.keys'

/**
 * Cast ids say what they carry: `<action>.<uuid>.<nonce>`, and `build.<uuid>`
 * for builds (one per server). An agent that restarts can resume an action
 * from the id alone and report it under the same id.
 */
export function castIdFor(action: ServerAction, uuid: string, nonce: string): string {
  return action === 'build' ? `build.${uuid}` : `${action}.${uuid}.${nonce}`
}

export function parseCastId(id: string): { action: ServerAction; uuid: string } | undefined {
  const [action, uuid] = id.split('.')
  return action && uuid && isServerAction(action) ? { action, uuid } : undefined
}

/**
 * The image a snapshot's cast makes: snapshot casts use the new image's id
 * as their nonce (`snapshot.<uuid>.<image id>`), so the cast id alone names
 * the image, for a resumed snapshot and for the clean-up of a failed one.
 */
export function snapshotImageOf(castId: string): string | undefined {
  const [action, uuid, image] = castId.split('.')
  return action && uuid && image && isServerAction(action) && isSnapshot(action) ? image : undefined
}

/**
 * A backup's cast (Nova's createBackup) is a snapshot's whose id also
 * carries the rotation, `snapshot.<uuid>.<image id>.<rotation>`: once the
 * snapshot is made the backups beyond it are deleted, after a controller
 * restart too.
 */
export const backupNonce = (imageId: string, rotation: number): string => `${imageId}.${rotation}`

/** The rotation of a backup's cast id; undefined for any other cast. */
export function backupRotationOf(castId: string): number | undefined {
  const rotation = castId.split('.')[3]
  return snapshotImageOf(castId) && rotation !== undefined && /^\d+$/.test(rotation) ? Number(rotation) : undefined
}
