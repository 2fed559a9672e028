/**
 * Join tokens, as kubeadm's bootstrap tokens: an admin makes one
 * (`<id>.<secret>`, 6 + 16 characters of [a-z0-9], expiring, optionally bound
 * to a host name); a new host presents it once to get its bus credentials
 * (Hosts/JoinHost), then announces itself and waits to be mapped like any
 * other. Only a hash of the secret is stored. A token is consumed in the same
 * transaction that checks it, so two hosts racing with one token cannot both
 * join; a host name already known to the controller can never join again (a
 * token must not turn into credentials for an existing host).
 */
import { createHash, randomInt, timingSafeEqual } from 'node:crypto'
import { AlreadyExists, InvalidArgument, NotFound, Unauthenticated } from '../../proto/errors.js'
import type { Db } from '../store/db.js'
import type { HostJoinTokenTable } from '../store/schema.js'
import { checkText } from '../identity/validate.js'
import { checkHostName } from './hosts.js'

export interface JoinTokensConfig {
  /** Lifetime of a token made without one (kubeadm: 24 h; shorter here, it is made right before use). @default 3600000 */
  defaultTtlMs: number
  /** The longest lifetime an admin may ask for. @default 7 days */
  maxTtlMs: number
}

export interface JoinTokenView {
  id: string
  description: string
  host: string
  expiresAt: Date
  createdAt: Date
  createdBy: string
  usedAt: Date | undefined
  usedByHost: string
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789'
const TOKEN_RE = /^([a-z0-9]{6})\.([a-z0-9]{16})$/

function randomText(n: number): string {
  let s = ''
  for (let i = 0; i < n; i++) s += ALPHABET[randomInt(ALPHABET.length)]
  return s
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex')

export class JoinTokens {
  constructor(
    private readonly db: Db,
    private readonly config: JoinTokensConfig,
  ) {}

  /** Makes a token; the whole token (with its secret) is returned only here. */
  async create(r: { ttlMs?: number; description?: string; host?: string; createdBy: string }, now = new Date()): Promise<{ token: string; view: JoinTokenView }> {
    const ttl = r.ttlMs || this.config.defaultTtlMs
    if (!Number.isSafeInteger(ttl) || ttl < 1000 || ttl > this.config.maxTtlMs) {
      throw new InvalidArgument(`a join token's lifetime must be between 1 s and ${Math.round(this.config.maxTtlMs / 1000)} s, got ${Math.round(ttl / 1000)} s`, { field: 'ttl_seconds' })
    }
    const description = checkText('description', r.description, 255)
    const host = r.host ? checkHostName(r.host) : ''
    const id = randomText(6)
    const secret = randomText(16)
    const row: HostJoinTokenTable = {
      id, secret_sha256: sha256(secret), description, host,
      expires_at: new Date(now.getTime() + ttl).toISOString(), created_at: now.toISOString(), created_by: r.createdBy, used_at: null, used_by_host: '',
    }
    await this.db.insertInto('host_join_tokens').values(row).execute()
    return { token: `${id}.${secret}`, view: view(row) }
  }

  async list(): Promise<JoinTokenView[]> {
    return (await this.db.selectFrom('host_join_tokens').selectAll().orderBy('created_at').execute()).map(view)
  }

  async delete(id: string): Promise<void> {
    const r = await this.db.deleteFrom('host_join_tokens').where('id', '=', id).executeTakeFirst()
    if (Number(r.numDeletedRows) === 0) throw new NotFound(`no join token '${id}'`, { field: 'id' })
  }

  /**
   * Uses `token` for `host`: checks it (well formed, known, secret, not
   * expired, not used, bound to no other host), refuses a host name the
   * controller already knows, and marks it used — or changes nothing. Then
   * `grant` runs in the same transaction (it mints the host's credentials);
   * if it throws, the token stays unused.
   * @throws Unauthenticated for a token that is malformed, unknown, wrong, expired or used (not saying which of the last four to a caller we do not know, but logging it).
   * @throws AlreadyExists when `host` is already registered or joined.
   */
  async consume<T>(token: string, hostName: string, grant: () => Promise<T>, now = new Date()): Promise<{ result: T; view: JoinTokenView }> {
    const host = checkHostName(hostName)
    const m = TOKEN_RE.exec(token)
    if (!m) throw new Unauthenticated('the join token is not of the form <6 of [a-z0-9]>.<16 of [a-z0-9]> (strato host join-token create makes one)', { field: 'token' })
    const [, id, secret] = m as unknown as [string, string, string]
    return this.db.transaction().execute(async (trx) => {
      const row = await trx.selectFrom('host_join_tokens').selectAll().where('id', '=', id).executeTakeFirst()
      const refuse = (why: string) => new Unauthenticated(`join token ${id} is not valid: ${why}`, { field: 'token' })
      if (!row || !timingSafeEqual(Buffer.from(row.secret_sha256, 'hex'), Buffer.from(sha256(secret), 'hex'))) throw refuse('unknown token or wrong secret')
      if (row.used_at) throw refuse('it was already used')
      if (Date.parse(row.expires_at) <= now.getTime()) throw refuse(`it expired at ${row.expires_at}`)
      if (row.host && row.host !== host) throw refuse(`it is for host '${row.host}', not '${host}'`)
      const known = await trx.selectFrom('compute_hosts').select('host').where('host', '=', host).executeTakeFirst()
      const joined = await trx.selectFrom('host_join_tokens').select('id').where('used_by_host', '=', host).executeTakeFirst()
      if (known || joined) throw new AlreadyExists(`host '${host}' is already ${known ? 'registered' : 'joined'}; a joining host needs a name the cloud does not know`, { field: 'host' })
      const used = now.toISOString()
      const r = await trx.updateTable('host_join_tokens').set({ used_at: used, used_by_host: host }).where('id', '=', id).where('used_at', 'is', null).executeTakeFirst()
      if (Number(r.numUpdatedRows) !== 1) throw refuse('it was already used')
      const result = await grant()
      return { result, view: view({ ...row, used_at: used, used_by_host: host }) }
    })
  }
}

function view(r: HostJoinTokenTable): JoinTokenView {
  return {
    id: r.id, description: r.description, host: r.host, expiresAt: new Date(r.expires_at), createdAt: new Date(r.created_at), createdBy: r.created_by,
    usedAt: r.used_at ? new Date(r.used_at) : undefined, usedByHost: r.used_by_host,
  }
}

/** What a joining host is given besides its (token-checked) admission: made by the bus and TLS edges. */
export interface HostCredentialIssuer {
  /** A NATS user JWT for `publicKey` (the host's own nkey) with `host`'s permissions, and where NATS is. */
  busCredentials(host: string, publicKey: string): Promise<{ natsUrls: string[]; userJwt: string }>
  /**
   * The host's NBD certificate (PEM) for its CSR, signed by the cloud's CA;
   * '' when this controller holds no CA key (an operator's certificate).
   * @throws InvalidArgument when the CSR names anything but `CN=<host>`, or is no valid CSR.
   */
  hostCertificate(host: string, csrPem: string, addresses: string[]): Promise<string>
  /** The CA (PEM) that signs the controller's and NATS's certificates; '' when they have none. */
  caPem(): string
  /** The controller's gRPC address, as remote hosts reach it. */
  controllerAddress(): string
}
