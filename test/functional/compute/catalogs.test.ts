// Flavors, keypairs and quotas through the real gRPC server (Nova semantics).
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { startController, type TestController } from '../../helpers/controller.js'
import { call, client, failure, fieldOf, status } from '../../helpers/grpc.js'
import { FlavorsClient, KeypairsClient, QuotasClient, type Flavor, type Keypair, type ListFlavorsResponse, type ListKeypairsResponse, type QuotaSet } from '../../../proto/gen/strato/compute/v1/compute.js'
import type { Project, Role, User } from '../../../proto/gen/strato/identity/v1/identity.js'

let s: TestController
let flavors: FlavorsClient
let keypairs: KeypairsClient
let quotas: QuotasClient
let demo: { token: string; project: Project; user: User }
let tmp: string

t.before(async () => {
  s = await startController()
  flavors = client(FlavorsClient, s.address)
  keypairs = client(KeypairsClient, s.address)
  quotas = client(QuotasClient, s.address)
  tmp = mkdtempSync(path.join(tmpdir(), 'strato-keys-'))
  const project = await call<Project>(s.clients.projects, 'createProject', { name: 'demo', domainId: 'default' }, s.adminToken)
  const user = await call<User>(s.clients.users, 'createUser', { name: 'demo', domainId: 'default', password: 'demo-pw', defaultProjectId: project.id }, s.adminToken)
  const member = await call<Role>(s.clients.roles, 'getRole', { name: 'member' }, s.adminToken)
  await call(s.clients.roles, 'grantRole', { roleId: member.id, userId: user.id, projectId: project.id }, s.adminToken)
  demo = { token: (await s.login('demo', 'demo-pw', { project: 'demo' })).token, project: project as Project, user: user as User }
})
t.teardown(async () => {
  flavors.close()
  keypairs.close()
  quotas.close()
  rmSync(tmp, { recursive: true, force: true })
  await s.close()
})

t.test('the seed: flavor create --id 0 --vcpus 1 --ram 512 --disk 20 m1.small', async (t) => {
  const f = await call<Flavor>(flavors, 'createFlavor', { id: '0', name: 'm1.small', vcpus: 1, ram: 512, disk: 20 }, s.adminToken)
  t.match(f, { id: '0', name: 'm1.small', vcpus: 1, ram: 512, disk: 20, ephemeral: 0, swap: 0, isPublic: true })
  const gen = await call<Flavor>(flavors, 'createFlavor', { name: 'm1.nano', vcpus: 1, ram: 64, disk: 1 }, s.adminToken)
  t.match(gen.id, /^[0-9a-f-]{36}$/, 'no id: a generated UUID')
  const list = await call<ListFlavorsResponse>(flavors, 'listFlavors', {}, demo.token)
  t.same(list.flavors.map((x) => x.name), ['m1.nano', 'm1.small'], 'a member sees public flavors, smallest first')
  t.equal((await call<Flavor>(flavors, 'getFlavor', { name: 'm1.small' }, demo.token)).id, '0')

  t.equal((await failure(call(flavors, 'createFlavor', { id: '0', name: 'other', vcpus: 1, ram: 1 }, s.adminToken))).code, status.ALREADY_EXISTS, 'duplicate id')
  const dupName = await failure(call(flavors, 'createFlavor', { name: 'm1.small', vcpus: 1, ram: 1 }, s.adminToken))
  t.equal(dupName.code, status.ALREADY_EXISTS)
  t.match(dupName.details, /named 'm1.small'/)
  for (const [field, req] of [
    ['vcpus', { name: 'bad', vcpus: 0, ram: 512 }],
    ['ram', { name: 'bad', vcpus: 1, ram: -5 }],
    ['disk', { name: 'bad', vcpus: 1, ram: 512, disk: -1 }],
    ['name', { name: '', vcpus: 1, ram: 512 }],
    ['id', { id: 'a/b', name: 'bad', vcpus: 1, ram: 512 }],
  ] as const) {
    const e = await failure(call(flavors, 'createFlavor', req, s.adminToken))
    t.equal(e.code, status.INVALID_ARGUMENT, `bad ${field}`)
    t.equal(fieldOf(e), field)
  }
  const denied = await failure(call(flavors, 'createFlavor', { name: 'mine', vcpus: 1, ram: 64 }, demo.token))
  t.equal(denied.code, status.PERMISSION_DENIED, 'only admins create flavors')
  t.equal((await failure(call(flavors, 'deleteFlavor', { id: '0' }, demo.token))).code, status.PERMISSION_DENIED)
})

