/**
 * Credentials, read exactly as openstackclient reads them (OS_* variables,
 * overridden by --os-* options), and the token they buy.
 *
 * Tokens are cached per credentials under ~/.cache/strato (directory 0700,
 * files 0600), named by a hash of auth URL + user + user domain + scope. The
 * password never appears in the cache: each entry keeps a salted scrypt hash of
 * it, so a wrong password never rides on a cached token. An entry is used until
 * 30 s before the token expires; a cached token the server refuses is dropped
 * and a new one issued, once (see Context.call).
 */
import { createHash, randomBytes, scryptSync, timingSafeEqual } from 'node:crypto'
import { mkdirSync, readFileSync, rmSync } from 'node:fs'
import { homedir } from 'node:os'
import path from 'node:path'
import { writePrivateFile } from '../../proto/private-file.js'
import { TokensClient, type IssueTokenRequest, type TokenBody } from '../../proto/gen/strato/identity/v1/identity.js'
import { CliError } from './errors.js'
import type { Args } from './registry.js'
import type { Transport } from './transport.js'

/** The default domain's id, used when a user or project domain is not given (openstackclient's --os-default-domain). */
export const DEFAULT_DOMAIN_ID = 'default'
/** A token this close to expiry is not used (keystoneauth's STALE_TOKEN_DURATION). */
const STALE_MS = 30_000

export interface Credentials {
  authUrl?: string | undefined
  /** The CA file the API's certificate must chain to (OS_CACERT, --os-cacert). */
  cacert?: string | undefined
  token?: string | undefined
  username?: string | undefined
  userId?: string | undefined
  password?: string | undefined
  userDomainName?: string | undefined
  userDomainId?: string | undefined
  projectName?: string | undefined
  projectId?: string | undefined
  projectDomainName?: string | undefined
  projectDomainId?: string | undefined
  domainName?: string | undefined
  domainId?: string | undefined
}

/** Which variable feeds which field, and the option that overrides it. */
const SOURCES: Array<[keyof Credentials, string, string]> = [
  ['authUrl', 'OS_AUTH_URL', 'os_auth_url'],
  ['cacert', 'OS_CACERT', 'os_cacert'],
  ['token', 'OS_TOKEN', 'os_token'],
  ['username', 'OS_USERNAME', 'os_username'],
  ['userId', 'OS_USER_ID', 'os_user_id'],
  ['password', 'OS_PASSWORD', 'os_password'],
  ['userDomainName', 'OS_USER_DOMAIN_NAME', 'os_user_domain_name'],
  ['userDomainId', 'OS_USER_DOMAIN_ID', 'os_user_domain_id'],
  ['projectName', 'OS_PROJECT_NAME', 'os_project_name'],
  ['projectId', 'OS_PROJECT_ID', 'os_project_id'],
  ['projectDomainName', 'OS_PROJECT_DOMAIN_NAME', 'os_project_domain_name'],
  ['projectDomainId', 'OS_PROJECT_DOMAIN_ID', 'os_project_domain_id'],
  ['domainName', 'OS_DOMAIN_NAME', 'os_domain_name'],
  ['domainId', 'OS_DOMAIN_ID', 'os_domain_id'],
]

export function credentialsFrom(env: Record<string, string | undefined>, global: Args): Credentials {
  const c: Credentials = {}
  for (const [field, variable, option] of SOURCES) {
    const v = global.str(option) ?? env[variable]
    if (v !== undefined && v !== '') c[field] = v
  }
  // OS_TENANT_NAME / OS_TENANT_ID: the v2 spellings openrc files still carry.
  if (!c.projectName && env.OS_TENANT_NAME) c.projectName = env.OS_TENANT_NAME
  if (!c.projectId && env.OS_TENANT_ID) c.projectId = env.OS_TENANT_ID
  return c
}

/** Throws a CliError naming every missing variable. */
export function checkCredentials(c: Credentials): void {
  const missing: string[] = []
  if (!c.authUrl) missing.push('OS_AUTH_URL')
  if (!c.token) {
    if (!c.username && !c.userId) missing.push('OS_USERNAME')
    if (!c.password) missing.push('OS_PASSWORD')
  }
  if (missing.length) {
    throw new CliError(
      `missing credentials: set ${missing.join(', ')} (or the matching --os-* options); on a Strato host, run '. admin-openrc' (written by 'npm start') first`,
    )
  }
}

/** What the CLI knows about its token (from the issue response or the cache). */
export interface TokenInfo {
  token: string
  /** ISO 8601. */
  expiresAt: string
  userId: string
  userName: string
  userDomainId: string
  projectId?: string | undefined
  projectName?: string | undefined
  domainId?: string | undefined
  domainName?: string | undefined
}

interface CacheEntry extends TokenInfo {
  version: 1
  /** scrypt(password, salt), hex. */
  passwordHash: string
  salt: string
}

