/** The REST runner (controller/rest/http.ts): routing, auth, policy, body limits and each service's error body. */
import t from 'tap'
import { pino } from 'pino'
import { RestServer, bodyObject, type RestService } from '../../../../controller/rest/http.js'
import { Policy } from '../../../../controller/identity/policy.js'
import type { AuthContext } from '../../../../controller/identity/model.js'
import { NotFound, ResourceExhausted, Unauthenticated } from '../../../../proto/errors.js'

const ctx = (roles: string[]): AuthContext => ({
  token: 'x', claims: { user: { id: 'u1', name: 'alice' } } as AuthContext['claims'], userId: 'u1', roles: new Set(roles),
  projectId: 'p1', domainId: undefined, actingDomainId: 'default', isCloudAdmin: roles.includes('admin'),
}) as AuthContext

async function serve(services: RestService[]) {
  const policy = new Policy({ 'test.Things/Get': { allow: ['authenticated'] }, 'test.Things/Create': { allow: ['cloud_admin'] } })
  const rest = new RestServer({
    policy,
    authenticate: (tok) => {
      if (tok === 'member') return ctx(['member'])
      if (tok === 'admin') return ctx(['admin'])
      throw new Unauthenticated('the token is not valid')
    },
    lookup: {} as never,
    log: pino({ level: 'silent' }),
    track: (p) => p,
  })
  for (const s of services) rest.add(s)
  await rest.listen('127.0.0.1', 0, null)
  t.teardown(() => rest.close())
  return rest
}

const created: unknown[] = []
const compute: RestService = {
  type: 'compute',
  prefix: '/compute',
  headers: () => ({ 'openstack-api-version': 'compute 2.1' }),
  routes: [
    { method: 'GET', path: '/v2.1/things/:id', policy: 'test.Things/Get', handler: async (req) => {
      if (req.params.id !== 'one') throw new NotFound(`thing ${req.params.id} could not be found`)
      return { body: { thing: { id: 'one', by: req.auth!.userId } } }
    } },
    { method: 'POST', path: '/v2.1/things', policy: 'test.Things/Create', handler: async (req) => {
      const thing = await bodyObject(req, 'thing')
      created.push(thing)
      return { status: 202, body: { thing } }
    } },
    { method: 'POST', path: '/v2.1/quota', policy: 'public', handler: async () => { throw new ResourceExhausted('quota exceeded for instances') } },
  ],
}
const network: RestService = { type: 'network', prefix: '/network', routes: [
  { method: 'GET', path: '/v2.0/networks/:id', policy: 'test.Things/Get', handler: async (req) => { throw Object.assign(new NotFound(`network ${req.params.id} could not be found`), { neutronType: 'NetworkNotFound' }) } },
  { method: 'POST', path: '/v2.0/quota', policy: 'public', handler: async () => { throw new ResourceExhausted('quota exceeded for network') } },
] }

