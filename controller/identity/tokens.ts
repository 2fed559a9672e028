/**
 * Token signing and validation: compact JWS (EdDSA / Ed25519), like Keystone's
 * JWS token provider. Validation needs no database read: the signature is
 * checked against the key repository, then expiry and the in-memory
 * revocation list. Verified tokens are cached (bounded), so repeated calls
 * skip the signature check but never the expiry and revocation checks.
 */
import { randomBytes, sign, verify } from 'node:crypto'
import { Unauthenticated } from '../../proto/errors.js'
import type { KeyRepository } from './keys.js'
import type { TokenClaims } from './model.js'
import type { RevocationList } from './revocation.js'

const HEADER_ALG = 'EdDSA'

/** Wire form of the claims: short names keep tokens small. */
interface Payload {
  sub: string
  un: string
  ud: [string, string]
  p?: [string, string, string, string]
  d?: [string, string]
  r: Array<[string, string]>
  m: string[]
  iat: number
  exp: number
  jti: string
  ach: string
  adm?: 1
}

function b64(obj: unknown): string {
  return Buffer.from(JSON.stringify(obj)).toString('base64url')
}

export function newAuditId(): string {
  return randomBytes(16).toString('base64url').slice(0, 22)
}

export class TokenProvider {
  private readonly cache = new Map<string, TokenClaims>()

  constructor(
    private readonly keys: KeyRepository,
    private readonly revocations: RevocationList,
    private readonly cacheSize: number,
    private readonly now: () => number = Date.now,
  ) {}

  issue(claims: TokenClaims): string {
    const key = this.keys.primary()
    const payload: Payload = {
      sub: claims.user.id,
      un: claims.user.name,
      ud: [claims.user.domain.id, claims.user.domain.name],
      r: claims.roles.map((r) => [r.id, r.name]),
      m: claims.methods,
      iat: claims.issuedAt,
      exp: claims.expiresAt,
      jti: claims.auditId,
      ach: claims.auditChainId,
    }
    if (claims.project) payload.p = [claims.project.id, claims.project.name, claims.project.domain.id, claims.project.domain.name]
    if (claims.domain) payload.d = [claims.domain.id, claims.domain.name]
    if (claims.isAdminProject) payload.adm = 1
    const signingInput = `${b64({ alg: HEADER_ALG, kid: key.kid, typ: 'JWT' })}.${b64(payload)}`
    const signature = sign(null, Buffer.from(signingInput), key.privateKey).toString('base64url')
    return `${signingInput}.${signature}`
  }

  /** Returns the token's claims, or throws Unauthenticated saying why it is not valid. */
  validate(token: string): TokenClaims {
    let claims = this.cache.get(token)
    if (claims === undefined) {
      claims = this.verifySignature(token)
      if (this.cache.size >= this.cacheSize) {
        const oldest = this.cache.keys().next().value
        if (oldest !== undefined) this.cache.delete(oldest)
      }
      this.cache.set(token, claims)
    }
    if (claims.expiresAt <= this.now()) throw new Unauthenticated('the token has expired; request a new one')
    if (this.revocations.isRevoked(claims)) throw new Unauthenticated('the token has been revoked; request a new one')
    return claims
  }

  private verifySignature(token: string): TokenClaims {
    const parts = token.split('.')
    if (parts.length !== 3 || token.length > 8192) throw new Unauthenticated('the token is malformed (not a compact JWS)')
    const [h, p, s] = parts as [string, string, string]
    let header: { alg?: string; kid?: string }
    let payload: Payload
    try {
      header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'))
      payload = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'))
    } catch {
      throw new Unauthenticated('the token is malformed (undecodable header or payload)')
    }
    if (header.alg !== HEADER_ALG) throw new Unauthenticated(`the token uses algorithm '${String(header.alg)}'; only ${HEADER_ALG} is accepted`)
    const key = typeof header.kid === 'string' ? this.keys.byKid(header.kid) : undefined
    if (!key) throw new Unauthenticated('the token was signed with an unknown or retired key')
    if (!verify(null, Buffer.from(`${h}.${p}`), key.publicKey, Buffer.from(s, 'base64url'))) {
      throw new Unauthenticated('the token signature is invalid')
    }
    if (typeof payload.sub !== 'string' || typeof payload.exp !== 'number' || typeof payload.iat !== 'number' || !Array.isArray(payload.r)) {
      throw new Unauthenticated('the token is malformed (missing claims)')
    }
    const claims: TokenClaims = {
      user: { id: payload.sub, name: payload.un, domain: { id: payload.ud[0], name: payload.ud[1] } },
      roles: payload.r.map(([id, name]) => ({ id, name })),
      methods: payload.m,
      issuedAt: payload.iat,
      expiresAt: payload.exp,
      auditId: payload.jti,
      auditChainId: payload.ach,
      isAdminProject: payload.adm === 1,
    }
    if (payload.p) claims.project = { id: payload.p[0], name: payload.p[1], domain: { id: payload.p[2], name: payload.p[3] } }
    if (payload.d) claims.domain = { id: payload.d[0], name: payload.d[1] }
    return claims
  }
}