const SCRYPT = { N: 4096, r: 8, p: 1 }
const hashPassword = (password: string, salt: string) => scryptSync(password, salt, 32, SCRYPT).toString('hex')

export function cacheDir(env: Record<string, string | undefined>): string {
  const base = env.XDG_CACHE_HOME || path.join(env.HOME || homedir(), '.cache')
  return path.join(base, 'strato')
}

export function issueRequest(c: Credentials): IssueTokenRequest {
  const userDomain = c.userDomainId ? { id: c.userDomainId } : c.userDomainName ? { name: c.userDomainName } : { id: DEFAULT_DOMAIN_ID }
  const user = c.userId ? { id: c.userId, password: c.password ?? '' } : { name: c.username ?? '', domain: userDomain, password: c.password ?? '' }
  const projectDomain = c.projectDomainId ? { id: c.projectDomainId } : c.projectDomainName ? { name: c.projectDomainName } : { id: DEFAULT_DOMAIN_ID }
  const scope = c.projectId
    ? { project: { id: c.projectId } }
    : c.projectName
      ? { project: { name: c.projectName, domain: projectDomain } }
      : c.domainId
        ? { domain: { id: c.domainId } }
        : c.domainName
          ? { domain: { name: c.domainName } }
          : undefined
  return { identity: { methods: ['password'], password: { user } }, ...(scope ? { scope } : {}) }
}

function infoFromBody(token: string, body: TokenBody | undefined): TokenInfo {
  return {
    token,
    expiresAt: (body?.expiresAt ?? new Date(0)).toISOString(),
    userId: body?.user?.id ?? '',
    userName: body?.user?.name ?? '',
    userDomainId: body?.user?.domain?.id ?? '',
    ...(body?.project?.id ? { projectId: body.project.id, projectName: body.project.name ?? '' } : {}),
    ...(body?.domain?.id ? { domainId: body.domain.id, domainName: body.domain.name ?? '' } : {}),
  }
}

/** One invocation's authentication: a token from OS_TOKEN, the cache, or IssueToken. */
export class Session {
  private current: TokenInfo | undefined
  /** True when the token in use came from the cache (and may be refused: then retry once). */
  fromCache = false

  constructor(
    readonly creds: Credentials,
    private readonly transport: Transport,
    private readonly dir: string,
    private readonly now: () => number = Date.now,
  ) {}

  get cacheFile(): string {
    const c = this.creds
    const key = JSON.stringify({
      url: c.authUrl,
      user: c.userId ? { id: c.userId } : { name: c.username, domainId: c.userDomainId, domainName: c.userDomainName },
      scope: issueRequest(c).scope ?? null,
    })
    return path.join(this.dir, `token-${createHash('sha256').update(key).digest('hex').slice(0, 40)}.json`)
  }

  async token(): Promise<string> {
    return (await this.info()).token
  }

  async info(): Promise<TokenInfo> {
    if (this.current) return this.current
    if (this.creds.token) {
      const body = await this.transport.unary(this.transport.client(TokensClient), 'validateToken', {}, this.creds.token)
      this.current = infoFromBody(this.creds.token, body)
      return this.current
    }
    const cached = this.readCache()
    if (cached) {
      this.fromCache = true
      this.current = cached
      return cached
    }
    const res = await this.transport.unary(this.transport.client(TokensClient), 'issueToken', issueRequest(this.creds))
    this.fromCache = false
    this.current = infoFromBody(res.token ?? '', res.body)
    this.writeCache(this.current)
    return this.current
  }

  /** Forgets the token (memory and cache): after the server refused it, or after `token revoke` of it. */
  invalidate(): void {
    this.current = undefined
    this.fromCache = false
    if (!this.creds.token) rmSync(this.cacheFile, { force: true })
  }

  private readCache(): TokenInfo | undefined {
    let entry: CacheEntry
    try {
      entry = JSON.parse(readFileSync(this.cacheFile, 'utf8')) as CacheEntry
    } catch {
      return undefined
    }
    if (entry.version !== 1 || typeof entry.token !== 'string' || typeof entry.salt !== 'string') return undefined
    if (Date.parse(entry.expiresAt) - STALE_MS <= this.now()) return undefined
    const a = Buffer.from(hashPassword(this.creds.password ?? '', entry.salt), 'hex')
    const b = Buffer.from(entry.passwordHash, 'hex')
    if (a.length !== b.length || !timingSafeEqual(a, b)) return undefined
    const { version: _v, passwordHash: _h, salt: _s, ...info } = entry
    return info
  }

  private writeCache(info: TokenInfo): void {
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 })
      const salt = randomBytes(16).toString('hex')
      const entry: CacheEntry = { version: 1, ...info, salt, passwordHash: hashPassword(this.creds.password ?? '', salt) }
      writePrivateFile(this.cacheFile, JSON.stringify(entry) + '\n')
    } catch {
      // A cache that cannot be written only costs a token per command.
    }
  }
}
