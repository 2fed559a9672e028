/**
 * Token signing and validation: compact JWS (EdDSA / Ed25519), like Keystone's
 * JWS token provider. Validation needs no database read: the signature is
 * checked against the key repository, then expiry and the in-memory
 * revocation list. Verified tokens are cached (bounded), so repeated calls
 * skip the signature check but never the expiry and revocation checks.
 *
 * Two kinds of token share the signing keys and are told apart by the JWS
 * header's `typ` (RFC 8725 §3.11: distinct types so one kind is never taken
 * for another): user tokens (`JWT`) and image-read tokens
 * (`strato-image-read+jwt`), which name one image and one host and carry no
 * user, project or role. `validate` refuses an image-read token and
 * `validateImageRead` a user token, whatever their signatures. A third kind,
 * image-upload tokens (`strato-image-upload+jwt`), lets the host making a
 * server snapshot upload the data of that one new image and nothing else.
 */
import { randomBytes, sign, verify } from 'node:crypto'
import { Unauthenticated } from '../../proto/errors.js'
import type { KeyRepository } from './keys.js'
import type { ImageReadClaims, TokenClaims } from './model.js'
import type { RevocationList } from './revocation.js'

const HEADER_ALG = 'EdDSA'
const USER_TYP = 'JWT'
/** The `typ` of image-read tokens (and the `aud` they are for). */
export const IMAGE_READ_TYP = 'strato-image-read+jwt'
export const IMAGE_READ_AUDIENCE = 'strato.image.v1.Images/DownloadImage'
/** The `typ` of image-upload tokens (and the `aud` they are for). */
export const IMAGE_UPLOAD_TYP = 'strato-image-upload+jwt'
export const IMAGE_UPLOAD_AUDIENCE = 'strato.image.v1.Images/UploadImage'

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

type ImageTokenKind = 'image-read' | 'image-upload'

/** What tells each kind of image token apart, and what its holder does when one expires. */
const IMAGE_TOKEN_KINDS: Record<ImageTokenKind, { typ: string; aud: string; onExpiry: string }> = {
  'image-read': { typ: IMAGE_READ_TYP, aud: IMAGE_READ_AUDIENCE, onExpiry: 'the host asks the conductor for a new build spec' },
  'image-upload': { typ: IMAGE_UPLOAD_TYP, aud: IMAGE_UPLOAD_AUDIENCE, onExpiry: 'the snapshot fails and may be asked again' },
}

