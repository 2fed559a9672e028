// Policy through the real gRPC server: cloud admin, domain admins within their
// domain, members and readers within their project, and no crossing domains.
import t from 'tap'
import { startController, type TestController } from '../../helpers/controller.js'
import { call, failure, status } from '../../helpers/grpc.js'
import type { TestContext } from '../../helpers/tap.js'
import type {
  Domain, ListDomainsResponse, ListProjectsResponse, ListRoleAssignmentsResponse, ListUsersResponse, Project, Role, User,
} from '../../../proto/gen/strato/identity/v1/identity.js'

let s: TestController
const ids: Record<string, string> = {}
const tokens: Record<string, string> = {}

t.before(async () => {
  s = await startController()
  const admin = s.adminToken
  const role = async (name: string) => (await call<Role>(s.clients.roles, 'getRole', { name }, admin)).id
  const [adminRole, memberRole, readerRole] = [await role('admin'), await role('member'), await role('reader')]
  for (const dn of ['acme', 'globex']) {
    const d = await call<Domain>(s.clients.domains, 'createDomain', { name: dn }, admin)
    ids[dn] = d.id
    const p = await call<Project>(s.clients.projects, 'createProject', { name: `${dn}-web`, domainId: d.id }, admin)
    ids[`${dn}-web`] = p.id
    for (const [who, roleId, on] of [
      ['dadmin', adminRole, { domainId: d.id }],
      ['member', memberRole, { projectId: p.id }],
      ['reader', readerRole, { projectId: p.id }],
    ] as const) {
      const u = await call<User>(s.clients.users, 'createUser', { name: `${dn}-${who}`, domainId: d.id, password: 'pw' }, admin)
      ids[`${dn}-${who}`] = u.id
      await call(s.clients.roles, 'grantRole', { roleId, userId: u.id, ...on }, admin)
    }
    tokens[`${dn}-dadmin`] = (await s.login(`${dn}-dadmin`, 'pw', { domain: dn, scopeDomain: dn })).token
    tokens[`${dn}-member`] = (await s.login(`${dn}-member`, 'pw', { domain: dn, project: `${dn}-web` })).token
    tokens[`${dn}-reader`] = (await s.login(`${dn}-reader`, 'pw', { domain: dn, project: `${dn}-web` })).token
  }
  // An admin of an ordinary project is not a cloud admin.
  const u = await call<User>(s.clients.users, 'createUser', { name: 'proj-admin', domainId: ids.acme!, password: 'pw' }, admin)
  await call(s.clients.roles, 'grantRole', { roleId: adminRole, userId: u.id, projectId: ids['acme-web']! }, admin)
  tokens['acme-projadmin'] = (await s.login('proj-admin', 'pw', { domain: 'acme', project: 'acme-web' })).token
})
t.teardown(() => s.close())

const denied = async (t: TestContext, p: Promise<unknown>, what: string) => {
  const e = await failure(p)
  t.equal(e.code, status.PERMISSION_DENIED, what)
  return e
}

t.test('only cloud admins manage domains and roles', async (t) => {
  for (const who of ['acme-dadmin', 'acme-member', 'acme-reader', 'acme-projadmin']) {
    const e = await denied(t, call(s.clients.domains, 'createDomain', { name: `by-${who}` }, tokens[who]), `${who} cannot create a domain`)
    t.match(e.details, /requires one of: cloud_admin/)
    await denied(t, call(s.clients.domains, 'updateDomain', { id: ids.globex, enabled: false }, tokens[who]), `${who} cannot disable a domain`)
    await denied(t, call(s.clients.roles, 'createRole', { name: `r-${who}` }, tokens[who]), `${who} cannot create a role`)
  }
  const list = await call<ListDomainsResponse>(s.clients.domains, 'listDomains', {}, s.adminToken)
  t.same(list.domains.map((d) => d.name).sort(), ['Default', 'acme', 'globex'], 'nothing was created by the refused calls')
})

