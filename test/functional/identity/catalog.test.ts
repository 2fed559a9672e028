// Domains, projects, users, roles and assignments through the real gRPC server:
// Keystone's rules, and a clear error that changes nothing for every bad input.
import t from 'tap'
import { startController, type TestController } from '../../helpers/controller.js'
import { call, failure, fieldOf, status } from '../../helpers/grpc.js'
import type {
  Domain, ListDomainsResponse, ListProjectsResponse, ListRoleAssignmentsResponse, ListRolesResponse, ListUsersResponse, Project, Role, User,
} from '../../../proto/gen/strato/identity/v1/identity.js'

let s: TestController
t.before(async () => {
  s = await startController()
})
t.teardown(() => s.close())
const tok = () => s.adminToken

t.test('the seed: domain create, list, set --disable, delete (disable first), with cascade', async (t) => {
  const d = await call<Domain>(s.clients.domains, 'createDomain', { name: 'testdomain', description: 'from the seed' }, tok())
  t.match(d, { name: 'testdomain', enabled: true, description: 'from the seed' })
  t.match(d.id, /^[0-9a-f]{32}$/)
  const list = await call<ListDomainsResponse>(s.clients.domains, 'listDomains', {}, tok())
  t.same(list.domains.map((x) => x.name), ['Default', 'testdomain'])

  const p = await call<Project>(s.clients.projects, 'createProject', { name: 'testproject', domainId: d.id }, tok())
  t.equal(p.domainId, d.id)
  const u = await call<User>(s.clients.users, 'createUser', { name: 'tester', domainId: d.id, password: 'pw', defaultProjectId: p.id }, tok())
  const member = await call<Role>(s.clients.roles, 'getRole', { name: 'member' }, tok())
  await call(s.clients.roles, 'grantRole', { roleId: member.id, userId: u.id, projectId: p.id }, tok())
  const userToken = (await s.login('tester', 'pw', { domain: 'testdomain', project: 'testproject' })).token

  const refused = await failure(call(s.clients.domains, 'deleteDomain', { id: d.id }, tok()))
  t.equal(refused.code, status.FAILED_PRECONDITION, 'deleting an enabled domain is refused')
  t.match(refused.details, /disable it first/)
  t.equal((await call<Domain>(s.clients.domains, 'getDomain', { id: d.id }, tok())).name, 'testdomain', 'and nothing changed')
  t.equal((await call<Project>(s.clients.projects, 'getProject', { id: p.id }, tok())).name, 'testproject')

  const disabled = await call<Domain>(s.clients.domains, 'updateDomain', { id: d.id, enabled: false }, tok())
  t.equal(disabled.enabled, false)
  t.equal((await failure(call(s.clients.projects, 'getProject', { id: p.id }, userToken))).code, status.UNAUTHENTICATED, 'disabling the domain revokes its tokens')
  t.equal((await failure(s.login('tester', 'pw', { domain: 'testdomain' }))).code, status.UNAUTHENTICATED, 'users of a disabled domain cannot log in')

  await call(s.clients.domains, 'deleteDomain', { id: d.id }, tok())
  t.equal((await failure(call(s.clients.domains, 'getDomain', { id: d.id }, tok()))).code, status.NOT_FOUND)
  t.equal((await failure(call(s.clients.projects, 'getProject', { id: p.id }, tok()))).code, status.NOT_FOUND, 'its projects went with it')
  t.equal((await failure(call(s.clients.users, 'getUser', { id: u.id }, tok()))).code, status.NOT_FOUND, 'its users went with it')
  const left = await call<ListRoleAssignmentsResponse>(s.clients.roles, 'listRoleAssignments', { userId: u.id }, tok())
  t.same(left.roleAssignments, [], 'its role assignments went with it')
  const byName = await call<ListDomainsResponse>(s.clients.domains, 'listDomains', { name: 'testdomain' }, tok())
  t.same(byName.domains, [])
})