/** Wire form of an image token's claims (image-read and image-upload). */
interface ImageReadPayload {
  knd: ImageTokenKind
  aud: string
  img: string
  hst: string
  srv: string
  iat: number
  exp: number
  jti: string
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
    return this.sign(USER_TYP, payload)
  }

  /** A token that downloads one image and does nothing else (see the module comment). */
  issueImageRead(claims: ImageReadClaims): string {
    return this.issueImageToken('image-read', claims)
  }

  /** A token that uploads the data of one image (a server snapshot's) and does nothing else. */
  issueImageUpload(claims: ImageReadClaims): string {
    return this.issueImageToken('image-upload', claims)
  }

  private issueImageToken(kind: ImageTokenKind, claims: ImageReadClaims): string {
    const payload: ImageReadPayload = {
      knd: kind,
      aud: IMAGE_TOKEN_KINDS[kind].aud,
      img: claims.imageId,
      hst: claims.host,
      srv: claims.instanceUuid,
      iat: claims.issuedAt,
      exp: claims.expiresAt,
      jti: claims.auditId,
    }
    return this.sign(IMAGE_TOKEN_KINDS[kind].typ, payload)
  }

  /**
   * Whether the token says it is an image-read token (its header, unverified:
   * this only picks which validation to run, and each refuses the other kind).
   */
  isImageRead(token: string): boolean {
    return this.typOf(token) === IMAGE_READ_TYP
  }

  /** Whether the token says it is an image-upload token (unverified, as isImageRead). */
  isImageUpload(token: string): boolean {
    return this.typOf(token) === IMAGE_UPLOAD_TYP
  }

  private typOf(token: string): unknown {
    return this.headerOf(token)?.typ
  }

  /** The token's JWS header, unverified; undefined when it has none that decodes. */
  private headerOf(token: string): { typ?: unknown; kid?: unknown } | undefined {
    const h = token.length <= 8192 ? token.split('.')[0] : undefined
    if (!h) return undefined
    try {
      const header: unknown = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'))
      return header && typeof header === 'object' ? header : undefined
    } catch {
      return undefined
    }
  }

  /**
   * Whether the token names a signing key this controller does not hold (one
   * another controller made since the keys were read): the caller reads the
   * keys again before validating. False for tokens already validated here.
   */
  namesUnknownKey(token: string): boolean {
    if (this.cache.has(token)) return false
    const kid = this.headerOf(token)?.kid
    return typeof kid === 'string' && this.keys.byKid(kid) === undefined
  }

  /** Returns an image-upload token's claims, or throws Unauthenticated saying why it is not a valid one. */
  validateImageUpload(token: string): ImageReadClaims {
    return this.validateImageToken('image-upload', token)
  }

  /** Returns an image-read token's claims, or throws Unauthenticated saying why it is not a valid one. */
  validateImageRead(token: string): ImageReadClaims {
    return this.validateImageToken('image-read', token)
  }

  private validateImageToken(kind: ImageTokenKind, token: string): ImageReadClaims {
    const { typ, aud, onExpiry } = IMAGE_TOKEN_KINDS[kind]
    const { header, payload } = this.verifyJws(token)
    const p = payload as Partial<ImageReadPayload>
    if (header.typ !== typ || p.knd !== kind) throw new Unauthenticated(`the token is not an ${kind} token`)
    if (p.aud !== aud || typeof p.img !== 'string' || typeof p.hst !== 'string' || typeof p.exp !== 'number' || typeof p.iat !== 'number') {
      throw new Unauthenticated(`the ${kind} token is malformed (missing or wrong claims)`)
    }
    if (p.exp <= this.now()) throw new Unauthenticated(`the ${kind} token for image ${p.img} has expired; ${onExpiry}`)
    return { imageId: p.img, host: p.hst, instanceUuid: String(p.srv ?? ''), issuedAt: p.iat, expiresAt: p.exp, auditId: String(p.jti ?? '') }
  }

  private sign(typ: string, payload: object): string {
    const key = this.keys.primary()
    const signingInput = `${b64({ alg: HEADER_ALG, kid: key.kid, typ })}.${b64(payload)}`
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
    const { header, payload: raw } = this.verifyJws(token)
    if (header.typ === IMAGE_READ_TYP || header.typ === IMAGE_UPLOAD_TYP || (raw as { knd?: unknown }).knd !== undefined) {
      const r = raw as Partial<ImageReadPayload>
      const [kind, aud] = r.knd === 'image-upload' || header.typ === IMAGE_UPLOAD_TYP ? ['image-upload', IMAGE_UPLOAD_AUDIENCE] : ['image-read', IMAGE_READ_AUDIENCE]
      throw new Unauthenticated(`the token is an ${kind} token (image ${String(r.img)}, host ${String(r.hst)}): it is accepted only by ${aud} of that image, never as a user's token`)
    }
    const payload = raw as unknown as Payload
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

  /** Checks the compact JWS's form, algorithm, key and signature; the claims are the caller's to check. */
  private verifyJws(token: string): { header: { alg?: string; kid?: string; typ?: string }; payload: Record<string, unknown> } {
    const parts = token.split('.')
    if (parts.length !== 3 || token.length > 8192) throw new Unauthenticated('the token is malformed (not a compact JWS)')
    const [h, p, s] = parts as [string, string, string]
    let header: { alg?: string; kid?: string; typ?: string }
    let payload: unknown
    try {
      header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'))
      payload = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'))
    } catch {
      throw new Unauthenticated('the token is malformed (undecodable header or payload)')
    }
    if (!header || typeof header !== 'object') throw new Unauthenticated('the token is malformed (its header is not an object)')
    if (header.alg !== HEADER_ALG) throw new Unauthenticated(`the token uses algorithm '${String(header.alg)}'; only ${HEADER_ALG} is accepted`)
    const key = typeof header.kid === 'string' ? this.keys.byKid(header.kid) : undefined
    if (!key) throw new Unauthenticated('the token was signed with an unknown or retired key')
    if (!verify(null, Buffer.from(`${h}.${p}`), key.publicKey, Buffer.from(s, 'base64url'))) {
      throw new Unauthenticated('the token signature is invalid')
    }
    if (!payload || typeof payload !== 'object') throw new Unauthenticated('the token is malformed (its payload is not an object)')
    return { header, payload: payload as Record<string, unknown> }
  }
}
