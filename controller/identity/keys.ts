/**
 * The token-signing key repository, after Keystone's fernet key repository:
 * files named by integer in one directory; the highest is the primary (signs),
 * `0` is the staged key (the next primary, already accepted everywhere), the
 * rest are secondaries (validate only). Keys are Ed25519, PEM, mode 0600.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import path from 'node:path'
import { Internal } from '../../proto/errors.js'
import { writePrivateFile } from '../../proto/private-file.js'

export interface SigningKey {
  /** File index in the repository. */
  index: number
  /** Stable id carried in the JWS header (`kid`): a digest of the public key. */
  kid: string
  privateKey: KeyObject
  publicKey: KeyObject
}

export class KeyRepository {
  private keys: SigningKey[] = []

  constructor(
    private readonly dir: string,
    private readonly maxActiveKeys: number,
  ) {}

  /** Loads the repository, creating the staged and first primary key when empty. */
  load(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 })
    let files = this.indexes()
    if (files.length === 0) {
      this.writeKey(0)
      files = [0]
    }
    if (files.length === 1 && files[0] === 0) {
      // Only a staged key: promote it and stage a new one (Keystone's fernet_setup).
      this.promoteStaged(1)
      this.writeKey(0)
    }
    this.keys = this.indexes().map((i) => this.readKey(i))
  }

  /** The key that signs new tokens. */
  primary(): SigningKey {
    const primary = this.keys.reduce<SigningKey | undefined>((best, k) => (!best || k.index > best.index ? k : best), undefined)
    if (!primary || primary.index === 0) throw new Internal(`signing key repository ${this.dir} has no primary key`)
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

  /** Staged becomes primary, a new staged key is made, the oldest secondaries beyond maxActiveKeys are removed. */
  rotate(): SigningKey {
    const next = Math.max(...this.indexes()) + 1
    this.promoteStaged(next)
    this.writeKey(0)
    const remaining = this.indexes().filter((i) => i !== 0).sort((a, b) => a - b)
    while (remaining.length + 1 > this.maxActiveKeys) rmSync(path.join(this.dir, String(remaining.shift())))
    this.keys = this.indexes().map((i) => this.readKey(i))
    return this.primary()
  }

  private indexes(): number[] {
    return readdirSync(this.dir)
      .filter((f) => /^\d+$/.test(f))
      .map(Number)
      .sort((a, b) => a - b)
  }

  private writeKey(index: number): void {
    const { privateKey } = generateKeyPairSync('ed25519')
    writePrivateFile(path.join(this.dir, String(index)), privateKey.export({ type: 'pkcs8', format: 'pem' }))
  }

  private promoteStaged(to: number): void {
    renameSync(path.join(this.dir, '0'), path.join(this.dir, String(to)))
  }

  private readKey(index: number): SigningKey {
    const privateKey = createPrivateKey(readFileSync(path.join(this.dir, String(index))))
    const publicKey = createPublicKey(privateKey)
    const kid = createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex').slice(0, 16)
    return { index, kid, privateKey, publicKey }
  }
}