t.test('names are unique within a domain, not globally', async (t) => {
  const a = await call<Domain>(s.clients.domains, 'createDomain', { name: 'dom-a' }, tok())
  const b = await call<Domain>(s.clients.domains, 'createDomain', { name: 'dom-b' }, tok())
  const ua = await call<User>(s.clients.users, 'createUser', { name: 'same', domainId: a.id, password: 'pa' }, tok())
  const ub = await call<User>(s.clients.users, 'createUser', { name: 'same', domainId: b.id, password: 'pb' }, tok())
  t.not(ua.id, ub.id, 'the same user name in two domains is two users')
  const pa = await call<Project>(s.clients.projects, 'createProject', { name: 'proj', domainId: a.id }, tok())
  const pb = await call<Project>(s.clients.projects, 'createProject', { name: 'proj', domainId: b.id }, tok())
  t.not(pa.id, pb.id)

  const dupUser = await failure(call(s.clients.users, 'createUser', { name: 'same', domainId: a.id, password: 'x' }, tok()))
  t.equal(dupUser.code, status.ALREADY_EXISTS)
  t.match(dupUser.details, /user named 'same' already exists in domain 'dom-a'/)
  t.equal((await failure(call(s.clients.projects, 'createProject', { name: 'proj', domainId: b.id }, tok()))).code, status.ALREADY_EXISTS)
  t.equal((await failure(call(s.clients.domains, 'createDomain', { name: 'dom-a' }, tok()))).code, status.ALREADY_EXISTS)
  t.equal((await failure(call(s.clients.roles, 'createRole', { name: 'member' }, tok()))).code, status.ALREADY_EXISTS)
  await call(s.clients.projects, 'updateProject', { id: pa.id, name: 'proj' }, tok())
  // Renaming to its own name is fine; renaming onto another project of the domain is not.
  await call(s.clients.projects, 'createProject', { name: 'proj2', domainId: a.id }, tok())
  t.equal((await failure(call(s.clients.projects, 'updateProject', { id: pa.id, name: 'proj2' }, tok()))).code, status.ALREADY_EXISTS)
  t.equal((await call<Project>(s.clients.projects, 'getProject', { id: pa.id }, tok())).name, 'proj', 'a refused rename changes nothing')

  // Each user logs in with their own password in their own domain.
  t.equal((await s.login('same', 'pa', { domain: 'dom-a' })).body?.user?.id, ua.id)
  t.equal((await s.login('same', 'pb', { domain: 'dom-b' })).body?.user?.id, ub.id)
  t.equal((await failure(s.login('same', 'pb', { domain: 'dom-a' }))).code, status.UNAUTHENTICATED)

  // Lookups by name resolve within the named domain.
  t.equal((await call<User>(s.clients.users, 'getUser', { name: 'same', domainId: b.id }, tok())).id, ub.id)
  const users = await call<ListUsersResponse>(s.clients.users, 'listUsers', { name: 'same' }, tok())
  t.equal(users.users.length, 2)
  const inA = await call<ListProjectsResponse>(s.clients.projects, 'listProjects', { domainId: a.id }, tok())
  t.same(inA.projects.map((p) => p.name), ['proj', 'proj2'])
})

t.test('invalid input: INVALID_ARGUMENT naming the field, and nothing created', async (t) => {
  const before = (await call<ListDomainsResponse>(s.clients.domains, 'listDomains', {}, tok())).domains.length
  const cases: Array<[string, () => Promise<unknown>, string, RegExp]> = [
    ['empty domain name', () => call(s.clients.domains, 'createDomain', { name: '' }, tok()), 'name', /must not be empty/],
    ['blank domain name', () => call(s.clients.domains, 'createDomain', { name: '   ' }, tok()), 'name', /must not be empty/],
    ['overlong domain name', () => call(s.clients.domains, 'createDomain', { name: 'x'.repeat(65) }, tok()), 'name', /65 characters long; the limit is 64/],
    ['control characters', () => call(s.clients.domains, 'createDomain', { name: 'a\nb' }, tok()), 'name', /control characters/],
    ['overlong user name', () => call(s.clients.users, 'createUser', { name: 'u'.repeat(256), domainId: 'default' }, tok()), 'name', /limit is 255/],
    ['bad e-mail', () => call(s.clients.users, 'createUser', { name: 'mailer', domainId: 'default', email: 'not-an-address' }, tok()), 'email', /not an e-mail address/],
    ['overlong description', () => call(s.clients.projects, 'createProject', { name: 'p', domainId: 'default', description: 'd'.repeat(5000) }, tok()), 'description', /limit is 4096/],
    ['get with neither id nor name', () => call(s.clients.domains, 'getDomain', {}, tok()), 'id|name', /exactly one of id, name/],
    ['grant on both project and domain', () => call(s.clients.roles, 'grantRole', { roleId: 'r', userId: 'u', projectId: 'p', domainId: 'default' }, tok()), 'project_id|domain_id', /exactly one/],
    ['update with no id', () => call(s.clients.domains, 'updateDomain', { name: 'x' }, tok()), 'id|name', /got none/],
  ]
  for (const [what, fn, field, msg] of cases) {
    const e = await failure(fn())
    t.equal(e.code, status.INVALID_ARGUMENT, what)
    t.equal(fieldOf(e), field, `${what}: names the field`)
    t.match(e.details, msg, `${what}: says why`)
  }
  t.equal((await call<ListDomainsResponse>(s.clients.domains, 'listDomains', {}, tok())).domains.length, before, 'nothing was created')
  t.equal((await call<ListUsersResponse>(s.clients.users, 'listUsers', { name: 'mailer' }, tok())).users.length, 0)
})

