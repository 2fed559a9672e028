/**
 * Nova's flavors, extra specs and flavor access over REST, on FlavorCatalog.
 * Per microversion: `description` from 2.55 (and PUT to change it),
 * `extra_specs` inside the flavor from 2.61; before that the keys are absent.
 */
import { InvalidArgument, NotFound } from '../../proto/errors.js'
import type { Flavor, FlavorViewer } from '../compute/flavors.js'
import { bodyObject, type AuthedRequest, type RestRequest, type Route } from './http.js'
import type { RestDomain } from './services.js'
import { microversion, mv } from './compute-microversion.js'
import { intParam, links, nextLink, onlyQuery } from './compute-common.js'
import { validateExtraSpec } from './compute-extra-specs.js'
import { bool, onlyKeys } from './body.js'

const P = 'strato.compute.v1.Flavors'

const viewerOf = (req: RestRequest): FlavorViewer => {
  const a = (req as AuthedRequest).auth
  return { isAdmin: a.isCloudAdmin, projectId: a.projectId }
}

/** The detailed flavor as `req`'s microversion shows it. */
export function flavorView(req: RestRequest, f: Flavor): Record<string, unknown> {
  const v = microversion(req)
  return {
    id: f.id, name: f.name, ram: f.ram, disk: f.disk, vcpus: f.vcpus, links: links(req, 'flavors', f.id),
    'OS-FLV-EXT-DATA:ephemeral': f.ephemeral, 'OS-FLV-DISABLED:disabled': false,
    // Nova shows no swap as "" before 2.75, as 0 from it.
    swap: f.swap || (v >= mv('2.75') ? 0 : ''), rxtx_factor: f.rxtxFactor, 'os-flavor-access:is_public': f.isPublic,
    ...(v >= mv('2.55') ? { description: f.description || null } : {}),
    ...(v >= mv('2.61') ? { extra_specs: f.extraSpecs } : {}),
  }
}

function briefView(req: RestRequest, f: Flavor): Record<string, unknown> {
  return { id: f.id, name: f.name, links: links(req, 'flavors', f.id), ...(microversion(req) >= mv('2.55') ? { description: f.description || null } : {}) }
}

/** From 2.86 Nova validates the extra specs of the namespaces it knows (`compute-extra-specs.ts`). */
function checkedSpecs(req: RestRequest, specs: Record<string, string>): Record<string, string> {
  if (microversion(req) >= mv('2.86')) for (const [k, v] of Object.entries(specs)) validateExtraSpec(k, v)
  return specs
}

/** The query parameters of Nova's flavor listings (a 400 for others from 2.75). */
const FLAVOR_QUERY = ['limit', 'marker', 'is_public', 'minRam', 'minDisk', 'sort_key', 'sort_dir']

/** Nova's sort keys for flavors (default: flavorid ascending). */
const SORT: Record<string, (f: Flavor) => string | number> = {
  flavorid: (f) => f.id, id: (f) => f.id, name: (f) => f.name, memory_mb: (f) => f.ram, vcpus: (f) => f.vcpus,
  root_gb: (f) => f.disk, ephemeral_gb: (f) => f.ephemeral, swap: (f) => f.swap, rxtx_factor: (f) => f.rxtxFactor,
}

async function listFlavors(d: RestDomain, req: RestRequest): Promise<Flavor[]> {
  const isPublic = req.query.get('is_public')
  const viewer = viewerOf(req)
  // Nova: absent or true → public (plus the caller's private ones); false → private; none → all (admins).
  let mode = 'public'
  if (isPublic !== null) {
    const p = isPublic.toLowerCase()
    if (p === 'none') mode = viewer.isAdmin ? 'all' : 'public'
    else if (['0', 'false', 'f', 'no', 'n', 'off'].includes(p)) mode = viewer.isAdmin ? 'private' : 'public'
    else if (!['1', 'true', 't', 'yes', 'y', 'on'].includes(p)) throw new InvalidArgument(`Invalid is_public filter [${isPublic}]`, { field: 'is_public' })
  }
  const minRam = intParam(req, 'minRam')
  const minDisk = intParam(req, 'minDisk')
  let all = await d.flavors.list({ isPublic: mode, ...(minRam ? { minRam } : {}), ...(minDisk ? { minDisk } : {}) }, viewer)
  const key = req.query.get('sort_key') ?? 'flavorid'
  const dir = (req.query.get('sort_dir') ?? 'asc').toLowerCase()
  const by = SORT[key]
  if (!by) throw new InvalidArgument(`Invalid sort_key '${key}'; one of ${Object.keys(SORT).join(', ')}`, { field: 'sort_key' })
  if (dir !== 'asc' && dir !== 'desc') throw new InvalidArgument(`Invalid sort_dir '${dir}'; asc or desc`, { field: 'sort_dir' })
  all = all.sort((a, b) => {
    const x = by(a), y = by(b)
    const c = x < y ? -1 : x > y ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0
    return dir === 'asc' ? c : -c
  })
  const marker = req.query.get('marker')
  if (marker) {
    const i = all.findIndex((f) => f.id === marker)
    if (i < 0) throw new InvalidArgument(`marker [${marker}] not found`, { field: 'marker' })
    all = all.slice(i + 1)
  }
  const limit = intParam(req, 'limit')
  return limit === undefined ? all : all.slice(0, limit)
}