t.test('a domain admin manages projects, users and grants inside their domain only', async (t) => {
  const tok = tokens['acme-dadmin']
  const p = await call<Project>(s.clients.projects, 'createProject', { name: 'acme-new' }, tok)
  t.equal(p.domainId, ids.acme, 'defaults to the domain of the token')
  const u = await call<User>(s.clients.users, 'createUser', { name: 'acme-new-user', password: 'pw' }, tok)
  t.equal(u.domainId, ids.acme)
  const member = await call<Role>(s.clients.roles, 'getRole', { name: 'member' }, tok)
  await call(s.clients.roles, 'grantRole', { roleId: member.id, userId: u.id, projectId: p.id }, tok)
  await call(s.clients.users, 'updateUser', { id: u.id, description: 'managed by the domain admin' }, tok)

  await denied(t, call(s.clients.projects, 'createProject', { name: 'sneaky', domainId: ids.globex }, tok), 'no projects in another domain')
  await denied(t, call(s.clients.users, 'createUser', { name: 'sneaky', domainId: ids.globex, password: 'x' }, tok), 'no users in another domain')
  await denied(t, call(s.clients.users, 'updateUser', { id: ids['globex-member'], enabled: false }, tok), 'cannot disable another domain\'s user')
  await denied(t, call(s.clients.projects, 'deleteProject', { id: ids['globex-web'] }, tok), 'cannot delete another domain\'s project')
  await denied(t, call(s.clients.roles, 'grantRole', { roleId: member.id, userId: ids['globex-member'], projectId: p.id }, tok), 'cannot grant to a user of another domain')
  await denied(t, call(s.clients.roles, 'grantRole', { roleId: member.id, userId: u.id, projectId: ids['globex-web'] }, tok), 'cannot grant on a project of another domain')
  await denied(t, call(s.clients.projects, 'getProject', { id: ids['globex-web'] }, tok), 'cannot even read another domain\'s project')

  const projects = await call<ListProjectsResponse>(s.clients.projects, 'listProjects', {}, tok)
  t.same(projects.projects.map((x) => x.name).sort(), ['acme-new', 'acme-web'], 'lists only its domain\'s projects')
  const users = await call<ListUsersResponse>(s.clients.users, 'listUsers', {}, tok)
  t.ok(users.users.length > 0 && users.users.every((x) => x.domainId === ids.acme), 'lists only its domain\'s users')
  const spy = await call<ListUsersResponse>(s.clients.users, 'listUsers', { domainId: ids.globex }, tok)
  t.same(spy.users, [], 'asking for another domain\'s users returns nothing')
  const assignments = await call<ListRoleAssignmentsResponse>(s.clients.roles, 'listRoleAssignments', {}, tok)
  t.ok(assignments.roleAssignments.every((a) => a.user?.domain?.id === ids.acme))
  const domains = await call<ListDomainsResponse>(s.clients.domains, 'listDomains', {}, tok)
  t.same(domains.domains.map((d) => d.name), ['acme'])
  await denied(t, call(s.clients.domains, 'getDomain', { id: ids.globex }, tok), 'another domain is invisible')
  t.equal((await call<Domain>(s.clients.domains, 'getDomain', { id: ids.acme }, tok)).name, 'acme')
})

t.test('members and readers: read their own project, change nothing', async (t) => {
  for (const who of ['acme-member', 'acme-reader']) {
    const tok = tokens[who]
    t.equal((await call<Project>(s.clients.projects, 'getProject', { id: ids['acme-web'] }, tok)).name, 'acme-web', `${who} reads its project`)
    await denied(t, call(s.clients.projects, 'getProject', { id: ids['globex-web'] }, tok), `${who} cannot read another project`)
    await denied(t, call(s.clients.projects, 'updateProject', { id: ids['acme-web'], description: 'x' }, tok), `${who} cannot change its project`)
    await denied(t, call(s.clients.users, 'createUser', { name: `${who}-child`, password: 'x' }, tok), `${who} cannot create users`)
    await denied(t, call(s.clients.users, 'getUser', { id: ids['acme-dadmin'] }, tok), `${who} cannot read other users`)
    t.equal((await call<User>(s.clients.users, 'getUser', { id: ids[who] }, tok)).name, who, `${who} reads itself`)
    const users = await call<ListUsersResponse>(s.clients.users, 'listUsers', {}, tok)
    t.same(users.users.map((u) => u.name), [who], `${who} lists only itself`)
    const projects = await call<ListProjectsResponse>(s.clients.projects, 'listProjects', {}, tok)
    t.same(projects.projects.map((p) => p.name), ['acme-web'], `${who} lists only its projects`)
    const mine = await call<ListRoleAssignmentsResponse>(s.clients.roles, 'listRoleAssignments', {}, tok)
    t.ok(mine.roleAssignments.every((a) => a.user?.id === ids[who]), `${who} sees only its own assignments`)
  }
  const e = await denied(t, call(s.clients.projects, 'deleteProject', { id: ids['acme-web'] }, tokens['acme-projadmin']), 'a project admin is not a domain admin')
  t.match(e.details, /user 'proj-admin', project 'acme-web', roles admin, member, reader/)
  t.equal((await call<Project>(s.clients.projects, 'getProject', { id: ids['acme-web'] }, s.adminToken)).enabled, true, 'refused calls changed nothing')
})

t.test('cloud admin sees and manages everything', async (t) => {
  const all = await call<ListProjectsResponse>(s.clients.projects, 'listProjects', {}, s.adminToken)
  t.ok(all.projects.some((p) => p.domainId === ids.acme) && all.projects.some((p) => p.domainId === ids.globex))
  await call(s.clients.users, 'updateUser', { id: ids['globex-reader'], description: 'touched by the cloud admin' }, s.adminToken)
  t.equal((await call<User>(s.clients.users, 'getUser', { id: ids['globex-reader'] }, s.adminToken)).description, 'touched by the cloud admin')
})
