// Nova's createImage over REST (POST /servers/{id}/action {"createImage": …}) against a real
// controller, nats-server and a fake-driver agent: 202 with Location before 2.45 and image_id from
// 2.45 (each answer checked against Tempest's schema), the image made and active, bad input and
// refused states answered with Nova's fault body, changing nothing.
import t from 'tap'
import { startCloud, type TestCloud } from '../../helpers/cloud.js'
import { call } from '../../helpers/grpc.js'
import { tenant, type Tenant } from '../network/fixtures.js'
import { novaClient, TempestSchemas } from './compute-helpers.js'
import type { Image, ListImagesResponse } from '../../../proto/gen/strato/image/v1/image.js'

let cloud: TestCloud
let demo: Tenant
let nova: ReturnType<typeof novaClient>
const schemas = new TempestSchemas()

t.before(async () => {
  cloud = await startCloud({ hosts: ['node1'] })
  demo = await tenant(cloud.s, 'demo')
  nova = novaClient(cloud.s.controller.rest!.origin, cloud.s.adminToken)
})
t.teardown(() => cloud.close())

const images = async () => (await call<ListImagesResponse>(cloud.c.images, 'listImages', { limit: 1000 }, cloud.s.adminToken)).images

t.test('createImage: 202 with Location (2.1) or image_id (2.45); the image becomes active with the metadata', async (t) => {
  const created = await nova('POST', '/v2.1/servers', { token: demo.token, body: { server: { name: 'rest-snap', flavorRef: cloud.flavor.id, imageRef: cloud.image.id, networks: [{ uuid: cloud.network.id }] } } })
  t.equal(created.status, 202)
  const id = created.body.server.id as string
  await cloud.waitFor(id, (s) => s.status === 'ACTIVE', demo.token, 20_000)

  const old = schemas.add('images', 'create_image', '2.1', await nova('POST', `/v2.1/servers/${id}/action`, { token: demo.token, body: { createImage: { name: 'rest-1', metadata: { kind: 'nightly' } } } }))
  t.equal(old.status, 202)
  t.equal(old.body, undefined, 'no body before 2.45')
  const m = /\/image\/images\/([0-9a-f-]{36})$/.exec(old.headers.location ?? '')
  t.ok(m, `Location names the image at the image endpoint (${old.headers.location})`)
  const firstId = m![1]!
  t.ok(old.headers.location!.startsWith(cloud.s.controller.rest!.origin), 'an absolute URL')
  await cloud.waitFor(id, (s) => s.taskState === '', demo.token, 20_000)
  const img = await call<Image>(cloud.c.images, 'getImage', { id: firstId }, demo.token)
  t.match(img, { name: 'rest-1', status: 'active', owner: demo.projectId })
  t.match(img.properties, { image_type: 'snapshot', instance_uuid: id, kind: 'nightly' })

  const v245 = schemas.add('images', 'create_image', '2.45', await nova('POST', `/v2.1/servers/${id}/action`, { token: demo.token, version: '2.45', body: { createImage: { name: 'rest-2' } } }))
  t.equal(v245.status, 202)
  t.match(v245.body, { image_id: /^[0-9a-f-]{36}$/ }, 'image_id in the body from 2.45')
  t.notOk(v245.headers.location, 'and no Location')
  await cloud.waitFor(id, (s) => s.taskState === '', demo.token, 20_000)
  t.equal((await call<Image>(cloud.c.images, 'getImage', { id: v245.body.image_id }, demo.token)).status, 'active')
})

t.test('bad input and refused states: Nova\'s fault body, nothing changed', async (t) => {
  const created = await nova('POST', '/v2.1/servers', { token: demo.token, body: { server: { name: 'rest-snap-2', flavorRef: cloud.flavor.id, imageRef: cloud.image.id, networks: [{ uuid: cloud.network.id }] } } })
  t.equal(created.status, 202, JSON.stringify(created.body))
  const id = created.body.server.id as string
  await cloud.waitFor(id, (s) => s.status === 'ACTIVE', demo.token, 20_000)
  const before = (await images()).length
  for (const [what, body] of [
    ['no name', { createImage: {} }],
    ['an empty name', { createImage: { name: '' } }],
    ['a name with spaces around', { createImage: { name: ' x ' } }],
    ['an unknown key', { createImage: { name: 'x', compress: true } }],
    ['metadata not strings', { createImage: { name: 'x', metadata: { a: 1 } } }],
  ] as const) {
    const r = await nova('POST', `/v2.1/servers/${id}/action`, { token: demo.token, body })
    t.equal(r.status, 400, `${what}: 400`)
    t.match(r.body, { badRequest: { code: 400, message: /./ } })
  }
  // While another action runs the server is busy: 409 naming the task.
  await nova('POST', `/v2.1/servers/${id}/action`, { token: demo.token, body: { 'os-stop': null } })
  const busy = await nova('POST', `/v2.1/servers/${id}/action`, { token: demo.token, body: { createImage: { name: 'x' } } })
  if (busy.status === 409) t.match(busy.body, { conflictingRequest: { code: 409, message: /task 'powering-off' is in progress/ } }, 'a stop in progress: 409')
  else t.equal(busy.status, 202, 'the stop was already done: the snapshot of a SHUTOFF server is allowed')
  await cloud.waitFor(id, (s) => s.taskState === '', demo.token, 20_000)
  const other = await tenant(cloud.s, 'other')
  const hidden = await nova('POST', `/v2.1/servers/${id}/action`, { token: other.token, body: { createImage: { name: 'x' } } })
  t.equal(hidden.status, 404, "another project's server: 404")
  t.equal((await images()).length, before + (busy.status === 202 ? 1 : 0), 'no image from a refused request')
})

// Last: the checker runs Python synchronously, which stalls this process's agent heartbeats.
t.test("every createImage answer matches Tempest's schema for its microversion", async (t) => {
  const { checked, failures } = schemas.check()
  t.equal(checked, 2)
  t.same(failures, [], "Tempest's create_image schemas")
})