t.test('flavors are immutable except description and extra specs', async (t) => {
  const f = await call<Flavor>(flavors, 'updateFlavor', { id: '0', description: 'the seed flavor', setExtraSpecs: { 'hw:cpu_policy': 'shared', 'quota:disk_read_iops_sec': '500' } }, s.adminToken)
  t.equal(f.description, 'the seed flavor')
  t.same(f.extraSpecs, { 'hw:cpu_policy': 'shared', 'quota:disk_read_iops_sec': '500' })
  const unset = await call<Flavor>(flavors, 'updateFlavor', { id: '0', unsetExtraSpecs: ['hw:cpu_policy'] }, s.adminToken)
  t.same(unset.extraSpecs, { 'quota:disk_read_iops_sec': '500' })
  t.equal((await failure(call(flavors, 'updateFlavor', { id: '0', unsetExtraSpecs: ['nope'] }, s.adminToken))).code, status.NOT_FOUND)
  t.match(await call<Flavor>(flavors, 'getFlavor', { id: '0' }, s.adminToken), { vcpus: 1, ram: 512, disk: 20 }, 'sizes unchanged')
})

t.test('private flavors: visible to admins and to projects given access', async (t) => {
  const p = await call<Flavor>(flavors, 'createFlavor', { name: 'gpu.large', vcpus: 8, ram: 16384, disk: 100, isPublic: false }, s.adminToken)
  t.equal(p.isPublic, false)
  t.equal((await failure(call(flavors, 'getFlavor', { id: p.id }, demo.token))).code, status.NOT_FOUND, 'invisible without access')
  t.notOk((await call<ListFlavorsResponse>(flavors, 'listFlavors', {}, demo.token)).flavors.some((x) => x.id === p.id))
  await call(flavors, 'addFlavorAccess', { flavorId: p.id, projectId: demo.project.id }, s.adminToken)
  t.equal((await call<Flavor>(flavors, 'getFlavor', { id: p.id }, demo.token)).name, 'gpu.large', 'visible with access')
  t.ok((await call<ListFlavorsResponse>(flavors, 'listFlavors', {}, demo.token)).flavors.some((x) => x.id === p.id))
  const adminPrivate = await call<ListFlavorsResponse>(flavors, 'listFlavors', { isPublic: 'private' }, s.adminToken)
  t.same(adminPrivate.flavors.map((x) => x.name), ['gpu.large'])
  t.equal((await failure(call(flavors, 'addFlavorAccess', { flavorId: '0', projectId: demo.project.id }, s.adminToken))).code, status.FAILED_PRECONDITION, 'public flavors have no access list')
  await call(flavors, 'removeFlavorAccess', { flavorId: p.id, projectId: demo.project.id }, s.adminToken)
  t.equal((await failure(call(flavors, 'getFlavor', { id: p.id }, demo.token))).code, status.NOT_FOUND)
  await call(flavors, 'deleteFlavor', { id: p.id }, s.adminToken)
  t.equal((await failure(call(flavors, 'getFlavor', { id: p.id }, s.adminToken))).code, status.NOT_FOUND)
})

t.test('keypairs: import rsa, ecdsa and ed25519 keys; fingerprints as ssh-keygen shows them', async (t) => {
  for (const [type, bits] of [['rsa', '3072'], ['ecdsa', '256'], ['ed25519', '']] as const) {
    const file = path.join(tmp, `id_${type}`)
    execFileSync('ssh-keygen', ['-q', '-t', type, ...(bits ? ['-b', bits] : []), '-N', '', '-C', `demo@${type}`, '-f', file])
    const pub = readFileSync(`${file}.pub`, 'utf8')
    const k = await call<Keypair>(keypairs, 'createKeypair', { name: `key-${type}`, publicKey: pub }, demo.token)
    const sha = execFileSync('ssh-keygen', ['-l', '-f', `${file}.pub`], { encoding: 'utf8' }).split(' ')[1]
    const md5 = execFileSync('ssh-keygen', ['-l', '-E', 'md5', '-f', `${file}.pub`], { encoding: 'utf8' }).split(' ')[1]!.replace(/^MD5:/, '')
    t.equal(k.fingerprintSha256, sha, `${type}: SHA256 fingerprint`)
    t.equal(k.fingerprint, md5, `${type}: MD5 fingerprint (Nova's form)`)
    t.equal(k.publicKey, pub.trim())
    t.equal(k.userId, demo.user.id, 'owned by the user')
    t.equal(k.privateKey, '', 'no private key for an imported key')
  }
  const list = await call<ListKeypairsResponse>(keypairs, 'listKeypairs', {}, demo.token)
  t.same(list.keypairs.map((k) => k.name), ['key-ecdsa', 'key-ed25519', 'key-rsa'])
  t.same((await call<ListKeypairsResponse>(keypairs, 'listKeypairs', {}, s.adminToken)).keypairs, [], 'keypairs belong to their user, not the project')
  t.equal((await call<ListKeypairsResponse>(keypairs, 'listKeypairs', { userId: demo.user.id }, s.adminToken)).keypairs.length, 3, 'an admin may look at a user\'s keys')
  t.equal((await failure(call(keypairs, 'listKeypairs', { userId: 'someone-else' }, demo.token))).code, status.PERMISSION_DENIED)
  const dup = await failure(call(keypairs, 'createKeypair', { name: 'key-rsa', publicKey: readFileSync(path.join(tmp, 'id_rsa.pub'), 'utf8') }, demo.token))
  t.equal(dup.code, status.ALREADY_EXISTS)
})

