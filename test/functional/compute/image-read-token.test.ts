/**
 * No bearer tokens on the bus (issue 15): the build spec a host receives
 * carries an image-read token — one image, one host, no user, no roles —
 * instead of the server owner's token. Through gRPC: it downloads its image
 * and is refused for every other image and every other call.
 */
import { createHash } from 'node:crypto'
import t from 'tap'
import { Metadata } from '@grpc/grpc-js'
import { startCloud, uploadImage, type TestCloud } from '../../helpers/cloud.js'
import { call, failure, status } from '../../helpers/grpc.js'
import { tenant, type Tenant } from '../network/fixtures.js'
import type { BuildSpec } from '../../../proto/build-spec.js'
import type { ConductorClient } from '../../../agent/conductor-client.js'
import type { CreateServerResponse } from '../../../proto/gen/strato/compute/v1/servers.js'
import type { Image, ImagesClient } from '../../../proto/gen/strato/image/v1/image.js'

let cloud: TestCloud
let demo: Tenant
/** What the conductor handed the agent over NATS, by server. */
const specs = new Map<string, BuildSpec>()
let privateImage: { id: string; data: Buffer }

function download(images: ImagesClient, token: string, id: string): Promise<Buffer> {
  const md = new Metadata()
  md.set('x-auth-token', token)
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = []
    const st = images.downloadImage({ id }, md)
    st.on('data', (c: { data: Uint8Array }) => parts.push(Buffer.from(c.data)))
    st.on('end', () => resolve(Buffer.concat(parts)))
    st.on('error', reject)
  })
}

function decode(token: string): { header: Record<string, unknown>; payload: Record<string, unknown> } {
  const [h, p] = token.split('.')
  return { header: JSON.parse(Buffer.from(h!, 'base64url').toString()), payload: JSON.parse(Buffer.from(p!, 'base64url').toString()) }
}

t.before(async () => {
  cloud = await startCloud({ hosts: ['node1'] })
  demo = await tenant(cloud.s, 'demo')
  // Record the build specs as the agent decoded them from the conductor's NATS reply.
  const conductor = (cloud.agents[0]!.agent as unknown as { conductor: ConductorClient }).conductor
  const real = conductor.buildSpec.bind(conductor)
  conductor.buildSpec = async (uuid: string) => {
    const spec = await real(uuid)
    specs.set(uuid, spec)
    return spec
  }
  // A private image of demo's: only demo's project (and admins) may read it.
  const boot = await download(cloud.c.images, cloud.s.adminToken, cloud.image.id)
  const img = await call<Image>(cloud.c.images, 'createImage', { name: 'demo-private', diskFormat: 'qcow2', containerFormat: 'bare', visibility: 'private' }, demo.token)
  await uploadImage(cloud.c.images, demo.token, img.id, boot)
  privateImage = { id: img.id, data: boot }
})
t.teardown(() => cloud.close())

t.test('a build of a private image gets an image-read token, not the owner\'s, and still downloads the image end to end', async (t) => {
  const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name: 'p1', flavorRef: 'm1.nano', imageRef: privateImage.id, networks: [{ uuid: cloud.network.id }] }, demo.token)
  const id = r.servers[0]!.id
  await cloud.waitFor(id, (s) => s.status === 'ACTIVE', demo.token, 15_000, 'the server of a private image to become ACTIVE')
  const spec = specs.get(id)
  t.ok(spec, 'the agent asked the conductor for the build spec')
  const token = spec!.imageReadToken
  t.ok(token, 'the spec carries an image-read token')
  t.notOk(JSON.stringify(spec).includes(demo.token), "the owner's token is nowhere in the spec")
  const { header, payload } = decode(token)
  t.equal(header.typ, 'strato-image-read+jwt', 'a distinct token type')
  t.match(payload, { knd: 'image-read', aud: 'strato.image.v1.Images/DownloadImage', img: privateImage.id, hst: 'node1', srv: id }, 'bound to the image, the host and the server')
  for (const claim of ['sub', 'un', 'ud', 'p', 'd', 'r', 'm', 'adm']) t.notOk(claim in payload, `no '${claim}' claim (user, project, domain, roles)`)
  const life = (payload.exp as number) - (payload.iat as number)
  t.ok(life > 0 && life <= 600_000, `short-lived (${life} ms ≤ 10 min by default)`)
})

