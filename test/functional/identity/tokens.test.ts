// Tokens through the real gRPC server: issue (password, re-scope), scopes, validation,
// expiry, forgery, revocation and key rotation.
import t from 'tap'
import { startController, type TestController } from '../../helpers/controller.js'
import { call, failure, fieldOf, status } from '../../helpers/grpc.js'
import type { IssueTokenResponse, Project, Role, TokenBody, User } from '../../../proto/gen/strato/identity/v1/identity.js'

let s: TestController
t.before(async () => {
  s = await startController()
})
t.teardown(() => s.close())

const admin = () => s.adminToken

async function makeUser(name: string, project: string, role = 'member'): Promise<{ user: User; project: Project }> {
  const p = await call<Project>(s.clients.projects, 'createProject', { name: project, domainId: 'default' }, admin())
  const u = await call<User>(s.clients.users, 'createUser', { name, domainId: 'default', password: `${name}-pw`, defaultProjectId: p.id }, admin())
  const r = await call<Role>(s.clients.roles, 'getRole', { name: role }, admin())
  await call(s.clients.roles, 'grantRole', { roleId: r.id, userId: u.id, projectId: p.id }, admin())
  return { user: u, project: p }
}

t.test('admin token from admin-openrc carries scope, effective roles, catalog and expiry', async (t) => {
  const res = await s.login(s.openrc.OS_USERNAME!, s.openrc.OS_PASSWORD!, { project: 'admin' })
  const b = res.body!
  t.equal(b.user?.name, 'admin')
  t.equal(b.user?.domain?.id, 'default')
  t.equal(b.project?.name, 'admin')
  t.equal(b.project?.domain?.name, 'Default')
  t.same(b.roles.map((r) => r.name).sort(), ['admin', 'member', 'reader'], 'admin implies member implies reader')
  t.ok(b.isAdminProject)
  t.same(b.methods, ['password'])
  t.equal(b.auditIds.length, 1)
  const life = b.expiresAt!.getTime() - b.issuedAt!.getTime()
  t.equal(life, 3600_000, 'default lifetime is one hour')
  t.ok(b.catalog.some((e) => e.type === 'identity' && e.endpoints.some((ep) => ep.url === `grpc://${s.address}`)))
  t.match(res.token, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'a compact JWS')
  t.ok(res.token.length < 1024, `token is small (${res.token.length} bytes)`)
  const header = JSON.parse(Buffer.from(res.token.split('.')[0]!, 'base64url').toString())
  t.equal(header.alg, 'EdDSA')
})

t.test('scopes: project by id, domain, unscoped, and the default project', async (t) => {
  const { user, project } = await makeUser('alice', 'alice-proj')
  const byId = await call<IssueTokenResponse>(s.clients.tokens, 'issueToken', {
    identity: { methods: ['password'], password: { user: { id: user.id, password: 'alice-pw' } } },
    scope: { project: { id: project.id } },
  })
  t.equal(byId.body?.project?.id, project.id)
  t.same(byId.body?.roles.map((r) => r.name).sort(), ['member', 'reader'])
  t.notOk(byId.body?.isAdminProject)

  // No scope asked: Keystone scopes to the default project.
  const dflt = await s.login('alice', 'alice-pw')
  t.equal(dflt.body?.project?.id, project.id)

  // A user with no default project gets an unscoped token: no roles, no catalog.
  await call(s.clients.users, 'updateUser', { id: user.id, defaultProjectId: '' }, admin())
  const unscoped = await s.login('alice', 'alice-pw')
  t.notOk(unscoped.body?.project)
  t.same(unscoped.body?.roles, [])
  t.same(unscoped.body?.catalog, [])

  // Domain scope needs a role on the domain.
  const e = await failure(s.login('alice', 'alice-pw', { scopeDomain: 'Default' }))
  t.equal(e.code, status.UNAUTHENTICATED)
  t.match(e.details, /no role on domain/)
  const reader = await call<Role>(s.clients.roles, 'getRole', { name: 'reader' }, admin())
  await call(s.clients.roles, 'grantRole', { roleId: reader.id, userId: user.id, domainId: 'default' }, admin())
  const dom = await s.login('alice', 'alice-pw', { scopeDomain: 'Default' })
  t.equal(dom.body?.domain?.id, 'default')
  t.same(dom.body?.roles.map((r) => r.name), ['reader'])

  // Re-scope the unscoped token to the project with the token method.
  const rescoped = await call<IssueTokenResponse>(s.clients.tokens, 'issueToken', {
    identity: { methods: ['token'], token: { id: unscoped.token } },
    scope: { project: { name: 'alice-proj', domain: { id: 'default' } } },
  })
  t.equal(rescoped.body?.project?.id, project.id)
  t.same(rescoped.body?.methods, ['token', 'password'], "the proof's methods stay, with 'token' (Keystone's)")
  t.equal(rescoped.body?.auditIds[1], unscoped.body?.auditIds[0], 'audit chain points at the original token')
  t.equal(rescoped.body?.expiresAt?.getTime(), unscoped.body?.expiresAt?.getTime(), 'a re-scoped token keeps the original expiry')
  const noRole = await failure(s.login('alice', 'alice-pw', { project: 'admin' }))
  t.equal(noRole.code, status.UNAUTHENTICATED)
  t.match(noRole.details, /no role on project 'admin'/)
})

