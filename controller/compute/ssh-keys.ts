/**
 * OpenSSH public keys: parse and validate a `type base64 [comment]` line,
 * fingerprint it (MD5 colon-hex as Nova shows, SHA256 as ssh-keygen shows),
 * and generate ed25519 keypairs with the private key in OpenSSH's own format.
 */
import { createHash, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto'
import { InvalidArgument } from '../../proto/errors.js'

export interface ParsedKey {
  type: string
  /** Normalised line: type, base64 blob and comment (if any). */
  line: string
  blob: Buffer
  bits: number
}

/**
 * Size limits of an imported key. Nova's API bounds a public key by nothing
 * but its database column (MEDIUMTEXT), so these are OpenSSH's: a key that
 * sshd would not take is refused at import rather than failing every build
 * that carries it (a multi-megabit key or a megabyte comment makes the build
 * spec larger than the bus's payload limit, and is useless in a guest).
 */
export const KEY_LIMITS = {
  /** OpenSSH's SSH_RSA_MAXIMUM_MODULUS_SIZE (sshkey.h): ssh-keygen makes and sshd takes no larger RSA key. */
  rsaMaxBits: 16384,
  /** OpenSSH's SSH_MAX_PUBKEY_BYTES (ssh.h, 16384 since 7.x; 8192 before): the longest authorized_keys line it reads. */
  lineMaxBytes: 16384,
  /**
   * No standard bounds the comment (ssh-keygen -C takes any string); Strato
   * keeps it to 1 KiB: it is shown in listings and written into every guest's
   * authorized_keys, and a real one is `user@host`.
   */
  commentMaxBytes: 1024,
} as const

const TYPES = ['ssh-rsa', 'ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521'] as const

/** Reads SSH wire-format strings (uint32 length + bytes) with bounds checks. */
class Reader {
  private off = 0
  constructor(private readonly buf: Buffer) {}
  string(): Buffer {
    if (this.off + 4 > this.buf.length) throw new Error('truncated')
    const len = this.buf.readUInt32BE(this.off)
    this.off += 4
    if (len > this.buf.length - this.off) throw new Error('truncated')
    const out = this.buf.subarray(this.off, this.off + len)
    this.off += len
    return out
  }
  done(): boolean {
    return this.off === this.buf.length
  }
}

function mpintBits(b: Buffer): number {
  let i = 0
  while (i < b.length && b[i] === 0) i++
  if (i === b.length) return 0
  return (b.length - i - 1) * 8 + (32 - Math.clz32(b[i]!))
}

export function parsePublicKey(input: string, field = 'public_key'): ParsedKey {
  const text = input.trim()
  const lineBytes = Buffer.byteLength(text)
  if (lineBytes > KEY_LIMITS.lineMaxBytes) {
    throw new InvalidArgument(`the public key line is ${lineBytes} bytes; the limit is ${KEY_LIMITS.lineMaxBytes} (OpenSSH's longest authorized_keys line)`, { field })
  }
  if (text.includes('\n')) throw new InvalidArgument('the public key must be one line (an OpenSSH public key, e.g. the contents of ~/.ssh/id_ed25519.pub)', { field })
  if (/PRIVATE KEY/.test(text)) throw new InvalidArgument('this is a private key; give the public key (the .pub file)', { field })
  const parts = text.split(/\s+/)
  const [type, b64, ...comment] = parts
  if (!type || !b64) throw new InvalidArgument('not an OpenSSH public key: expected "TYPE BASE64 [COMMENT]"', { field })
  if (!(TYPES as readonly string[]).includes(type)) throw new InvalidArgument(`unsupported key type '${type}'; supported: ${TYPES.join(', ')}`, { field })
  const commentBytes = Buffer.byteLength(comment.join(' '))
  if (commentBytes > KEY_LIMITS.commentMaxBytes) throw new InvalidArgument(`the public key's comment is ${commentBytes} bytes; the limit is ${KEY_LIMITS.commentMaxBytes}`, { field })
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw new InvalidArgument('the key data is not valid base64', { field })
  const blob = Buffer.from(b64, 'base64')
  let bits: number
  try {
    const r = new Reader(blob)
    const inner = r.string().toString('latin1')
    if (inner !== type) throw new Error(`the key data says '${inner}' but the line says '${type}'`)
    if (type === 'ssh-rsa') {
      const e = r.string()
      bits = mpintBits(r.string())
      if (mpintBits(e) < 2) throw new Error('bad RSA exponent')
      if (bits < 2048) throw new Error(`RSA keys need at least 2048 bits, this one has ${bits}`)
      if (bits > KEY_LIMITS.rsaMaxBits) throw new Error(`RSA keys may have at most ${KEY_LIMITS.rsaMaxBits} bits (OpenSSH's limit), this one has ${bits}`)
    } else if (type === 'ssh-ed25519') {
      const pk = r.string()
      if (pk.length !== 32) throw new Error(`an ed25519 key is 32 bytes, this one is ${pk.length}`)
      bits = 256
    } else {
      const curve = r.string().toString('latin1')
      if (`ecdsa-sha2-${curve}` !== type) throw new Error(`curve '${curve}' does not match ${type}`)
      const point = r.string()
      bits = Number(curve.slice('nistp'.length))
      const size = Math.ceil(bits / 8)
      if (point.length !== 1 + 2 * size || point[0] !== 4) throw new Error('bad EC point')
    }
    if (!r.done()) throw new Error('trailing data after the key')
  } catch (err) {
    throw new InvalidArgument(`invalid ${type} public key: ${(err as Error).message}`, { field, cause: err })
  }
  // Let OpenSSL check the key material itself (RSA modulus, point on the curve).
  if (type !== 'ssh-ed25519') {
    try {
      if (type === 'ssh-rsa') {
        const r = new Reader(blob)
        r.string()
        const e = r.string()
        const n = r.string()
        createPublicKey({ key: { kty: 'RSA', n: n.toString('base64url'), e: e.toString('base64url') }, format: 'jwk' })
      } else {
        const r = new Reader(blob)
        r.string()
        const curve = r.string().toString('latin1')
        const point = r.string()
        const size = (point.length - 1) / 2
        const crv = { nistp256: 'P-256', nistp384: 'P-384', nistp521: 'P-521' }[curve]!
        createPublicKey({ key: { kty: 'EC', crv, x: point.subarray(1, 1 + size).toString('base64url'), y: point.subarray(1 + size).toString('base64url') }, format: 'jwk' })
      }
    } catch (err) {
      throw new InvalidArgument(`invalid ${type} public key: the key material is not a valid key`, { field, cause: err })
    }
  }
  return { type, blob, bits, line: [type, b64, ...comment].join(' ') }
}

export function fingerprints(blob: Buffer): { md5: string; sha256: string } {
  const md5 = createHash('md5').update(blob).digest('hex').match(/../g)!.join(':')
  const sha256 = 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')
  return { md5, sha256 }
}

function sshString(b: Buffer | string): Buffer {
  const data = typeof b === 'string' ? Buffer.from(b) : b
  const len = Buffer.alloc(4)
  len.writeUInt32BE(data.length)
  return Buffer.concat([len, data])
}

/** A new ed25519 keypair: the public key line and the private key in OpenSSH format (openssh-key-v1, unencrypted). */
export function generateEd25519(comment: string): { publicKey: string; privateKey: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519')
  const pub = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url')
  const seed = Buffer.from(privateKey.export({ format: 'jwk' }).d!, 'base64url')
  const blob = Buffer.concat([sshString('ssh-ed25519'), sshString(pub)])
  const check = randomBytes(4)
  let priv = Buffer.concat([check, check, sshString('ssh-ed25519'), sshString(pub), sshString(Buffer.concat([seed, pub])), sshString(comment)])
  const pad = (8 - (priv.length % 8)) % 8
  priv = Buffer.concat([priv, Buffer.from(Array.from({ length: pad }, (_, i) => i + 1))])
  const body = Buffer.concat([Buffer.from('openssh-key-v1\0'), sshString('none'), sshString('none'), sshString(''), Buffer.from([0, 0, 0, 1]), sshString(blob), sshString(priv)])
  const b64 = body.toString('base64').match(/.{1,70}/g)!.join('\n')
  return {
    publicKey: `ssh-ed25519 ${blob.toString('base64')} ${comment}`,
    privateKey: `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64}\n-----END OPENSSH PRIVATE KEY-----\n`,
  }
}
