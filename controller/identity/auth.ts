/**
 * Authentication: issues tokens by password or by re-scoping a token, validates
 * and revokes them, and keeps the revocation events (persisted, applied in
 * memory, announced to and read back by the other controllers on the same
 * database). Failures to authenticate say "authentication failed" without
 * telling which part was wrong, as Keystone does; the reason is logged.
 */
import { Unauthenticated, InvalidArgument, NotFound } from '../../proto/errors.js'
import type { Selectable } from 'kysely'
import type { Db } from '../store/db.js'
import type { RevocationEventTable } from '../store/schema.js'
import type { Logger } from '../log.js'
import { DEFAULT_DOMAIN_ID, type IdentityCatalog } from './catalog.js'
import type { KeyRepository } from './keys.js'
import { contextFromClaims, type AuthContext, type ImageReadClaims, type NamedRef, type TokenClaims } from './model.js'
import { verifyPassword } from './passwords.js'
import { RevocationList, type RevocationEvent } from './revocation.js'
import { TokenProvider, newAuditId } from './tokens.js'

export interface DomainRefIn { id?: string; name?: string }
export interface IssueRequest {
  methods: string[]
  password?: { user?: { id?: string; name?: string; domain?: DomainRefIn; password?: string } }
  token?: { id?: string }
  scope?: { project?: { id?: string; name?: string; domain?: DomainRefIn }; domain?: DomainRefIn }
  /** Keystone's `"scope": "unscoped"`: no scope, not even the user's default project. */
  unscoped?: boolean
}

/** What changed in the identity state every controller keeps in memory. */
export type IdentityChange = 'revocations' | 'keys'

/** How far back a re-read of revocation events reaches past the newest known one (a late commit is not skipped). */
const REREAD_WINDOW_MS = 60_000

const AUTH_FAILED = 'authentication failed: wrong user, domain or password, or the account or its domain is disabled'

export class Authenticator {
  readonly revocations = new RevocationList()
  readonly tokens: TokenProvider
  /** Called after revocation events or signing keys changed here (the bus tells the other controllers). */
  onChange: (what: IdentityChange) => void = () => {}
  /** issuedBefore of the newest revocation event read or made here. */
  private newestEvent = 0
  private reading: Promise<void> | undefined
  private readonly contexts = new WeakMap<TokenClaims, AuthContext>()
  private pollTimer: NodeJS.Timeout | undefined

  constructor(
    private readonly db: Db,
    private readonly catalog: IdentityCatalog,
    private readonly keys: KeyRepository,
    private readonly opts: { expirationSeconds: number; cacheSize: number; imageReadSeconds: number; anyProjectAdmin?: boolean },
    private readonly log: Logger,
  ) {
    this.tokens = new TokenProvider(keys, this.revocations, opts.cacheSize)
  }

  /** Loads unexpired revocation events from the database. */
  async load(): Promise<void> {
    const horizon = Date.now() - this.opts.expirationSeconds * 1000
    await this.db.deleteFrom('revocation_events').where('issued_before', '<', horizon).execute()
    this.addEvents(await this.db.selectFrom('revocation_events').selectAll().execute())
  }

  /**
   * Reads the revocation events other controllers recorded since the newest
   * one this controller knows (less REREAD_WINDOW_MS: an event whose insert
   * committed late is not skipped; adding a known event again changes
   * nothing). Calls while one runs share it.
   */
  refreshRevocations(): Promise<void> {
    this.reading ??= (async () => {
      const since = this.newestEvent - REREAD_WINDOW_MS
      this.addEvents(await this.db.selectFrom('revocation_events').selectAll().where('issued_before', '>', since).execute())
    })().finally(() => {
      this.reading = undefined
    })
    return this.reading
  }

  /**
   * Reads revocation events and signing keys every `pollMs` (0: never), so
   * that a change another controller announced on a bus message that was
   * lost still arrives.
   */
  startPolling(pollMs: number): void {
    if (pollMs <= 0 || this.pollTimer) return
    this.pollTimer = setInterval(() => {
      Promise.all([this.refreshRevocations(), this.keys.refresh(true)]).catch((err) => this.log.warn({ err }, 'reading revocation events and signing keys failed; trying again'))
    }, pollMs)
    this.pollTimer.unref()
  }

  stop(): void {
    if (this.pollTimer) clearInterval(this.pollTimer)
    this.pollTimer = undefined
  }

  /** Another controller says revocation events or signing keys changed: read them now. */
  async changedElsewhere(what: IdentityChange): Promise<void> {
    if (what === 'revocations') await this.refreshRevocations()
    else await this.keys.refresh(true)
  }

