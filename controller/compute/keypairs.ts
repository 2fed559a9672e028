/**
 * Keypairs (Nova semantics): owned by a user, name unique per user, an
 * imported OpenSSH public key (validated, fingerprinted) or a generated
 * ed25519 key whose private half is returned once and never stored. Counted
 * against the key_pairs quota per user, atomically with the insert.
 */
import { AlreadyExists, InvalidArgument, NotFound } from '../../proto/errors.js'
import { unlessDuplicate, type Db } from '../store/db.js'
import type { QuotaEngine } from '../quota/quota.js'
import { fingerprints, generateEd25519, parsePublicKey } from './ssh-keys.js'

export interface Keypair {
  name: string
  userId: string
  type: string
  publicKey: string
  fingerprint: string
  fingerprintSha256: string
  createdAt: Date
  /** Only when generated, only in the create response. */
  privateKey?: string
}

function checkKeypairName(name: string | undefined): string {
  const n = (name ?? '').trim()
  if (n === '') throw new InvalidArgument('name must not be empty', { field: 'name' })
  if (n.length > 255) throw new InvalidArgument(`name is ${n.length} characters long; the limit is 255`, { field: 'name' })
  if (!/^[\w .@-]+$/.test(n)) throw new InvalidArgument(`keypair name '${n}' may contain only letters, digits, spaces and _ . @ -`, { field: 'name' })
  return n
}

export class KeypairCatalog {
  constructor(
    private readonly db: Db,
    private readonly quota: QuotaEngine,
  ) {
    quota.registerRowCount('key_pairs', 'keypairs', 'user_id')
  }

  async create(req: { name?: string; publicKey?: string; userId: string; projectId: string }): Promise<Keypair> {
    const name = checkKeypairName(req.name)
    const user = await this.db.selectFrom('users').select(['id', 'name']).where('id', '=', req.userId).executeTakeFirst()
    if (!user) throw new NotFound(`user ${req.userId} not found`)
    let privateKey: string | undefined
    let line = req.publicKey?.trim() ?? ''
    if (line === '') {
      const generated = generateEd25519(`${name}@strato`)
      line = generated.publicKey
      privateKey = generated.privateKey
    }
    const parsed = parsePublicKey(line)
    const fp = fingerprints(parsed.blob)
    const row = { user_id: user.id, name, type: 'ssh', public_key: parsed.line, fingerprint: fp.md5, fingerprint_sha256: fp.sha256, created_at: new Date().toISOString() }
    await unlessDuplicate(
      () =>
        this.db.transaction().execute(async (trx) => {
          await this.quota.check(trx, { projectId: req.projectId, userId: user.id }, { key_pairs: 1 })
          await trx.insertInto('keypairs').values(row).execute()
        }),
      () => new AlreadyExists(`keypair '${name}' already exists for user '${user.name}'`),
    )
    return { ...this.toKeypair(row), ...(privateKey ? { privateKey } : {}) }
  }

  async get(name: string | undefined, userId: string): Promise<Keypair> {
    const row = await this.db.selectFrom('keypairs').selectAll().where('user_id', '=', userId).where('name', '=', name ?? '').executeTakeFirst()
    if (!row) throw new NotFound(`keypair '${name}' not found for user ${userId}`)
    return this.toKeypair(row)
  }

  async list(userId: string): Promise<Keypair[]> {
    const rows = await this.db.selectFrom('keypairs').selectAll().where('user_id', '=', userId).orderBy('name').execute()
    return rows.map((r) => this.toKeypair(r))
  }

  async delete(name: string | undefined, userId: string): Promise<void> {
    const res = await this.db.deleteFrom('keypairs').where('user_id', '=', userId).where('name', '=', name ?? '').executeTakeFirst()
    if (Number(res.numDeletedRows) === 0) throw new NotFound(`keypair '${name}' not found for user ${userId}`)
  }

  private toKeypair(r: { user_id: string; name: string; type: string; public_key: string; fingerprint: string; fingerprint_sha256: string; created_at: string }): Keypair {
    return { name: r.name, userId: r.user_id, type: r.type, publicKey: r.public_key, fingerprint: r.fingerprint, fingerprintSha256: r.fingerprint_sha256, createdAt: new Date(r.created_at) }
  }
}
