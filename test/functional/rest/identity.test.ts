/** Identity v3 over REST (controller/rest/identity.ts) in Keystone's JSON: tokens, resources, grants, assignments, the catalog, errors. */
import t from 'tap'
import { startController, type TestController } from '../../helpers/controller.js'
import { call as grpc } from '../../helpers/grpc.js'
import type { TokenBody } from '../../../proto/gen/strato/identity/v1/identity.js'

type Json = any // eslint-disable-line @typescript-eslint/no-explicit-any

async function rest(s: TestController) {
  const base = `${s.controller.rest!.origin}/identity/v3`
  const call = async (method: string, path: string, opts: { token?: string | null; body?: unknown; headers?: Record<string, string> } = {}) => {
    const headers: Record<string, string> = { ...opts.headers }
    if (opts.token !== null) headers['x-auth-token'] = opts.token ?? s.adminToken
    if (opts.body !== undefined) headers['content-type'] = 'application/json'
    const r = await fetch(`${base}${path}`, { method, headers, ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}) })
    const text = await r.text()
    return { status: r.status, headers: r.headers, body: (text ? JSON.parse(text) : undefined) as Json }
  }
  const password = (name: string, pw: string, domain = 'Default', scope?: unknown) => ({
    auth: { identity: { methods: ['password'], password: { user: { name, domain: { name: domain }, password: pw } } }, ...(scope !== undefined ? { scope } : {}) },
  })
  return { base, call, password }
}

t.test('tokens: issue (project, domain, unscoped, by token), validate, HEAD, revoke, in Keystone\'s shape', async (t) => {
  const s = await startController()
  t.teardown(() => s.close())
  const { base, call, password } = await rest(s)
  const pw = s.openrc.OS_PASSWORD!

  let r = await call('POST', '/auth/tokens', { token: null, body: password('admin', pw, 'Default', { project: { name: 'admin', domain: { name: 'Default' } } }) })
  t.equal(r.status, 201)
  const token = r.headers.get('x-subject-token')!
  t.ok(token, 'X-Subject-Token')
  const tok = r.body.token
  t.same(Object.keys(tok).sort(), ['audit_ids', 'catalog', 'expires_at', 'is_admin_project', 'is_domain', 'issued_at', 'methods', 'project', 'roles', 'user'])
  t.same(tok.methods, ['password'])
  t.match(tok.user, { name: 'admin', domain: { id: 'default', name: 'Default' }, password_expires_at: null })
  t.match(tok.project, { name: 'admin', domain: { id: 'default', name: 'Default' } })
  t.equal(tok.is_domain, false)
  t.match(tok.expires_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'microseconds and Z, as Keystone')
  t.same(tok.roles.map((x: Json) => x.name).sort(), ['admin', 'member', 'reader'], 'implied roles expanded')
  const identity = tok.catalog.find((e: Json) => e.type === 'identity')
  t.same(Object.keys(identity).sort(), ['endpoints', 'id', 'name', 'type'])
  t.same(identity.endpoints.find((e: Json) => e.interface === 'public'), {
    id: 'identity-public', interface: 'public', region_id: 'RegionOne', region: 'RegionOne', url: `${s.controller.rest!.origin}/identity`,
  })
  t.ok(tok.catalog.some((e: Json) => e.type === 'compute'), 'every service of the REST catalog')

  // The user by id (no domain needed), the project by id.
  r = await call('POST', '/auth/tokens?nocatalog', { token: null, body: { auth: { identity: { methods: ['password'], password: { user: { id: tok.user.id, password: pw } } }, scope: { project: { id: tok.project.id } } } } })
  t.equal(r.status, 201)
  t.equal(r.body.token.project.id, tok.project.id)
  t.notOk('catalog' in r.body.token, '?nocatalog')

  r = await call('POST', '/auth/tokens', { token: null, body: password('admin', pw, 'Default', 'unscoped') })
  t.equal(r.status, 201)
  t.notOk(r.body.token.project || r.body.token.roles || r.body.token.catalog, 'unscoped: no project, roles or catalog')
  const unscoped = r.headers.get('x-subject-token')!

  // Re-scope: the token method, the same audit chain.
  r = await call('POST', '/auth/tokens', { token: null, body: { auth: { identity: { methods: ['token'], token: { id: unscoped } }, scope: { project: { name: 'admin', domain: { id: 'default' } } } } } })
  t.equal(r.status, 201)
  t.same(r.body.token.methods, ['token', 'password'], 'the methods of the proof stay (Tempest\'s test_rescope_token)')
  t.equal(r.body.token.audit_ids.length, 2, 'its own audit id and the chain\'s')

  r = await call('POST', '/auth/tokens', { token: null, body: password('admin', 'wrong', 'Default') })
  t.equal(r.status, 401)
  t.match(r.body, { error: { code: 401, title: 'Unauthorized', message: /authentication failed/ } })
  r = await call('POST', '/auth/tokens', { token: null, body: { auth: {} } })
  t.equal(r.status, 400)
  t.match(r.body, { error: { code: 400, message: /auth.identity/ } })

  // One token for both APIs: REST's works on gRPC (and every REST call here uses the one gRPC issued).
  const overGrpc = await grpc<TokenBody>(s.clients.tokens, 'validateToken', {}, token)
  t.equal(overGrpc.project?.name, 'admin', 'a REST token validates over gRPC')

  // Validate, HEAD, revoke.
  r = await call('GET', '/auth/tokens', { headers: { 'x-subject-token': token } })
  t.equal(r.status, 200)
  t.equal(r.headers.get('x-subject-token'), token)
  t.equal(r.body.token.project.name, 'admin')
  t.equal((await fetch(`${base}/auth/tokens`, { method: 'HEAD', headers: { 'x-auth-token': s.adminToken, 'x-subject-token': token } })).status, 200)
  r = await call('GET', '/auth/catalog', { token })
  t.same(r.body.catalog.map((e: Json) => e.type).sort(), ['block-storage', 'compute', 'identity', 'image', 'network', 'volumev3'], 'the services REST serves')
  r = await call('GET', '/auth/projects', { token })
  t.same(r.body.projects.map((p: Json) => p.name), ['admin'])
  r = await call('DELETE', '/auth/tokens', { headers: { 'x-subject-token': token } })
  t.equal(r.status, 204)
  r = await call('GET', '/auth/tokens', { headers: { 'x-subject-token': token } })
  t.equal(r.status, 404, 'a revoked subject is not found')
  r = await call('GET', '/domains', { token })
  t.equal(r.status, 401, 'a revoked token is refused')
  r = await call('GET', '/auth/tokens', { headers: { 'x-subject-token': 'garbage' } })
  t.equal(r.status, 404)
})