t.test('unknown ids are NOT_FOUND', async (t) => {
  const missing = '0'.repeat(32)
  const cases: Array<[string, () => Promise<unknown>]> = [
    ['domain', () => call(s.clients.domains, 'getDomain', { id: missing }, tok())],
    ['domain by name', () => call(s.clients.domains, 'getDomain', { name: 'nope' }, tok())],
    ['project', () => call(s.clients.projects, 'getProject', { id: missing }, tok())],
    ['user', () => call(s.clients.users, 'getUser', { id: missing }, tok())],
    ['role', () => call(s.clients.roles, 'getRole', { id: missing }, tok())],
    ['update project', () => call(s.clients.projects, 'updateProject', { id: missing, description: 'x' }, tok())],
    ['delete user', () => call(s.clients.users, 'deleteUser', { id: missing }, tok())],
    ['project in unknown domain', () => call(s.clients.projects, 'createProject', { name: 'orphan', domainId: missing }, tok())],
    ['user with unknown default project', () => call(s.clients.users, 'createUser', { name: 'orphan', domainId: 'default', defaultProjectId: missing }, tok())],
    ['revoke a role never granted', async () => {
      const r = await call<Role>(s.clients.roles, 'getRole', { name: 'reader' }, tok())
      const u = await call<User>(s.clients.users, 'getUser', { name: 'admin', domainId: 'default' }, tok())
      return call(s.clients.roles, 'revokeRole', { roleId: r.id, userId: u.id, domainId: 'default' }, tok())
    }],
  ]
  for (const [what, fn] of cases) t.equal((await failure(fn())).code, status.NOT_FOUND, what)
})

