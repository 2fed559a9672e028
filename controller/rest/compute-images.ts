/**
 * Nova's image proxy (`/v2.1/images`, Nova's `images.py` and
 * `image_metadata.py`): the images the Image API (Glance) keeps, shown as
 * Nova shows them, read and changed through the same image catalog the
 * Glance REST API uses. Nova serves the proxy below microversion 2.36 and the
 * image metadata below 2.39 ("proxy APIs deprecated"); at or above those each
 * route is a 404, as Nova answers a method with no version that matches.
 *
 * The view (`views/images.py`): Glance's status mapped to ACTIVE, SAVING,
 * DELETED, ERROR or UNKNOWN with a progress, minDisk/minRam, the extra
 * properties as `metadata`, the size, the server a snapshot was made of, and
 * self/bookmark/alternate links. Filters (Nova's SUPPORTED_FILTERS): name,
 * status, changes-since, server (an id or a server's link), type, minRam,
 * minDisk and property-<key>, compared as Glance compares them; limit and
 * marker page.
 */
import { InvalidArgument, NotFound, ResourceExhausted } from '../../proto/errors.js'
import type { Image } from '../image/catalog.js'
import { METADATA_MAX, checkMetadata } from '../compute/server-create-plan.js'
import { HttpError, bodyObject, type RestRequest, type Route } from './http.js'
import type { RestDomain } from './services.js'
import { microversion, mv } from './compute-microversion.js'
import { imageServiceUrl, intParam, isoZ, links, nextLink } from './compute-common.js'
import { deleteImage, viewer } from './image.js'
import { stringMap } from './body.js'

const I = 'strato.image.v1.Images'

/** Glance's statuses as Nova names them (anything else is UNKNOWN), and the progress Nova gives each. */
const STATUS: Record<string, string> = { active: 'ACTIVE', queued: 'SAVING', saving: 'SAVING', deleted: 'DELETED', pending_delete: 'DELETED', killed: 'ERROR' }
const PROGRESS: Record<string, number> = { queued: 25, saving: 50, active: 100 }

/** The three links Nova gives an image: self, bookmark, and the image in Glance (`alternate`). */
function imageLinks(req: RestRequest, id: string) {
  return [...links(req, 'images', id), { rel: 'alternate', type: 'application/vnd.openstack.image', href: `${imageServiceUrl(req)}/images/${encodeURIComponent(id)}` }]
}

/** An image as Nova's proxy shows it (`views/images.py` show). */
function novaImage(req: RestRequest, i: Image): Record<string, unknown> {
  const out: Record<string, unknown> = {
    id: i.id, name: i.name || null, minRam: i.minRam, minDisk: i.minDisk, metadata: i.properties,
    created: isoZ(i.createdAt), updated: isoZ(i.updatedAt), status: STATUS[i.status] ?? 'UNKNOWN', progress: PROGRESS[i.status] ?? 0,
    'OS-EXT-IMG-SIZE:size': i.size, links: imageLinks(req, i.id),
  }
  const server = i.properties.instance_uuid
  if (server !== undefined) out.server = { id: server, links: links(req, 'servers', server) }
  const auto = i.properties.auto_disk_config
  if (auto !== undefined) out['OS-DCF:diskConfig'] = ['true', '1', 't', 'on', 'y', 'yes'].includes(auto.toLowerCase()) ? 'AUTO' : 'MANUAL'
  return out
}

/**
 * Nova's list filters: what the catalog selects itself (name, status, the
 * properties server, type and property-<key> name), and the rest as a test
 * on each image.
 */
function listFilter(req: RestRequest): { name?: string; status?: string; properties: Record<string, string>; test: (i: Image) => boolean } {
  const q = req.query
  const tests: Array<(i: Image) => boolean> = []
  const properties: Record<string, string> = {}
  for (const [k, v] of q) if (k.startsWith('property-')) properties[k.slice('property-'.length)] = v
  // A server's id, or any of its links: Nova keeps what follows the last slash.
  const server = q.get('server')
  if (server !== null) properties.instance_uuid = server.slice(server.lastIndexOf('/') + 1)
  const type = q.get('type')
  if (type !== null) properties.image_type = type
  const since = q.get('changes-since')
  if (since !== null) {
    const t = Date.parse(since)
    if (Number.isNaN(t)) throw new InvalidArgument(`changes-since must be a date and time (ISO 8601), got '${since}'`, { field: 'changes-since' })
    tests.push((i) => i.updatedAt.getTime() >= t)
  }
  // Glance compares min_ram and min_disk as equal, not at least.
  const minRam = intParam(req, 'minRam')
  if (minRam !== undefined) tests.push((i) => i.minRam === minRam)
  const minDisk = intParam(req, 'minDisk')
  if (minDisk !== undefined) tests.push((i) => i.minDisk === minDisk)
  const name = q.get('name') ?? undefined
  // Glance's statuses are lower case; Nova passes the asked one on lowered.
  const status = q.get('status')?.toLowerCase()
  return { ...(name ? { name } : {}), ...(status ? { status } : {}), properties, test: (i) => tests.every((t) => t(i)) }
}

/**
 * The images the caller sees that pass the filters, from `marker` on, at
 * most `limit` (all when no limit is asked: Nova's glance client reads every
 * page), newest first.
 */
async function listImages(d: RestDomain, req: RestRequest): Promise<{ images: Image[]; limit: number | undefined }> {
  const { test, ...filter } = listFilter(req)
  const limit = intParam(req, 'limit')
  const out: Image[] = []
  if (limit === 0) return { images: out, limit }
  const marker = req.query.get('marker')
  for await (const i of d.images.listAll({ ...filter, ...(marker ? { marker } : {}) }, viewer(req))) {
    if (!test(i)) continue
    out.push(i)
    if (out.length === limit) break
  }
  return { images: out, limit }
}

