/**
 * Revocation events (Keystone OS-REVOKE): a token is rejected when every
 * criterion of some event matches it and it was issued at or before the
 * event's `issuedBefore`. Events are indexed by criterion so a check costs a
 * handful of map lookups however many events exist (Keystone's validation
 * once grew to 2 s at 10k events).
 */
import type { TokenClaims } from './model.js'

export interface RevocationEvent {
  auditId?: string
  auditChainId?: string
  userId?: string
  projectId?: string
  /** Matches the user's domain, the project's domain, or the scoped domain. */
  domainId?: string
  /** With userId: a domain-scoped token on this domain. */
  scopeDomainId?: string
  roleId?: string
  issuedBefore: number
}

/** The index key of an event, or of a token for one kind of criterion set. */
function eventKey(e: RevocationEvent): string {
  return [
    e.auditId && `a=${e.auditId}`,
    e.auditChainId && `c=${e.auditChainId}`,
    e.userId && `u=${e.userId}`,
    e.projectId && `p=${e.projectId}`,
    e.domainId && `d=${e.domainId}`,
    e.scopeDomainId && `s=${e.scopeDomainId}`,
    e.roleId && `r=${e.roleId}`,
  ]
    .filter(Boolean)
    .join('&')
}

export class RevocationList {
  /** criterion key → latest issuedBefore */
  private readonly index = new Map<string, number>()

  get size(): number {
    return this.index.size
  }

  add(event: RevocationEvent): void {
    const key = eventKey(event)
    if (key === '') throw new Error('a revocation event needs at least one criterion')
    const cur = this.index.get(key)
    if (cur === undefined || cur < event.issuedBefore) this.index.set(key, event.issuedBefore)
  }

  /** Forgets events that no unexpired token can match. */
  prune(olderThan: number): void {
    for (const [k, v] of this.index) if (v < olderThan) this.index.delete(k)
  }

  isRevoked(t: TokenClaims): boolean {
    const hit = (key: string): boolean => {
      const before = this.index.get(key)
      return before !== undefined && t.issuedAt <= before
    }
    const u = t.user.id
    if (hit(`a=${t.auditId}`) || hit(`c=${t.auditChainId}`) || hit(`u=${u}`) || hit(`d=${t.user.domain.id}`)) return true
    if (t.project) {
      if (hit(`p=${t.project.id}`) || hit(`d=${t.project.domain.id}`) || hit(`u=${u}&p=${t.project.id}`)) return true
    }
    if (t.domain) {
      if (hit(`d=${t.domain.id}`) || hit(`u=${u}&s=${t.domain.id}`)) return true
    }
    for (const r of t.roles) if (hit(`r=${r.id}`)) return true
    return false
  }
}
