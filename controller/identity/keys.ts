/**
 * The token-signing key repository, after Keystone's fernet key repository,
 * kept in the database (table `signing_keys`) so that every controller on one
 * database signs and validates with the same keys: position 0 is the staged
 * key (the next primary, already accepted everywhere), the highest position
 * is the primary (signs), the rest are secondaries (validate only). Keys are
 * Ed25519, PKCS#8 PEM.
 *
 * Controllers keep the keys in memory and read them again when told a
 * rotation happened (a notice on the bus), or when a token names a key they
 * do not know (`refresh`). Rotation runs once under a lock (PostgreSQL: an
 * advisory lock; SQLite: its single writer) and from what the database holds,
 * so rotations by several controllers follow one another instead of mixing.
 * A repository of key files from before the keys moved into the database
 * (`<dataDir>/keys`, named by position) is imported once, when the table is
 * empty, so tokens signed before an upgrade stay valid.
 */
import type { Transaction } from 'kysely'
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { Internal } from '../../proto/errors.js'
import type { Db } from '../store/db.js'
import type { Database } from '../store/schema.js'
import { lockNames } from '../store/engine.js'

export interface SigningKey {
  /** Position in the repository (Keystone's file index). */
  index: number
  /** Stable id carried in the JWS header (`kid`): a digest of the public key. */
  kid: string
  privateKey: KeyObject
  publicKey: KeyObject
}

/** The lock name every rotation (and the first key creation) takes. */
const LOCK = 'signing-keys'

export class KeyRepository {
  private keys: SigningKey[] = []
  /** Parsed keys by kid: a refresh parses only keys it has not seen. */
  private readonly parsed = new Map<string, SigningKey>()
  private refreshing: Promise<void> | undefined
  private refreshedAt = 0

  constructor(
    private readonly db: Db,
    private readonly maxActiveKeys: number,
    /** Key files of an older version to import once (Keystone's layout), when the table is empty. */
    private readonly legacyDir: string | null = null,
    /** A token naming an unknown key makes a re-read at most this often (forged kids cost no more than that). @default 1000 */
    private readonly minRefreshMs = 1000,
  ) {}

  /** Loads the repository, creating the staged and first primary key when it is empty. */
  async load(): Promise<void> {
    await this.read(this.db)
    if (this.keys.some((k) => k.index > 0)) return
    await this.db.transaction().execute(async (trx) => {
      await lockNames(trx, [LOCK])
      // Another controller may have made them while this one waited.
      if ((await trx.selectFrom('signing_keys').select('kid').executeTakeFirst()) === undefined) {
        const legacy = this.legacyKeys()
        if (legacy.length) for (const [index, pem] of legacy) await this.insert(trx, index, pem)
      }
      const positions = (await trx.selectFrom('signing_keys').select('position').execute()).map((r) => r.position)
      // Only a staged key, or none: promote or make one, and stage a new one (Keystone's fernet_setup).
      if (!positions.includes(0)) await this.insert(trx, 0, newKeyPem())
      if (!positions.some((p) => p > 0)) {
        await trx.updateTable('signing_keys').set({ position: 1 }).where('position', '=', 0).execute()
        await this.insert(trx, 0, newKeyPem())
      }
    })
    await this.read(this.db)
  }

  /** The key that signs new tokens. */
  primary(): SigningKey {
    const primary = this.keys.reduce<SigningKey | undefined>((best, k) => (!best || k.index > best.index ? k : best), undefined)
    if (!primary || primary.index === 0) throw new Internal('the signing key repository (table signing_keys) has no primary key')
    return primary
  }

  /** Keys accepted for validation, by kid. */
  byKid(kid: string): SigningKey | undefined {
    return this.keys.find((k) => k.kid === kid)
  }

  /** Active key ids, newest first (primary, secondaries, then the staged key). */
  activeKids(): string[] {
    return [...this.keys].sort((a, b) => (b.index || 0) - (a.index || 0) || (a.index === 0 ? 1 : -1)).map((k) => k.kid)
  }

  /**
   * Reads the keys again (another controller rotated them). Calls while one
   * runs share it; a call within `minRefreshMs` of the last read reads
   * nothing unless `force` (a rotation notice).
   */
  refresh(force = false): Promise<void> {
    if (!force && !this.refreshing && Date.now() - this.refreshedAt < this.minRefreshMs) return Promise.resolve()
    this.refreshing ??= this.read(this.db).finally(() => {
      this.refreshing = undefined
    })
    return this.refreshing
  }

  /**
   * Staged becomes primary, a new staged key is made, the oldest secondaries
   * beyond maxActiveKeys are removed — once, under the lock, from what the
   * database holds. With `ifPrimary` (the primary's kid the caller saw), a
   * repository another controller rotated since is left as it is: several
   * controllers running the same scheduled rotation rotate once.
   * @returns the primary afterwards, and whether this call rotated.
   */
  async rotate(ifPrimary?: string): Promise<{ primary: SigningKey; rotated: boolean }> {
    const rotated = await this.db.transaction().execute(async (trx) => {
      await lockNames(trx, [LOCK])
      const rows = await trx.selectFrom('signing_keys').select(['kid', 'position']).orderBy('position').execute()
      const positions = rows.map((r) => r.position)
      const top = rows[rows.length - 1]
      if (!top || top.position === 0 || !positions.includes(0)) throw new Internal('the signing key repository (table signing_keys) has no primary or no staged key; restart the controller to set it up')
      if (ifPrimary !== undefined && top.kid !== ifPrimary) return false
      await trx.updateTable('signing_keys').set({ position: top.position + 1 }).where('position', '=', 0).execute()
      await this.insert(trx, 0, newKeyPem())
      const secondaries = [...positions.filter((p) => p !== 0), top.position + 1]
      const excess = secondaries.length + 1 - this.maxActiveKeys
      if (excess > 0) await trx.deleteFrom('signing_keys').where('position', 'in', secondaries.slice(0, excess)).execute()
      return true
    })
    await this.read(this.db)
    return { primary: this.primary(), rotated }
  }

  private async read(db: Db): Promise<void> {
    const rows = await db.selectFrom('signing_keys').select(['kid', 'position', 'private_key']).execute()
    this.keys = rows.map((r) => {
      let k = this.parsed.get(r.kid)
      if (!k) this.parsed.set(r.kid, (k = parseKey(r.position, r.private_key)))
      return { ...k, index: r.position }
    })
    for (const kid of this.parsed.keys()) if (!rows.some((r) => r.kid === kid)) this.parsed.delete(kid)
    this.refreshedAt = Date.now()
  }

  private async insert(trx: Transaction<Database>, position: number, pem: string): Promise<void> {
    const k = parseKey(position, pem)
    await trx.insertInto('signing_keys').values({ kid: k.kid, position, private_key: pem, created_at: new Date().toISOString() }).execute()
  }

  /** The key files of a repository on disk (an older version's), by position. */
  private legacyKeys(): Array<[number, string]> {
    const dir = this.legacyDir
    if (!dir || !existsSync(dir)) return []
    return readdirSync(dir)
      .filter((f) => /^\d+$/.test(f))
      .map((f): [number, string] => [Number(f), readFileSync(path.join(dir, f), 'utf8')])
  }
}

function newKeyPem(): string {
  return generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
}

function parseKey(index: number, pem: string): SigningKey {
  const privateKey = createPrivateKey(pem)
  const publicKey = createPublicKey(privateKey)
  const kid = createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex').slice(0, 16)
  return { index, kid, privateKey, publicKey }
}