t.test('roles: create, implied chain, effective assignments, delete revokes', async (t) => {
  const roles = await call<ListRolesResponse>(s.clients.roles, 'listRoles', {}, tok())
  const byName = Object.fromEntries(roles.roles.map((r) => [r.name, r]))
  t.same(byName.admin?.implies.map((r) => r.name), ['member'])
  t.same(byName.member?.implies.map((r) => r.name), ['reader'])

  const auditor = await call<Role>(s.clients.roles, 'createRole', { name: 'auditor', description: 'reads logs' }, tok())
  const withImp = await call<Role>(s.clients.roles, 'createImpliedRole', { priorRoleId: auditor.id, impliedRoleId: byName.reader!.id }, tok())
  t.same(withImp.implies.map((r) => r.name), ['reader'])
  const cycle = await failure(call(s.clients.roles, 'createImpliedRole', { priorRoleId: byName.reader!.id, impliedRoleId: byName.admin!.id }, tok()))
  t.equal(cycle.code, status.INVALID_ARGUMENT)
  t.match(cycle.details, /cycle/)

  const p = await call<Project>(s.clients.projects, 'createProject', { name: 'audit', domainId: 'default' }, tok())
  const u = await call<User>(s.clients.users, 'createUser', { name: 'aud', domainId: 'default', password: 'apw' }, tok())
  await call(s.clients.roles, 'grantRole', { roleId: auditor.id, userId: u.id, projectId: p.id }, tok())
  await call(s.clients.roles, 'grantRole', { roleId: auditor.id, userId: u.id, projectId: p.id }, tok()) // idempotent, as Keystone's PUT
  const direct = await call<ListRoleAssignmentsResponse>(s.clients.roles, 'listRoleAssignments', { userId: u.id }, tok())
  t.same(direct.roleAssignments.map((a) => a.role?.name), ['auditor'])
  t.equal(direct.roleAssignments[0]?.project?.name, 'audit')
  t.equal(direct.roleAssignments[0]?.user?.domain?.name, 'Default')
  const eff = await call<ListRoleAssignmentsResponse>(s.clients.roles, 'listRoleAssignments', { userId: u.id, effective: true }, tok())
  t.same(eff.roleAssignments.map((a) => a.role?.name).sort(), ['auditor', 'reader'])

  const audTok = (await s.login('aud', 'apw', { project: 'audit' })).token
  t.same((await s.login('aud', 'apw', { project: 'audit' })).body?.roles.map((r) => r.name).sort(), ['auditor', 'reader'])
  await call(s.clients.roles, 'deleteRole', { id: auditor.id }, tok())
  t.equal((await failure(call(s.clients.projects, 'getProject', { id: p.id }, audTok))).code, status.UNAUTHENTICATED, 'deleting a role revokes tokens that carry it')
  t.same((await call<ListRoleAssignmentsResponse>(s.clients.roles, 'listRoleAssignments', { userId: u.id }, tok())).roleAssignments, [])
  const dflt = await failure(call(s.clients.roles, 'deleteRole', { id: byName.member!.id }, tok()))
  t.equal(dflt.code, status.FAILED_PRECONDITION, 'default roles cannot be deleted')
})

t.test('the cloud-admin project and its domain cannot be disabled or deleted', async (t) => {
  const admin = await call<Project>(s.clients.projects, 'getProject', { name: 'admin', domainId: 'default' }, tok())
  t.equal((await failure(call(s.clients.projects, 'updateProject', { id: admin.id, enabled: false }, tok()))).code, status.FAILED_PRECONDITION)
  t.equal((await failure(call(s.clients.projects, 'deleteProject', { id: admin.id }, tok()))).code, status.FAILED_PRECONDITION)
  t.equal((await failure(call(s.clients.domains, 'updateDomain', { id: 'default', enabled: false }, tok()))).code, status.FAILED_PRECONDITION)
  t.ok((await call<Domain>(s.clients.domains, 'getDomain', { id: 'default' }, tok())).enabled)
})

t.test('project delete removes its assignments and clears default projects', async (t) => {
  const p = await call<Project>(s.clients.projects, 'createProject', { name: 'short-lived', domainId: 'default' }, tok())
  const u = await call<User>(s.clients.users, 'createUser', { name: 'sl-user', domainId: 'default', password: 'pw', defaultProjectId: p.id }, tok())
  const member = await call<Role>(s.clients.roles, 'getRole', { name: 'member' }, tok())
  await call(s.clients.roles, 'grantRole', { roleId: member.id, userId: u.id, projectId: p.id }, tok())
  const userTok = (await s.login('sl-user', 'pw')).token
  await call(s.clients.projects, 'deleteProject', { id: p.id }, tok())
  t.same((await call<ListRoleAssignmentsResponse>(s.clients.roles, 'listRoleAssignments', { userId: u.id }, tok())).roleAssignments, [])
  t.equal((await call<User>(s.clients.users, 'getUser', { id: u.id }, tok())).defaultProjectId, '')
  t.equal((await failure(call(s.clients.users, 'getUser', { id: u.id }, userTok))).code, status.UNAUTHENTICATED, 'tokens on the deleted project are revoked')
})

t.test('passwords are never returned', async (t) => {
  const u = await call<User>(s.clients.users, 'createUser', { name: 'secretive', domainId: 'default', password: 'hunter2-xyz' }, tok())
  t.notOk(JSON.stringify(u).includes('hunter2'))
  t.notOk('password' in u)
  const row = await s.controller.db.selectFrom('users').select('password_hash').where('id', '=', u.id).executeTakeFirstOrThrow()
  t.match(row.password_hash, /^scrypt\$/, 'stored as an scrypt hash')
  t.notOk(row.password_hash.includes('hunter2'))
})