t.test('bad credentials and bad requests', async (t) => {
  await makeUser('bob', 'bob-proj')
  for (const [what, p] of [
    ['wrong password', () => s.login('bob', 'nope')],
    ['unknown user', () => s.login('nobody', 'x')],
    ['user in another domain', () => s.login('bob', 'bob-pw', { domain: 'Nowhere' })],
  ] as const) {
    const e = await failure(p())
    t.equal(e.code, status.UNAUTHENTICATED, what)
    t.match(e.details, /authentication failed/, `${what}: one message, no user enumeration`)
  }
  const noUser = await failure(call(s.clients.tokens, 'issueToken', { identity: { methods: ['password'], password: {} } }))
  t.equal(noUser.code, status.INVALID_ARGUMENT)
  t.equal(fieldOf(noUser), 'identity.password.user')
  const noDomain = await failure(call(s.clients.tokens, 'issueToken', { identity: { methods: ['password'], password: { user: { name: 'bob', password: 'bob-pw' } } } }))
  t.equal(noDomain.code, status.INVALID_ARGUMENT)
  t.equal(fieldOf(noDomain), 'identity.password.user.domain')
  const badMethod = await failure(call(s.clients.tokens, 'issueToken', { identity: { methods: ['totp'] } }))
  t.equal(badMethod.code, status.INVALID_ARGUMENT)
  const unknownProject = await failure(s.login('bob', 'bob-pw', { project: 'no-such-project' }))
  t.equal(unknownProject.code, status.UNAUTHENTICATED)
})

t.test('missing, malformed, forged and other-key tokens are UNAUTHENTICATED', async (t) => {
  const none = await failure(call(s.clients.domains, 'listDomains', {}))
  t.equal(none.code, status.UNAUTHENTICATED)
  t.match(none.details, /x-auth-token/)
  const garbage = await failure(call(s.clients.domains, 'listDomains', {}, 'not-a-token'))
  t.equal(garbage.code, status.UNAUTHENTICATED)
  t.match(garbage.details, /malformed/)
  // Forge: change the payload (claim another user) and keep the signature.
  const [h, p, sig] = admin().split('.') as [string, string, string]
  const payload = JSON.parse(Buffer.from(p, 'base64url').toString())
  payload.exp += 3600_000
  const forged = `${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${sig}`
  const f = await failure(call(s.clients.domains, 'listDomains', {}, forged))
  t.equal(f.code, status.UNAUTHENTICATED)
  t.match(f.details, /signature is invalid/)
  // alg=none downgrade.
  const none2 = `${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${p}.`
  t.equal((await failure(call(s.clients.domains, 'listDomains', {}, none2))).code, status.UNAUTHENTICATED)
  // A token signed by another cloud's keys.
  const other = await startController()
  try {
    const e = await failure(call(s.clients.domains, 'listDomains', {}, other.adminToken))
    t.equal(e.code, status.UNAUTHENTICATED)
    t.match(e.details, /unknown or retired key/)
  } finally {
    await other.close()
  }
})

t.test('tokens expire', async (t) => {
  const short = await startController({ token: { expirationSeconds: 1, maxActiveKeys: 3, cacheSize: 1000 } })
  try {
    const tok = short.adminToken
    await call(short.clients.domains, 'listDomains', {}, tok)
    await new Promise((r) => setTimeout(r, 1100))
    const e = await failure(call(short.clients.domains, 'listDomains', {}, tok))
    t.equal(e.code, status.UNAUTHENTICATED)
    t.match(e.details, /expired/)
  } finally {
    await short.close()
  }
})