  private addEvents(rows: Array<Selectable<RevocationEventTable>>): void {
    for (const r of rows) {
      const e: RevocationEvent = { issuedBefore: Number(r.issued_before) }
      if (r.audit_id) e.auditId = r.audit_id
      if (r.audit_chain_id) e.auditChainId = r.audit_chain_id
      if (r.user_id) e.userId = r.user_id
      if (r.project_id) e.projectId = r.project_id
      if (r.domain_id) e.domainId = r.domain_id
      if (r.scope_domain_id) e.scopeDomainId = r.scope_domain_id
      if (r.role_id) e.roleId = r.role_id
      this.revocations.add(e)
      if (e.issuedBefore > this.newestEvent) this.newestEvent = e.issuedBefore
    }
  }

  /** Records a revocation event: effective immediately, persisted for restarts, and announced to the other controllers. */
  revoke = async (criteria: Omit<RevocationEvent, 'issuedBefore'>): Promise<void> => {
    const event: RevocationEvent = { ...criteria, issuedBefore: Date.now() }
    this.revocations.add(event)
    await this.db
      .insertInto('revocation_events')
      .values({
        audit_id: event.auditId ?? null,
        audit_chain_id: event.auditChainId ?? null,
        user_id: event.userId ?? null,
        project_id: event.projectId ?? null,
        domain_id: event.domainId ?? null,
        scope_domain_id: event.scopeDomainId ?? null,
        role_id: event.roleId ?? null,
        issued_before: event.issuedBefore,
        created_at: new Date().toISOString(),
      })
      .execute()
    this.onChange('revocations')
    this.revocations.prune(Date.now() - this.opts.expirationSeconds * 1000)
  }

  /**
   * Validates a token string into the caller's context: no database read,
   * unless the token names a signing key this controller has not read yet
   * (another controller rotated): then the keys are read once first.
   */
  authenticate(token: string): AuthContext | Promise<AuthContext> {
    if (!token) throw new Unauthenticated('no token: send one as metadata x-auth-token (get one from strato.identity.v1.Tokens/IssueToken)')
    if (this.tokens.namesUnknownKey(token)) return this.keys.refresh().then(() => this.contextOf(token, this.tokens.validate(token)))
    return this.contextOf(token, this.tokens.validate(token))
  }

  /**
   * The context of a validated token, made once per token: the provider keeps
   * each token's claims, so the context is kept with them. Revocation is
   * checked by `validate` on every call, before this.
   */
  private contextOf(token: string, claims: TokenClaims): AuthContext {
    let c = this.contexts.get(claims)
    if (!c) {
      c = Object.freeze(contextFromClaims(token, claims))
      this.contexts.set(claims, c)
    }
    return c
  }

  /** A token's claims (as `authenticate`, reading the keys again when the token names an unknown one). */
  async validate(token: string): Promise<TokenClaims> {
    if (this.tokens.namesUnknownKey(token)) await this.keys.refresh()
    return this.tokens.validate(token)
  }

