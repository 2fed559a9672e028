/**
 * Keypair import limits (issue 15): a key OpenSSH would not take — an RSA
 * modulus over 16384 bits, a line over 16 KiB, a comment over 1 KiB — is
 * INVALID_ARGUMENT naming the limit and the value, through gRPC and through
 * `strato keypair create --public-key`. Before, a ~6 Mbit key or a 1 MB
 * comment was stored and then failed every build that carried it.
 */
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { startController, type TestController } from '../../helpers/controller.js'
import { call, client, failure, fieldOf, status } from '../../helpers/grpc.js'
import { KeypairsClient, type Keypair, type ListKeypairsResponse } from '../../../proto/gen/strato/compute/v1/compute.js'
import { failsWith, freshHome, openrcEnv, removeHomes, succeeds } from '../cli/cli.js'

let s: TestController
let keypairs: KeypairsClient
let home: string
let ed25519: string

function sshString(b: Buffer | string): Buffer {
  const data = typeof b === 'string' ? Buffer.from(b) : b
  const len = Buffer.alloc(4)
  len.writeUInt32BE(data.length)
  return Buffer.concat([len, data])
}

/** An ssh-rsa line whose modulus has exactly `bits` bits (random and odd: OpenSSL imports any modulus as a public key). */
function rsaLine(bits: number, comment = 'big@host'): string {
  const n = randomBytes(Math.ceil(bits / 8))
  const top = bits % 8 || 8
  n[0] = (n[0]! & ((1 << top) - 1)) | (1 << (top - 1))
  n[n.length - 1]! |= 1
  const mpint = n[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), n]) : n
  const blob = Buffer.concat([sshString('ssh-rsa'), sshString(Buffer.from([1, 0, 1])), sshString(mpint)])
  return `ssh-rsa ${blob.toString('base64')} ${comment}`
}

t.before(async () => {
  s = await startController()
  keypairs = client(KeypairsClient, s.address)
  home = freshHome()
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'demo@host', '-f', path.join(home, 'id_ed25519')])
  ed25519 = readFileSync(path.join(home, 'id_ed25519.pub'), 'utf8').trim().split(' ').slice(0, 2).join(' ')
})
t.teardown(async () => {
  keypairs.close()
  await s.close()
  removeHomes()
})

t.test('gRPC: keys over OpenSSH\'s limits are INVALID_ARGUMENT naming the limit and the value; keys at the limits are taken', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['RSA of 16385 bits', rsaLine(16385), /RSA keys may have at most 16384 bits \(OpenSSH's limit\), this one has 16385/],
    ['RSA of ~6 Mbit', rsaLine(6_000_000), /the public key line is \d{6,} bytes; the limit is 16384/],
    ['a 1 MB comment', `${ed25519} ${'c'.repeat(1 << 20)}`, /the public key line is 10\d{5} bytes; the limit is 16384/],
    ['a 1025-byte comment', `${ed25519} ${'c'.repeat(1025)}`, /the public key's comment is 1025 bytes; the limit is 1024/],
    ['a comment of many words over 1 KiB', `${ed25519} ${'word '.repeat(300).trim()}`, /the public key's comment is 1499 bytes; the limit is 1024/],
  ]
  for (const [what, publicKey, msg] of cases) {
    const e = await failure(call(keypairs, 'createKeypair', { name: 'k', publicKey }, s.adminToken))
    t.equal(e.code, status.INVALID_ARGUMENT, `${what}: INVALID_ARGUMENT`)
    t.equal(fieldOf(e), 'public_key', `${what}: names the field`)
    t.match(e.details, msg, `${what}: names the limit and the value`)
  }
  t.same((await call<ListKeypairsResponse>(keypairs, 'listKeypairs', {}, s.adminToken)).keypairs, [], 'nothing was stored')

  const atBits = await call<Keypair>(keypairs, 'createKeypair', { name: 'rsa-16384', publicKey: rsaLine(16384) }, s.adminToken)
  t.ok(atBits.fingerprint, 'an RSA key of exactly 16384 bits is taken')
  const atComment = await call<Keypair>(keypairs, 'createKeypair', { name: 'comment-1024', publicKey: `${ed25519} ${'c'.repeat(1024)}` }, s.adminToken)
  t.equal(atComment.publicKey.length, ed25519.length + 1 + 1024, 'a 1024-byte comment is taken, whole')
})

t.test('CLI: keypair create --public-key with an oversized key fails on one line saying why', async (t) => {
  const env = openrcEnv(s.openrc, home)
  const big = path.join(home, 'big_rsa.pub')
  writeFileSync(big, rsaLine(6_000_000) + '\n')
  const r1 = await failsWith(t, `keypair create --public-key ${big} bigkey`, 1, env)
  t.match(r1.stderr, /the public key line is \d+ bytes; the limit is 16384/)
  const chatty = path.join(home, 'chatty.pub')
  writeFileSync(chatty, `${ed25519} ${'x'.repeat(1 << 20)}\n`)
  const r2 = await failsWith(t, `keypair create --public-key ${chatty} chatty`, 1, env)
  t.match(r2.stderr, /the limit is 16384/)
  const wide = path.join(home, 'wide.pub')
  writeFileSync(wide, rsaLine(20000) + '\n')
  const r3 = await failsWith(t, `keypair create --public-key ${wide} wide`, 1, env)
  t.match(r3.stderr, /at most 16384 bits .* this one has 20000/)
  t.notMatch(await succeeds(t, 'keypair list', env), /bigkey|chatty|wide/, 'none was stored')
})