/** The image `:id` the caller sees; 404 for anything else (Nova: "Image not found."). */
const imageOf = (d: RestDomain, req: RestRequest) => d.images.get({ id: req.params.id }, viewer(req))

/**
 * Replaces the image's extra properties with `props` (Glance's update with
 * purge_props, as Nova's metadata calls make it); returns the image after.
 */
async function setProperties(d: RestDomain, req: RestRequest, image: Image, props: Record<string, string>): Promise<Image> {
  const count = Object.keys(props).length
  if (count > METADATA_MAX) throw new ResourceExhausted(`the image would have ${count} metadata items; the quota is ${METADATA_MAX}`)
  const changed = Object.fromEntries(Object.entries(props).filter(([k, v]) => image.properties[k] !== v))
  const gone = Object.keys(image.properties).filter((k) => !(k in props))
  return d.images.update(image.id, { setProperties: changed, unsetProperties: gone }, viewer(req))
}

/** Nova's metadata body (`{"metadata": {…}}` or `{"meta": {…}}`: keys of 1-255 characters, string values of at most 255). */
async function metadataBody(req: RestRequest, key: 'metadata' | 'meta'): Promise<Record<string, string>> {
  return checkMetadata(stringMap(await bodyObject(req, key), key))
}

export function imageProxyRoutes(d: RestDomain): Route[] {
  /** Served below microversion `gone` (2.36 for images, 2.39 for their metadata), a 404 from it on. */
  const servedBelow = (gone: string, route: Route): Route => ({
    ...route,
    handler: (req) => {
      if (microversion(req) >= mv(gone)) throw new HttpError(404, `the image proxy API ${route.method} /v2.1${route.path} is not served from microversion ${gone} on (as in Nova): use the Image API (Glance)`)
      return route.handler(req)
    },
  })
  const image = (route: Route) => servedBelow('2.36', route)
  const metadata = (route: Route) => servedBelow('2.39', route)
  const listed = async (req: RestRequest, detail: boolean) => {
    const { images, limit } = await listImages(d, req)
    const next = nextLink(req, images, limit, (i: Image) => i.id)
    const shown = images.map((i) => (detail ? novaImage(req, i) : { id: i.id, name: i.name || null, links: imageLinks(req, i.id) }))
    return { body: { images: shown, ...(next ? { images_links: next } : {}) } }
  }
  return [
    image({ method: 'GET', path: '/images', policy: `${I}/ListImages`, handler: (req) => listed(req, false) }),
    image({ method: 'GET', path: '/images/detail', policy: `${I}/ListImages`, handler: (req) => listed(req, true) }),
    image({ method: 'GET', path: '/images/:id', policy: `${I}/GetImage`, handler: async (req) => ({ body: { image: novaImage(req, await imageOf(d, req)) } }) }),
    image({ method: 'DELETE', path: '/images/:id', policy: `${I}/DeleteImage`, handler: async (req) => (await deleteImage(d, req), { status: 204 }) }),
    metadata({ method: 'GET', path: '/images/:id/metadata', policy: `${I}/GetImage`, handler: async (req) => ({ body: { metadata: (await imageOf(d, req)).properties } }) }),
    metadata({
      method: 'GET', path: '/images/:id/metadata/:key', policy: `${I}/GetImage`,
      handler: async (req) => {
        const props = (await imageOf(d, req)).properties
        const key = req.params.key!
        if (!(key in props)) throw new NotFound(`image ${req.params.id} has no metadata item '${key}'`)
        return { body: { meta: { [key]: props[key] } } }
      },
    }),
    metadata({
      // Merges into what the image has.
      method: 'POST', path: '/images/:id/metadata', policy: `${I}/UpdateImage`,
      handler: async (req) => {
        const body = await metadataBody(req, 'metadata')
        const current = await imageOf(d, req)
        return { body: { metadata: (await setProperties(d, req, current, { ...current.properties, ...body })).properties } }
      },
    }),
    metadata({
      // Replaces all of it.
      method: 'PUT', path: '/images/:id/metadata', policy: `${I}/UpdateImage`,
      handler: async (req) => {
        const body = await metadataBody(req, 'metadata')
        await setProperties(d, req, await imageOf(d, req), body)
        return { body: { metadata: body } }
      },
    }),
    metadata({
      method: 'PUT', path: '/images/:id/metadata/:key', policy: `${I}/UpdateImage`,
      handler: async (req) => {
        const meta = await metadataBody(req, 'meta')
        const key = req.params.key!
        if (Object.keys(meta).length !== 1) throw new InvalidArgument(`meta must hold exactly one item (the key '${key}' of the path), got ${Object.keys(meta).length}`, { field: 'meta' })
        if (!(key in meta)) throw new InvalidArgument('Request body and URI mismatch', { field: 'meta' })
        const current = await imageOf(d, req)
        await setProperties(d, req, current, { ...current.properties, ...meta })
        return { body: { meta } }
      },
    }),
    metadata({
      method: 'DELETE', path: '/images/:id/metadata/:key', policy: `${I}/UpdateImage`,
      handler: async (req) => {
        const current = await imageOf(d, req)
        const key = req.params.key!
        if (!(key in current.properties)) throw new NotFound(`image ${current.id} has no metadata item '${key}'`)
        const { [key]: _, ...rest } = current.properties
        await setProperties(d, req, current, rest)
        return { status: 204 }
      },
    }),
  ]
}