  async issue(req: IssueRequest): Promise<{ token: string; claims: TokenClaims }> {
    const methods = req.methods.length > 0 ? req.methods : [req.password ? 'password' : req.token ? 'token' : '']
    let user: NamedRef & { domain: NamedRef }
    let chain: { auditChainId: string; expiresAt: number; methods: string[] } | undefined
    let defaultProjectId = ''
    if (methods.includes('password')) {
      const u = req.password?.user
      if (!u) throw new InvalidArgument('identity.password.user is required for the password method', { field: 'identity.password.user' })
      if (!u.id && !u.name) throw new InvalidArgument('identity.password.user needs an id or a name', { field: 'identity.password.user' })
      if (!u.id && !u.domain?.id && !u.domain?.name) throw new InvalidArgument('identity.password.user.domain (id or name) is required with a user name', { field: 'identity.password.user.domain' })
      const row = await this.findUserForAuth(u)
      if (!row.enabled || !(await verifyPassword(u.password ?? '', row.password_hash))) {
        this.log.info({ userId: row.id, reason: !row.enabled ? 'user disabled' : 'wrong password' }, 'authentication failed')
        throw new Unauthenticated(AUTH_FAILED)
      }
      const domain = await this.catalog.getDomain({ id: row.domain_id })
      if (!domain.enabled) {
        this.log.info({ userId: row.id, reason: 'domain disabled' }, 'authentication failed')
        throw new Unauthenticated(AUTH_FAILED)
      }
      user = { id: row.id, name: row.name, domain: { id: domain.id, name: domain.name } }
      defaultProjectId = row.default_project_id ?? ''
    } else if (methods.includes('token')) {
      const prior = await this.validate(req.token?.id ?? '')
      user = prior.user
      // As Keystone: the methods that proved the identity stay on the re-scoped token, with 'token' added.
      chain = { auditChainId: prior.auditChainId, expiresAt: prior.expiresAt, methods: ['token', ...prior.methods.filter((m) => m !== 'token')] }
      // The user may have been disabled since; tokens of disabled users are revoked, but check anyway.
      const row = await this.catalog.getUser({ id: user.id }).catch(() => undefined)
      if (!row?.enabled) throw new Unauthenticated(AUTH_FAILED)
    } else {
      throw new InvalidArgument(`identity.methods must contain 'password' or 'token' (got ${JSON.stringify(req.methods)})`, { field: 'identity.methods' })
    }

    const now = Date.now()
    const auditId = newAuditId()
    const claims: TokenClaims = {
      user,
      roles: [],
      methods: chain ? chain.methods : methods,
      issuedAt: now,
      expiresAt: chain?.expiresAt ?? now + this.opts.expirationSeconds * 1000,
      auditId,
      auditChainId: chain?.auditChainId ?? auditId,
      isAdminProject: false,
    }
    if (req.scope?.project && req.scope.domain) throw new InvalidArgument('scope: give a project or a domain, not both', { field: 'scope' })
    if (req.scope?.project) {
      await this.scopeToProject(claims, await this.findProject(req.scope.project))
    } else if (req.scope?.domain) {
      const d = req.scope.domain
      if (!d.id && !d.name) throw new InvalidArgument('scope.domain needs an id or a name', { field: 'scope.domain' })
      const domain = await this.catalog.getDomain(d.id ? { id: d.id } : { name: d.name! }).catch(rethrowAs(`domain ${d.id ?? d.name} not found`))
      if (!domain.enabled) throw new Unauthenticated(`domain '${domain.name}' is disabled`)
      const roleIds = await this.catalog.directRoleIds(user.id, { type: 'domain', id: domain.id })
      if (roleIds.length === 0) throw new Unauthenticated(`user '${user.name}' has no role on domain '${domain.name}'`)
      claims.domain = { id: domain.id, name: domain.name }
      claims.roles = await this.catalog.expandRoles(roleIds)
    } else if (defaultProjectId && !req.unscoped) {
      // Keystone scopes to the default project when no scope is asked for and the user has a role there.
      const project = await this.catalog.getProject({ id: defaultProjectId }).catch(() => undefined)
      if (project?.enabled && (await this.catalog.directRoleIds(user.id, { type: 'project', id: project.id })).length > 0) {
        await this.scopeToProject(claims, project).catch(() => undefined)
      }
    }
    return { token: this.tokens.issue(claims), claims }
  }

  /**
   * A user changes their own password, proving it with the current one (no
   * token needed, as in Keystone: an expired password can be replaced). The
   * user's tokens are revoked, as for any password change.
   * @throws Unauthenticated when the user is unknown or disabled, or the original password is wrong.
   */
  async changePassword(userId: string, original: string, password: string): Promise<void> {
    const row = await this.findUserForAuth({ id: userId })
    if (!row.enabled || !(await verifyPassword(original, row.password_hash))) {
      this.log.info({ userId: row.id, reason: !row.enabled ? 'user disabled' : 'wrong original password' }, 'password change refused')
      throw new Unauthenticated(AUTH_FAILED)
    }
    await this.catalog.updateUser(row.id, { password })
  }

  /**
   * A token that downloads `imageId` and nothing else, for the host building
   * `instanceUuid` (the conductor puts it in the build spec). It replaces the
   * owner's own token there: whoever sees a build spec (it crosses the bus)
   * can at most read that image for a few minutes. The owner could read the
   * image when the server was created, which is why any visibility is fine.
   */
  issueImageRead(imageId: string, host: string, instanceUuid: string): string {
    const now = Date.now()
    return this.tokens.issueImageRead({ imageId, host, instanceUuid, issuedAt: now, expiresAt: now + this.opts.imageReadSeconds * 1000, auditId: newAuditId() })
  }

  /**
   * The grant of an image-read token; undefined when `token` is not one (it is
   * then authenticated as a user's token, which refuses image-read tokens).
   * @throws Unauthenticated when it is one but forged, malformed or expired.
   */
  async authenticateImageRead(token: string): Promise<ImageReadClaims | undefined> {
    if (!this.tokens.isImageRead(token)) return undefined
    if (this.tokens.namesUnknownKey(token)) await this.keys.refresh()
    return this.tokens.validateImageRead(token)
  }