t.test('the image-read token downloads its image, and nothing else', async (t) => {
  const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name: 'p2', flavorRef: 'm1.nano', imageRef: privateImage.id, networks: [{ uuid: cloud.network.id }] }, demo.token)
  const id = r.servers[0]!.id
  await cloud.waitFor(id, (s) => s.status === 'ACTIVE', demo.token, 15_000)
  const token = specs.get(id)!.imageReadToken

  const got = await download(cloud.c.images, token, privateImage.id)
  t.equal(createHash('sha256').update(got).digest('hex'), createHash('sha256').update(privateImage.data).digest('hex'), 'its image, whole, though private to another project')

  const other = await failure(download(cloud.c.images, token, cloud.image.id))
  t.equal(other.code, status.PERMISSION_DENIED, 'another image (even a public one) is refused')
  t.match(other.details, new RegExp(`reads image ${privateImage.id} only, not ${cloud.image.id}`))

  const refusedAs = /image-read token .*accepted only by strato\.image\.v1\.Images\/DownloadImage/
  const calls: Array<[string, Promise<unknown>]> = [
    ['GetImage', call(cloud.c.images, 'getImage', { id: privateImage.id }, token)],
    ['ListImages', call(cloud.c.images, 'listImages', {}, token)],
    ['CreateServer', call(cloud.c.servers, 'createServer', { name: 'evil', flavorRef: 'm1.nano', imageRef: privateImage.id, networks: [{ uuid: cloud.network.id }] }, token)],
    ['ListServers', call(cloud.c.servers, 'listServers', {}, token)],
    ['CreateUser', call(cloud.s.clients.users, 'createUser', { name: 'evil', domainId: 'default', password: 'x' }, token)],
    ['ListProjects', call(cloud.s.clients.projects, 'listProjects', {}, token)],
  ]
  for (const [what, p] of calls) {
    const err = await failure(p)
    t.equal(err.code, status.UNAUTHENTICATED, `${what} refuses it`)
    t.match(err.details, refusedAs, `${what} says why`)
  }
  // Nor can it be exchanged for a user's token (the token method re-scopes a user token).
  const rescope = await failure(call(cloud.s.clients.tokens, 'issueToken', { identity: { methods: ['token'], token: { id: token } }, scope: { project: { id: demo.projectId } } }))
  t.equal(rescope.code, status.UNAUTHENTICATED, 'IssueToken by token refuses it')
  t.match(rescope.details, refusedAs)
})

t.test('an expired or altered image-read token is refused', async (t) => {
  const tokens = cloud.s.controller.auth.tokens
  const now = Date.now()
  const expired = tokens.issueImageRead({ imageId: privateImage.id, host: 'node1', instanceUuid: '', issuedAt: now - 700_000, expiresAt: now - 100_000, auditId: 'a' })
  const err = await failure(download(cloud.c.images, expired, privateImage.id))
  t.equal(err.code, status.UNAUTHENTICATED)
  t.match(err.details, /image-read token for image .* has expired/)

  // The same claims for another image, with the original signature: forged.
  const valid = tokens.issueImageRead({ imageId: privateImage.id, host: 'node1', instanceUuid: '', issuedAt: now, expiresAt: now + 60_000, auditId: 'b' })
  const [h, p, s] = valid.split('.')
  const claims = JSON.parse(Buffer.from(p!, 'base64url').toString())
  const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, img: cloud.image.id })).toString('base64url')}.${s}`
  const bad = await failure(download(cloud.c.images, forged, cloud.image.id))
  t.equal(bad.code, status.UNAUTHENTICATED)
  t.match(bad.details, /signature is invalid/)

  // A user's token still downloads what its user may read (the CLI's `image save`).
  const mine = await download(cloud.c.images, demo.token, privateImage.id)
  t.equal(mine.length, privateImage.data.length, "the owner's own token downloads its image")
})