t.test('routes, request ids, auth, policy and each service\'s error body', async (t) => {
  const rest = await serve([compute, network])
  const u = (p: string) => `${rest.origin}${p}`

  let r = await fetch(u('/compute/v2.1/things/one'), { headers: { 'x-auth-token': 'member' } })
  t.equal(r.status, 200)
  t.same(await r.json(), { thing: { id: 'one', by: 'u1' } })
  t.match(r.headers.get('x-openstack-request-id'), /^req-[0-9a-f-]{36}$/)
  t.equal(r.headers.get('x-compute-request-id'), r.headers.get('x-openstack-request-id'), 'compute answers carry the same id twice')
  t.equal(r.headers.get('openstack-api-version'), 'compute 2.1', 'the service headers')

  r = await fetch(u('/compute/v2.1/things/two'), { headers: { 'x-auth-token': 'member' } })
  t.equal(r.status, 404)
  t.same(await r.json(), { itemNotFound: { code: 404, message: 'thing two could not be found' } })

  r = await fetch(u('/compute/v2.1/things/one'))
  t.equal(r.status, 401, 'no token')
  t.match(await r.json(), { unauthorized: { code: 401, message: /X-Auth-Token/ } })
  t.match(r.headers.get('www-authenticate'), /^Keystone uri=/)
  r = await fetch(u('/compute/v2.1/things/one'), { headers: { 'x-auth-token': 'forged' } })
  t.equal(r.status, 401, 'a bad token')

  r = await fetch(u('/compute/v2.1/things'), { method: 'POST', headers: { 'x-auth-token': 'member', 'content-type': 'application/json' }, body: '{"thing": {"a": 1}}' })
  t.equal(r.status, 403, 'the policy table decides')
  t.match(await r.json(), { forbidden: { code: 403, message: /test.Things\/Create requires one of: cloud_admin/ } })
  t.same(created, [], 'nothing was done')

  r = await fetch(u('/compute/v2.1/things'), { method: 'POST', headers: { 'x-auth-token': 'admin', 'content-type': 'application/json' }, body: '{"thing": {"a": 1}}' })
  t.equal(r.status, 202)
  t.same(created, [{ a: 1 }])

  r = await fetch(u('/compute/v2.1/things'), { method: 'PUT', headers: { 'x-auth-token': 'admin' } })
  t.equal(r.status, 405)
  t.equal(r.headers.get('allow'), 'POST')

  r = await fetch(u('/compute/v2.1/nothing'), { headers: { 'x-auth-token': 'admin' } })
  t.equal(r.status, 404)
  r = await fetch(u('/compute/v2.1/things/one/'), { headers: { 'x-auth-token': 'admin' } })
  t.equal(r.status, 404, 'a trailing slash is no resource')

  // Refused before the body is read (no token): the connection is closed, not drained.
  const big = new ReadableStream({ start(c) { for (let i = 0; i < 64; i++) c.enqueue(new Uint8Array(65536)); c.close() } })
  r = await fetch(u('/compute/v2.1/things'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: big, duplex: 'half' } as RequestInit).catch((e) => e)
  if (r instanceof Response) {
    t.equal(r.status, 401)
    t.equal(r.headers.get('connection'), 'close', 'the unread body is not drained')
  } else t.pass('the server closed the connection on the unread body')

  r = await fetch(u('/compute/v2.1/quota'), { method: 'POST' })
  t.equal(r.status, 403, "Nova's over-quota is 403")
  r = await fetch(u('/network/v2.0/quota'), { method: 'POST' })
  t.equal(r.status, 409, "Neutron's over-quota is 409")
  t.match(await r.json(), { NeutronError: { type: 'OverQuota', message: 'quota exceeded for network', detail: '' } })
  r = await fetch(u('/network/v2.0/networks/n1'), { headers: { 'x-auth-token': 'member' } })
  t.same(await r.json(), { NeutronError: { type: 'NetworkNotFound', message: 'network n1 could not be found', detail: '' } })
})

t.test('bodies: content type, size limit, malformed JSON, the required key', async (t) => {
  const rest = await serve([compute])
  const post = (body: string | Uint8Array, headers: Record<string, string> = {}) =>
    fetch(`${rest.origin}/compute/v2.1/things`, { method: 'POST', headers: { 'x-auth-token': 'admin', 'content-type': 'application/json', ...headers }, body })
  const before = created.length

  let r = await post('{"thing": {}}', { 'content-type': 'text/plain' })
  t.equal(r.status, 415)
  t.match(await r.json(), { badMediaType: { message: /'text\/plain' is not supported/ } })

  r = await post(Buffer.alloc(200_000, 0x20))
  t.equal(r.status, 413, 'a declared length over the limit')
  t.match(await r.json(), { overLimit: { message: /200000 bytes\) is larger than the limit of 114688/ } })

  // A chunked body that outgrows the limit is cut while it streams.
  const chunks = new ReadableStream({ start(c) { for (let i = 0; i < 40; i++) c.enqueue(new Uint8Array(8192).fill(0x20)); c.close() } })
  r = await fetch(`${rest.origin}/compute/v2.1/things`, { method: 'POST', headers: { 'x-auth-token': 'admin', 'content-type': 'application/json' }, body: chunks, duplex: 'half' } as RequestInit)
  t.equal(r.status, 413, 'a chunked body over the limit')

  r = await post('{"thing": ')
  t.equal(r.status, 400)
  t.match(await r.json(), { badRequest: { message: /not valid JSON/ } })

  r = await post('{"other": {}}')
  t.equal(r.status, 400)
  t.match(await r.json(), { badRequest: { message: "'thing' is a required object in the request body" } })
  t.equal(created.length, before, 'no bad body did anything')
})