/** Nova takes sizes as integers or strings of digits. */
function size(body: Record<string, unknown>, key: string, field = key): number | undefined {
  const v = body[key]
  if (v === undefined || v === null) return undefined
  if (typeof v === 'number' && Number.isInteger(v)) return v
  if (typeof v === 'string' && /^\s*-?\d+\s*$/.test(v)) return Number(v)
  throw new InvalidArgument(`Invalid input for field/attribute ${field}. Value: ${JSON.stringify(v)}. It must be an integer`, { field })
}

function specsOf(value: unknown): Record<string, string> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new InvalidArgument("'extra_specs' must be an object of key: value", { field: 'extra_specs' })
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(value)) {
    if (typeof v === 'string') out[k] = v
    else if (typeof v === 'number' || typeof v === 'boolean') out[k] = String(v)
    else throw new InvalidArgument(`extra spec '${k}' must be a string, a number or a boolean`, { field: `extra_specs.${k}` })
  }
  return out
}

export function flavorRoutes(d: RestDomain): Route[] {
  const get = (req: RestRequest, id: string) => d.flavors.get({ id }, viewerOf(req))
  const accessList = async (flavorId: string) => ({ flavor_access: (await d.flavors.listAccess(flavorId)).map((a) => ({ flavor_id: a.flavorId, tenant_id: a.projectId })) })
  return [
    {
      method: 'GET', path: '/flavors', policy: `${P}/ListFlavors`,
      handler: async (req) => {
        onlyQuery(req, FLAVOR_QUERY)
        const page = await listFlavors(d, req)
        const next = nextLink(req, page, intParam(req, 'limit'), (f) => f.id)
        return { body: { flavors: page.map((f) => briefView(req, f)), ...(next ? { flavors_links: next } : {}) } }
      },
    },
    {
      method: 'GET', path: '/flavors/detail', policy: `${P}/ListFlavors`,
      handler: async (req) => {
        onlyQuery(req, FLAVOR_QUERY)
        const page = await listFlavors(d, req)
        const next = nextLink(req, page, intParam(req, 'limit'), (f) => f.id)
        return { body: { flavors: page.map((f) => flavorView(req, f)), ...(next ? { flavors_links: next } : {}) } }
      },
    },
    { method: 'GET', path: '/flavors/:id', policy: `${P}/GetFlavor`, handler: async (req) => ({ body: { flavor: flavorView(req, await get(req, req.params.id!)) } }) },
    {
      method: 'POST', path: '/flavors', policy: `${P}/CreateFlavor`,
      handler: async (req) => {
        const b = await bodyObject(req, 'flavor')
        onlyKeys(b, ['name', 'id', 'ram', 'vcpus', 'disk', 'OS-FLV-EXT-DATA:ephemeral', 'swap', 'rxtx_factor', 'os-flavor-access:is_public', 'description'])
        const id = b.id === undefined || b.id === null ? undefined : typeof b.id === 'number' || typeof b.id === 'string' ? String(b.id) : undefined
        if (b.id !== undefined && b.id !== null && id === undefined) throw new InvalidArgument('Invalid input for field/attribute id: it must be a string or an integer', { field: 'id' })
        if (typeof b.name !== 'string') throw new InvalidArgument("Invalid input for field/attribute name: 'name' is a required string", { field: 'name' })
        for (const k of ['ram', 'vcpus', 'disk']) if (b[k] === undefined) throw new InvalidArgument(`'${k}' is a required property`, { field: k })
        const isPublic = bool(b['os-flavor-access:is_public'], 'os-flavor-access:is_public')
        const rxtx = b.rxtx_factor
        if (rxtx !== undefined && rxtx !== 1 && rxtx !== '1' && rxtx !== 1.0) throw new InvalidArgument('rxtx_factor: Strato does not scale bandwidth per flavor; only 1.0 is accepted', { field: 'rxtx_factor' })
        if (b.description !== undefined && microversion(req) < mv('2.55')) throw new InvalidArgument("Additional properties are not allowed ('description' was unexpected)", { field: 'description' })
        if (b.description !== undefined && b.description !== null && typeof b.description !== 'string') throw new InvalidArgument('description must be a string or null', { field: 'description' })
        const f = await d.flavors.create({
          ...(id !== undefined ? { id } : {}), name: b.name,
          ram: size(b, 'ram'), vcpus: size(b, 'vcpus'), disk: size(b, 'disk'),
          ephemeral: size(b, 'OS-FLV-EXT-DATA:ephemeral'), swap: size(b, 'swap'),
          ...(typeof isPublic === 'boolean' ? { isPublic } : {}),
          ...(typeof b.description === 'string' ? { description: b.description } : {}),
        })
        return { body: { flavor: flavorView(req, f) } }
      },
    },
    {
      method: 'PUT', path: '/flavors/:id', policy: `${P}/UpdateFlavor`,
      handler: async (req) => {
        if (microversion(req) < mv('2.55')) throw new NotFound('flavors cannot be changed before microversion 2.55')
        const b = await bodyObject(req, 'flavor')
        const extra = Object.keys(b).filter((k) => k !== 'description')
        if (extra.length || !('description' in b)) throw new InvalidArgument(`only 'description' of a flavor can be changed${extra.length ? ` ('${extra[0]}' was given)` : ''}`, { field: extra[0] ?? 'description' })
        if (b.description !== null && typeof b.description !== 'string') throw new InvalidArgument('description must be a string or null', { field: 'description' })
        return { body: { flavor: flavorView(req, await d.flavors.update(req.params.id, { description: b.description ?? '' })) } }
      },
    },
    { method: 'DELETE', path: '/flavors/:id', policy: `${P}/DeleteFlavor`, handler: async (req) => (await d.flavors.delete(req.params.id), { status: 202 }) },

    { method: 'GET', path: '/flavors/:id/os-extra_specs', policy: `${P}/GetFlavor`, handler: async (req) => ({ body: { extra_specs: (await get(req, req.params.id!)).extraSpecs } }) },
    {
      method: 'POST', path: '/flavors/:id/os-extra_specs', policy: `${P}/UpdateFlavor`,
      handler: async (req) => {
        const b = await req.json() as Record<string, unknown> | undefined
        if (!b || typeof b !== 'object' || !('extra_specs' in b)) throw new InvalidArgument("'extra_specs' is a required property", { field: 'extra_specs' })
        const specs = checkedSpecs(req, specsOf(b.extra_specs))
        await d.flavors.update(req.params.id, { setExtraSpecs: specs })
        return { body: { extra_specs: specs } }
      },
    },
    {
      method: 'GET', path: '/flavors/:id/os-extra_specs/:key', policy: `${P}/GetFlavor`,
      handler: async (req) => {
        const f = await get(req, req.params.id!)
        const key = req.params.key!
        if (!(key in f.extraSpecs)) throw new NotFound(`Flavor ${f.id} has no extra specs with key ${key}.`)
        return { body: { [key]: f.extraSpecs[key] } }
      },
    },
    {
      method: 'PUT', path: '/flavors/:id/os-extra_specs/:key', policy: `${P}/UpdateFlavor`,
      handler: async (req) => {
        const b = await req.json()
        const key = req.params.key!
        if (!b || typeof b !== 'object' || Array.isArray(b)) throw new InvalidArgument(`the body must be {"${key}": value}`, { field: key })
        const specs = specsOf(b)
        if (Object.keys(specs).length !== 1 || !(key in specs)) throw new InvalidArgument('Request body and URI mismatch', { field: key })
        checkedSpecs(req, specs)
        await d.flavors.update(req.params.id, { setExtraSpecs: specs })
        return { body: specs }
      },
    },
    {
      method: 'DELETE', path: '/flavors/:id/os-extra_specs/:key', policy: `${P}/UpdateFlavor`,
      handler: async (req) => (await d.flavors.update(req.params.id, { unsetExtraSpecs: [req.params.key!] }), { status: 200 }),
    },

    {
      method: 'GET', path: '/flavors/:id/os-flavor-access', policy: `${P}/ListFlavorAccess`,
      handler: async (req) => {
        const f = await get(req, req.params.id!)
        if (f.isPublic) throw new NotFound('Access list not available for public flavors.')
        return { body: await accessList(f.id) }
      },
    },
    {
      // Nova's flavor actions; the policy is chosen by the action the body names.
      method: 'POST', path: '/flavors/:id/action', policy: `${P}/AddFlavorAccess`,
      handler: async (req) => {
        const b = await req.json() as Record<string, { tenant?: unknown } | undefined> | undefined
        const add = b?.addTenantAccess
        const remove = b?.removeTenantAccess
        const which = add ?? remove
        if (!which || typeof which.tenant !== 'string' || (add && remove)) throw new InvalidArgument('give addTenantAccess or removeTenantAccess with a tenant', { field: 'tenant' })
        if (add) await d.flavors.addAccess(req.params.id, which.tenant)
        else await d.flavors.removeAccess(req.params.id, which.tenant)
        return { body: await accessList(req.params.id!) }
      },
    },
  ]
}
