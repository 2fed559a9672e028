/** What a token asserts, and the caller context built from it. */

export interface NamedRef {
  id: string
  name: string
}

export interface DomainScopedRef extends NamedRef {
  domain: NamedRef
}

/** The claims a token carries: enough to validate and authorize with no database read. */
export interface TokenClaims {
  user: DomainScopedRef
  /** Set for project-scoped tokens. */
  project?: DomainScopedRef
  /** Set for domain-scoped tokens. */
  domain?: NamedRef
  /** Effective roles (implications expanded). */
  roles: NamedRef[]
  methods: string[]
  /** Epoch milliseconds. */
  issuedAt: number
  expiresAt: number
  auditId: string
  /** The audit id of the first token in a re-scope chain (own audit id if none). */
  auditChainId: string
  isAdminProject: boolean
}

/**
 * What an image-read token asserts: the bearer (the host building
 * `instanceUuid`) may download `imageId`, and nothing else. No user, project
 * or role: it is refused by every RPC but Images/DownloadImage of that image.
 */
export interface ImageReadClaims {
  imageId: string
  /** The host the server is placed on (for the logs: gRPC callers are not identified by host). */
  host: string
  instanceUuid: string
  /** Epoch milliseconds. */
  issuedAt: number
  expiresAt: number
  auditId: string
}

/** The authenticated caller, as handlers and policy see it. */
export interface AuthContext {
  token: string
  claims: TokenClaims
  userId: string
  /** Role names (effective). */
  roles: ReadonlySet<string>
  /** Project of a project-scoped token. */
  projectId: string | undefined
  /** Domain of a domain-scoped token. */
  domainId: string | undefined
  /** The domain the caller acts in: the scoped domain, the project's domain, else the user's. */
  actingDomainId: string
  isCloudAdmin: boolean
}

export function contextFromClaims(token: string, claims: TokenClaims): AuthContext {
  const roles = new Set(claims.roles.map((r) => r.name))
  return {
    token,
    claims,
    userId: claims.user.id,
    roles,
    projectId: claims.project?.id,
    domainId: claims.domain?.id,
    actingDomainId: claims.domain?.id ?? claims.project?.domain.id ?? claims.user.domain.id,
    isCloudAdmin: claims.isAdminProject && roles.has('admin'),
  }
}