t.test('dispatch: the first route added wins, HEAD falls back to GET, 405 lists what is allowed', async (t) => {
  const hit = (name: string) => async (req: { params: Record<string, string> }) => ({ body: { route: name, params: req.params } })
  const rest = await serve([{
    type: 'compute', prefix: '/compute', routes: [
      { method: 'GET', path: '/v2.1/items/detail', policy: 'public', handler: hit('detail') },
      { method: 'GET', path: '/v2.1/items/:id', policy: 'public', handler: hit('item') },
      { method: 'GET', path: '/v2.1/items/:item_id/parts/:part', policy: 'public', handler: hit('part') },
      { method: 'DELETE', path: '/v2.1/items/:id', policy: 'public', handler: hit('delete') },
      { method: 'GET', path: '/v2.1/late/:id', policy: 'public', handler: hit('late-param') },
      { method: 'GET', path: '/v2.1/late/fixed', policy: 'public', handler: hit('late-literal') },
      { method: 'PUT', path: '/v2.1/late/fixed', policy: 'public', handler: hit('put-fixed') },
      { method: 'GET', path: '/', policy: 'public', handler: hit('root') },
    ],
  }])
  const get = async (p: string, method = 'GET') => {
    const r = await fetch(`${rest.origin}${p}`, { method })
    return { status: r.status, allow: r.headers.get('allow'), body: method === 'HEAD' ? undefined : await r.json() as Record<string, unknown> }
  }
  t.match(await get('/compute/v2.1/items/detail'), { status: 200, body: { route: 'detail' } }, 'a literal added first beats a parameter')
  t.match(await get('/compute/v2.1/items/abc'), { status: 200, body: { route: 'item', params: { id: 'abc' } } })
  t.match(await get('/compute/v2.1/items/a%20b/parts/p%2F1'), { body: { route: 'part', params: { item_id: 'a b', part: 'p/1' } } }, "each route's own parameter names, decoded")
  t.match(await get('/compute/v2.1/late/fixed'), { body: { route: 'late-param', params: { id: 'fixed' } } }, 'a parameter added first beats a later literal (as the scan in order did)')
  t.match(await get('/compute/v2.1/items/x', 'HEAD'), { status: 200 }, 'HEAD is answered by GET')
  t.match(await get('/compute/v2.1/items/x', 'POST'), { status: 405, allow: 'GET, DELETE' })
  t.match(await get('/compute/v2.1/late/fixed', 'DELETE'), { status: 405, allow: 'GET, PUT' }, 'the methods of every route that matches')
  t.match(await get('/compute/v2.1/items/detail', 'DELETE'), { status: 200, body: { route: 'delete', params: { id: 'detail' } } })
  t.match(await get('/compute/v2.1/items/x/parts'), { status: 404 })
  t.match(await get('/compute/v2.1/items'), { status: 404 })
  t.match(await get('/compute/v2.1/items/%E0%A4%A'), { status: 400, body: { badRequest: { message: /not valid percent-encoding/ } } })
  t.match(await get('/compute/'), { status: 200, body: { route: 'root' } }, "a service's root may end in a slash")
  t.match(await get('/compute/v2.1/items/x/'), { status: 404 }, 'a resource may not')
  t.match(await get('/nowhere/at/all'), { status: 404 })
})