  /**
   * A token that uploads the data of `imageId` (a snapshot of server
   * `instanceUuid`, being made on `host`) and nothing else; the conductor
   * issues it when the host reaches the upload step. Same lifetime as
   * image-read tokens (token.imageReadSeconds): it is checked when the
   * upload starts, so only starting needs to happen within it.
   */
  issueImageUpload(imageId: string, host: string, instanceUuid: string): string {
    const now = Date.now()
    return this.tokens.issueImageUpload({ imageId, host, instanceUuid, issuedAt: now, expiresAt: now + this.opts.imageReadSeconds * 1000, auditId: newAuditId() })
  }

  /**
   * The grant of an image-upload token; undefined when `token` is not one.
   * @throws Unauthenticated when it is one but forged, malformed or expired.
   */
  async authenticateImageUpload(token: string): Promise<ImageReadClaims | undefined> {
    if (!this.tokens.isImageUpload(token)) return undefined
    if (this.tokens.namesUnknownKey(token)) await this.keys.refresh()
    return this.tokens.validateImageUpload(token)
  }

  /**
   * Rotates the signing keys (once, under the repository's lock) and tells
   * the other controllers to read them. With `ifPrimary`, only when the
   * primary is still that key (see KeyRepository.rotate).
   */
  async rotateKeys(ifPrimary?: string): Promise<{ primaryKeyId: string; activeKeyIds: string[]; rotated: boolean }> {
    const { primary, rotated } = await this.keys.rotate(ifPrimary)
    if (rotated) this.onChange('keys')
    return { primaryKeyId: primary.kid, activeKeyIds: this.keys.activeKids(), rotated }
  }

  private async scopeToProject(claims: TokenClaims, project: { id: string; name: string; domainId: string; enabled: boolean }): Promise<void> {
    const domain = await this.catalog.getDomain({ id: project.domainId })
    if (!project.enabled) throw new Unauthenticated(`project '${project.name}' is disabled`)
    if (!domain.enabled) throw new Unauthenticated(`the domain of project '${project.name}' is disabled`)
    const roleIds = await this.catalog.directRoleIds(claims.user.id, { type: 'project', id: project.id })
    if (roleIds.length === 0) throw new Unauthenticated(`user '${claims.user.name}' has no role on project '${project.name}'`)
    claims.project = { id: project.id, name: project.name, domain: { id: domain.id, name: domain.name } }
    claims.roles = await this.catalog.expandRoles(roleIds)
    // Keystone without admin_project_name: every project is an admin project (config.ts anyProjectAdmin).
    claims.isAdminProject = this.opts.anyProjectAdmin === true || (await this.catalog.isAdminProject(project))
  }

  private async findUserForAuth(u: { id?: string; name?: string; domain?: DomainRefIn }) {
    try {
      if (u.id) return await this.catalog.userRow({ id: u.id })
      const domainId = u.domain?.id || (await this.catalog.getDomain({ name: u.domain!.name! })).id
      return await this.catalog.userRow({ name: u.name!, domainId })
    } catch (err) {
      if (err instanceof NotFound) {
        this.log.info({ user: u.id ?? u.name, reason: err.message }, 'authentication failed')
        throw new Unauthenticated(AUTH_FAILED)
      }
      throw err
    }
  }

  private async findProject(p: { id?: string; name?: string; domain?: DomainRefIn }) {
    if (p.id) return this.catalog.getProject({ id: p.id }).catch(rethrowAs(`project ${p.id} not found`))
    if (!p.name) throw new InvalidArgument('scope.project needs an id, or a name and a domain', { field: 'scope.project' })
    if (!p.domain?.id && !p.domain?.name) throw new InvalidArgument('scope.project.domain (id or name) is required with a project name', { field: 'scope.project.domain' })
    const domainId = p.domain.id || (await this.catalog.getDomain({ name: p.domain.name! }).catch(rethrowAs(`domain '${p.domain.name}' not found`))).id
    return this.catalog.getProject({ name: p.name, domainId }).catch(rethrowAs(`project '${p.name}' not found in domain ${p.domain.name ?? p.domain.id}`))
  }
}

/** Scope lookups that fail are authentication failures (401), as in Keystone. */
function rethrowAs(message: string) {
  return (err: unknown): never => {
    if (err instanceof NotFound) throw new Unauthenticated(message, { cause: err })
    throw err
  }
}

export { DEFAULT_DOMAIN_ID }