t.test('keypairs: a generated ed25519 key is returned once and works with OpenSSH', async (t) => {
  const k = await call<Keypair>(keypairs, 'createKeypair', { name: 'generated' }, demo.token)
  t.match(k.privateKey, /^-----BEGIN OPENSSH PRIVATE KEY-----\n/)
  const file = path.join(tmp, 'generated')
  writeFileSync(file, k.privateKey, { mode: 0o600 })
  const derived = execFileSync('ssh-keygen', ['-y', '-f', file], { encoding: 'utf8' }).trim()
  t.equal(derived.split(' ').slice(0, 2).join(' '), k.publicKey.split(' ').slice(0, 2).join(' '), 'ssh-keygen derives the same public key from the private key')
  const again = await call<Keypair>(keypairs, 'getKeypair', { name: 'generated' }, demo.token)
  t.equal(again.privateKey, '', 'the private key is never stored or shown again')
  t.equal(again.fingerprint, k.fingerprint)
  await call(keypairs, 'deleteKeypair', { name: 'generated' }, demo.token)
  t.equal((await failure(call(keypairs, 'getKeypair', { name: 'generated' }, demo.token))).code, status.NOT_FOUND)
})

t.test('keypairs: bad keys and names are INVALID_ARGUMENT, nothing stored', async (t) => {
  const rsa = readFileSync(path.join(tmp, 'id_rsa.pub'), 'utf8').trim()
  const [type, b64] = rsa.split(' ') as [string, string]
  const blob = Buffer.from(b64, 'base64')
  const cases: Array<[string, object, string, RegExp]> = [
    ['not a key', { name: 'k1', publicKey: 'hello world' }, 'public_key', /unsupported key type 'hello'/],
    ['bad base64', { name: 'k2', publicKey: 'ssh-rsa !!!notbase64' }, 'public_key', /not valid base64/],
    ['type mismatch', { name: 'k3', publicKey: `ssh-ed25519 ${b64}` }, 'public_key', /says 'ssh-rsa' but the line says 'ssh-ed25519'/],
    ['truncated', { name: 'k4', publicKey: `${type} ${blob.subarray(0, blob.length - 10).toString('base64')}` }, 'public_key', /truncated/],
    ['private key pasted', { name: 'k5', publicKey: '-----BEGIN OPENSSH PRIVATE KEY----- abc' }, 'public_key', /private key/],
    ['bad name', { name: 'a/b', publicKey: rsa }, 'name', /may contain only/],
    ['empty name', { name: ' ', publicKey: rsa }, 'name', /must not be empty/],
  ]
  for (const [what, req, field, msg] of cases) {
    const e = await failure(call(keypairs, 'createKeypair', req, demo.token))
    t.equal(e.code, status.INVALID_ARGUMENT, what)
    t.equal(fieldOf(e), field, `${what}: names the field`)
    t.match(e.details, msg, `${what}: says why`)
  }
  t.equal((await call<ListKeypairsResponse>(keypairs, 'listKeypairs', {}, demo.token)).keypairs.length, 3, 'nothing was stored')
})

t.test('quotas: defaults, admin-settable, exactly the quota admitted under 50 concurrent creates', async (t) => {
  const q = await call<QuotaSet>(quotas, 'getQuota', {}, demo.token)
  const item = (set: { items: Array<{ resource: string; limit: number; inUse: number }> }, r: string) => set.items.find((i) => i.resource === r)!
  t.match(item(q, 'instances'), { limit: 10 })
  t.match(item(q, 'cores'), { limit: 20 })
  t.match(item(q, 'ram'), { limit: 51200 })
  t.match(item(q, 'key_pairs'), { limit: 100, inUse: 3 })
  t.match(item(q, 'ports'), { limit: 500 })
  t.equal((await failure(call(quotas, 'updateQuota', { projectId: demo.project.id, limits: { key_pairs: 1000 } }, demo.token))).code, status.PERMISSION_DENIED, 'members cannot raise their quota')
  const bad = await failure(call(quotas, 'updateQuota', { projectId: demo.project.id, limits: { bananas: 3 } }, s.adminToken))
  t.equal(bad.code, status.INVALID_ARGUMENT)
  t.match(bad.details, /unknown quota resource 'bananas'/)

  await call(quotas, 'updateQuota', { projectId: demo.project.id, limits: { key_pairs: 10 } }, s.adminToken)
  const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => call(keypairs, 'createKeypair', { name: `burst-${i}` }, demo.token)))
  const ok = results.filter((r) => r.status === 'fulfilled').length
  const refused = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[]
  t.equal(ok, 7, 'exactly the quota (10, 3 already used) is admitted')
  t.ok(refused.every((r) => r.reason.code === status.RESOURCE_EXHAUSTED), 'the rest are RESOURCE_EXHAUSTED')
  t.match(refused[0]!.reason.details, /quota exceeded for key_pairs: 10 of 10 in use/)
  t.match(item(await call<QuotaSet>(quotas, 'getQuota', {}, demo.token), 'key_pairs'), { limit: 10, inUse: 10 })
  t.equal((await call<ListKeypairsResponse>(keypairs, 'listKeypairs', {}, demo.token)).keypairs.length, 10)
})