t.test('domains, projects, users, roles, grants and role assignments', async (t) => {
  const s = await startController()
  t.teardown(() => s.close())
  const { base, call, password } = await rest(s)

  let r = await call('POST', '/domains', { body: { domain: { name: 'testdomain', description: 'd' } } })
  t.equal(r.status, 201)
  const domain = r.body.domain
  t.same(domain, { id: domain.id, name: 'testdomain', description: 'd', enabled: true, tags: [], options: {}, links: { self: `${base}/domains/${domain.id}` } })
  r = await call('POST', '/domains', { body: { domain: { name: 'testdomain' } } })
  t.equal(r.status, 409)
  r = await call('GET', '/domains/testdomain')
  t.equal(r.status, 404, 'a name is not an id (the client then lists with ?name=)')
  r = await call('GET', '/domains?name=testdomain')
  t.same(r.body.domains.map((x: Json) => x.id), [domain.id])
  t.same(r.body.links, { self: `${base}/domains?name=testdomain`, previous: null, next: null })

  r = await call('POST', '/projects', { body: { project: { name: 'testproject', domain_id: domain.id, tags: [], options: {} } } })
  t.equal(r.status, 201)
  const project = r.body.project
  t.match(project, { name: 'testproject', domain_id: domain.id, parent_id: domain.id, is_domain: false, enabled: true, tags: [] })
  r = await call('POST', '/projects', { body: { project: { name: 'child', domain_id: domain.id, parent_id: project.id } } })
  t.equal(r.status, 400, 'no hierarchy')
  t.match(r.body.error.message, /parent_id/)
  r = await call('GET', `/projects?domain_id=${domain.id}`)
  t.same(r.body.projects.map((p: Json) => p.name), ['testproject'])

  r = await call('POST', '/users', { body: { user: { name: 'alice', domain_id: domain.id, password: 'secret-1', email: 'alice@example.com' } } })
  t.equal(r.status, 201)
  const user = r.body.user
  t.same(user, { id: user.id, name: 'alice', domain_id: domain.id, enabled: true, password_expires_at: null, options: {}, email: 'alice@example.com', links: { self: `${base}/users/${user.id}` } })
  r = await call('POST', '/users', { body: { user: { name: 7 } } })
  t.equal(r.status, 400)
  t.match(r.body.error.message, /user.name must be a string/)

  r = await call('GET', '/roles?name=member')
  const member = r.body.roles[0]
  t.match(member, { name: 'member', domain_id: null })
  r = await call('PUT', `/projects/${project.id}/users/${user.id}/roles/${member.id}`)
  t.equal(r.status, 204)
  t.equal((await call('HEAD', `/projects/${project.id}/users/${user.id}/roles/${member.id}`)).status, 204)
  r = await call('GET', `/projects/${project.id}/users/${user.id}/roles`)
  t.same(r.body.roles.map((x: Json) => x.name), ['member'])
  r = await call('GET', `/role_assignments?user.id=${user.id}&include_names=True`)
  t.same(r.body.role_assignments, [{
    role: { id: member.id, name: 'member' },
    user: { id: user.id, name: 'alice', domain: { id: domain.id, name: 'testdomain' } },
    scope: { project: { id: project.id, name: 'testproject', domain: { id: domain.id, name: 'testdomain' } } },
    links: { assignment: `${base}/projects/${project.id}/users/${user.id}/roles/${member.id}` },
  }])
  r = await call('GET', `/role_assignments?scope.project.id=${project.id}&effective`)
  t.same(r.body.role_assignments.map((a: Json) => a.role.id).length, 2, 'effective: member and the reader it implies')
  r = await call('GET', `/users/${user.id}/projects`)
  t.same(r.body.projects.map((p: Json) => p.id), [project.id])

  // Alice, a member: her own token, her own password; the policy table refuses the rest.
  r = await call('POST', '/auth/tokens', { token: null, body: password('alice', 'secret-1', 'testdomain', { project: { name: 'testproject', domain: { name: 'testdomain' } } }) })
  t.equal(r.status, 201)
  const alice = r.headers.get('x-subject-token')!
  t.same(r.body.token.roles.map((x: Json) => x.name).sort(), ['member', 'reader'])
  r = await call('POST', '/domains', { token: alice, body: { domain: { name: 'nope' } } })
  t.equal(r.status, 403)
  t.match(r.body, { error: { code: 403, title: 'Forbidden', message: /CreateDomain requires one of: cloud_admin/ } })
  for (const what of ['users', 'projects', 'domains']) {
    r = await call('GET', `/${what}`, { token: alice })
    t.equal(r.status, 403, `a member may not list ${what} (Keystone's rule; Tempest's test_list_projects_by_unauthorized_user)`)
  }
  r = await call('GET', '/auth/projects', { token: alice })
  t.same(r.body.projects.map((p: Json) => p.name), ['testproject'], 'her own projects')
  r = await call('POST', `/users/${user.id}/password`, { token: null, body: { user: { original_password: 'wrong', password: 'secret-2' } } })
  t.equal(r.status, 401)
  r = await call('POST', `/users/${user.id}/password`, { token: null, body: { user: { original_password: 'secret-1', password: 'secret-2' } } })
  t.equal(r.status, 204)
  t.equal((await call('GET', '/auth/projects', { token: alice })).status, 401, 'a password change revokes the user\'s tokens')
  t.equal((await call('POST', '/auth/tokens', { token: null, body: password('alice', 'secret-2', 'testdomain') })).status, 201)

  // A domain role: a domain-scoped token, and the domain in /auth/domains.
  const admin = (await call('GET', '/roles?name=admin')).body.roles[0]
  t.equal((await call('PUT', `/domains/${domain.id}/users/${user.id}/roles/${admin.id}`)).status, 204)
  r = await call('POST', '/auth/tokens', { token: null, body: password('alice', 'secret-2', 'testdomain', { domain: { name: 'testdomain' } }) })
  t.equal(r.status, 201)
  t.same(r.body.token.domain, { id: domain.id, name: 'testdomain' })
  t.notOk('project' in r.body.token)
  t.ok(r.body.token.catalog.length > 0, 'a domain-scoped token carries the catalog')
  const aliceDomain = r.headers.get('x-subject-token')!
  r = await call('GET', '/auth/domains', { token: aliceDomain })
  t.same(r.body.domains.map((x: Json) => x.name), ['testdomain'])
  r = await call('GET', '/users', { token: aliceDomain })
  t.same(r.body.users.map((u: Json) => u.name), ['alice'], 'a domain admin lists the users of her domain')
  t.equal((await call('DELETE', `/domains/${domain.id}/users/${user.id}/roles/${admin.id}`)).status, 204)

  r = await call('PATCH', `/users/${user.id}`, { body: { user: { enabled: false } } })
  t.equal(r.body.user.enabled, false)
  t.equal((await call('POST', '/auth/tokens', { token: null, body: password('alice', 'secret-2', 'testdomain') })).status, 401, 'a disabled user cannot log in')

  // Implied roles.
  r = await call('POST', '/roles', { body: { role: { name: 'auditor' } } })
  const auditor = r.body.role
  r = await call('PUT', `/roles/${auditor.id}/implies/${member.id}`)
  t.equal(r.status, 201)
  t.match(r.body.role_inference, { prior_role: { id: auditor.id, name: 'auditor' }, implies: { id: member.id, name: 'member' } })
  r = await call('GET', '/role_inferences')
  t.ok(r.body.role_inferences.some((x: Json) => x.prior_role.id === auditor.id))
  t.equal((await call('DELETE', `/roles/${auditor.id}/implies/${member.id}`)).status, 204)
  t.equal((await call('GET', `/roles/${auditor.id}/implies/${member.id}`)).status, 404)

  // Revoke, then the domain walkthrough: delete refused while enabled (Keystone's 403 and words), disable, delete.
  t.equal((await call('DELETE', `/projects/${project.id}/users/${user.id}/roles/${member.id}`)).status, 204)
  t.equal((await call('HEAD', `/projects/${project.id}/users/${user.id}/roles/${member.id}`)).status, 404)
  r = await call('DELETE', `/domains/${domain.id}`)
  t.equal(r.status, 403)
  t.same(r.body, { error: { code: 403, title: 'Forbidden', message: 'Cannot delete a domain that is enabled, please disable it first.' } })
  r = await call('PATCH', `/domains/${domain.id}`, { body: { domain: { enabled: false } } })
  t.equal(r.body.domain.enabled, false)
  t.equal((await call('DELETE', `/domains/${domain.id}`)).status, 204)
  t.equal((await call('GET', `/projects/${project.id}`)).status, 404, 'its projects went with it')
  t.equal((await call('DELETE', '/domains/default')).status, 403, 'the admin domain')
})

t.test('regions, services and endpoints: the REST catalog, read-only', async (t) => {
  const s = await startController()
  t.teardown(() => s.close())
  const { call } = await rest(s)
  let r = await call('GET', '/services?type=compute')
  t.match(r.body.services, [{ id: 'compute', type: 'compute', name: 'nova', enabled: true }])
  r = await call('GET', '/endpoints?interface=public&service_id=identity')
  t.match(r.body.endpoints, [{ id: 'identity-public', interface: 'public', region_id: 'RegionOne', service_id: 'identity', url: `${s.controller.rest!.origin}/identity` }])
  r = await call('GET', '/regions/RegionOne')
  t.match(r.body.region, { id: 'RegionOne', parent_region_id: null })
  t.equal((await call('GET', '/endpoints/nope')).status, 404)
  t.equal((await call('POST', '/endpoints', { body: { endpoint: {} } })).status, 405, 'read-only')
  t.same((await call('GET', '/groups')).body.groups, [], 'no groups')
  t.equal((await call('GET', '/groups/g1')).status, 404)
})