t.test('revocation: RevokeToken, disabled user, password change, disabled project, removed role', async (t) => {
  const { user, project } = await makeUser('carol', 'carol-proj')
  const use = (tok: string) => call(s.clients.projects, 'getProject', { id: project.id }, tok)
  const fresh = async () => (await s.login('carol', 'carol-pw', { project: 'carol-proj' })).token

  let tok = await fresh()
  await use(tok)
  await call(s.clients.tokens, 'revokeToken', { token: tok }, admin())
  let e = await failure(use(tok))
  t.equal(e.code, status.UNAUTHENTICATED, 'revoked by an admin')
  t.match(e.details, /revoked/)

  tok = await fresh()
  await call(s.clients.tokens, 'revokeToken', {}, tok)
  t.equal((await failure(use(tok))).code, status.UNAUTHENTICATED, 'a user revokes their own token')

  tok = await fresh()
  const validated = await call<TokenBody>(s.clients.tokens, 'validateToken', { token: tok }, admin())
  t.equal(validated.user?.id, user.id, 'ValidateToken returns the subject token body')
  await call(s.clients.users, 'updateUser', { id: user.id, enabled: false }, admin())
  t.equal((await failure(use(tok))).code, status.UNAUTHENTICATED, 'disabling the user revokes their tokens')
  t.equal((await failure(fresh())).code, status.UNAUTHENTICATED, 'a disabled user cannot authenticate')
  await call(s.clients.users, 'updateUser', { id: user.id, enabled: true }, admin())

  tok = await fresh()
  await call(s.clients.users, 'updateUser', { id: user.id, password: 'carol-pw' }, admin())
  t.equal((await failure(use(tok))).code, status.UNAUTHENTICATED, 'a password change revokes the user\'s tokens')

  tok = await fresh()
  await call(s.clients.projects, 'updateProject', { id: project.id, enabled: false }, admin())
  t.equal((await failure(use(tok))).code, status.UNAUTHENTICATED, 'disabling the project revokes its tokens')
  e = await failure(fresh())
  t.match(e.details, /disabled/)
  await call(s.clients.projects, 'updateProject', { id: project.id, enabled: true }, admin())

  tok = await fresh()
  const member = await call<Role>(s.clients.roles, 'getRole', { name: 'member' }, admin())
  await call(s.clients.roles, 'revokeRole', { roleId: member.id, userId: user.id, projectId: project.id }, admin())
  t.equal((await failure(use(tok))).code, status.UNAUTHENTICATED, 'removing the role assignment revokes the token')
  // Re-granting lets the user in again with a new token (revocation is by issue time).
  await call(s.clients.roles, 'grantRole', { roleId: member.id, userId: user.id, projectId: project.id }, admin())
  await use(await fresh())

  // Revocations survive a controller restart (they are persisted).
  const tok2 = await fresh()
  await call(s.clients.tokens, 'revokeToken', { token: tok2 }, admin())
  const dataDir = s.dataDir
  const old = s
  await old.controller.stop()
  for (const c of Object.values(old.clients)) c.close()
  s = await startController({}, dataDir)
  t.equal((await failure(call(s.clients.projects, 'getProject', { id: project.id }, tok2))).code, status.UNAUTHENTICATED, 'still revoked after restart')
  await call(s.clients.projects, 'getProject', { id: project.id }, await fresh())
})

t.test('validating or revoking another user\'s token needs a cloud admin', async (t) => {
  await makeUser('dave', 'dave-proj')
  await makeUser('erin', 'erin-proj')
  const dave = (await s.login('dave', 'dave-pw', { project: 'dave-proj' })).token
  const erin = (await s.login('erin', 'erin-pw', { project: 'erin-proj' })).token
  t.equal((await failure(call(s.clients.tokens, 'validateToken', { token: erin }, dave))).code, status.PERMISSION_DENIED)
  t.equal((await failure(call(s.clients.tokens, 'revokeToken', { token: erin }, dave))).code, status.PERMISSION_DENIED)
  const own = await call<TokenBody>(s.clients.tokens, 'validateToken', {}, dave)
  t.equal(own.user?.name, 'dave')
})

t.test('key rotation: old tokens stay valid while their key is active, then are refused', async (t) => {
  const before = admin()
  const r1 = await call<{ primaryKeyId: string; activeKeyIds: string[] }>(s.clients.tokens, 'rotateSigningKeys', {}, before)
  t.equal(r1.activeKeyIds.length, 3, 'primary, one secondary, staged (max_active_keys 3)')
  await call(s.clients.domains, 'listDomains', {}, before)
  const after = (await s.login(s.openrc.OS_USERNAME!, s.openrc.OS_PASSWORD!, { project: 'admin' })).token
  const kid = JSON.parse(Buffer.from(after.split('.')[0]!, 'base64url').toString()).kid
  t.equal(kid, r1.primaryKeyId, 'new tokens are signed with the new primary')
  await call(s.clients.tokens, 'rotateSigningKeys', {}, after)
  const third = (await s.login(s.openrc.OS_USERNAME!, s.openrc.OS_PASSWORD!, { project: 'admin' })).token
  await call(s.clients.tokens, 'rotateSigningKeys', {}, third)
  // `before` was signed two primaries ago; with 3 active keys its key is now gone. Restart to drop the cache too.
  const dataDir = s.dataDir
  await s.controller.stop()
  for (const c of Object.values(s.clients)) c.close()
  s = await startController({}, dataDir)
  const e = await failure(call(s.clients.domains, 'listDomains', {}, before))
  t.equal(e.code, status.UNAUTHENTICATED)
  t.match(e.details, /unknown or retired key/)
  const member = await makeUser('frank', 'frank-proj')
  const frank = (await s.login('frank', 'frank-pw', { project: 'frank-proj' })).token
  t.equal((await failure(call(s.clients.tokens, 'rotateSigningKeys', {}, frank))).code, status.PERMISSION_DENIED)
  t.ok(member)
})
