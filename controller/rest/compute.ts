/**
 * Compute v2.1 (Nova) over REST: version discovery and microversions here;
 * flavors, keypairs, servers, the image proxy and the smaller resources each
 * in their own compute-*.ts file. Handlers call the catalogs the gRPC adapters call
 * (`api/compute.ts`, `api/servers.ts`) and translate to and from Nova's JSON,
 * each answer shaped exactly as the microversion it was asked with.
 */
import { REST_PREFIX, type RestRequest, type RestService, type Route } from './http.js'
import type { RestDomain } from './services.js'
import { MAX_VERSION, MIN_VERSION, microversion, versionHeaders } from './compute-microversion.js'
import { flavorRoutes } from './compute-flavors.js'
import { keypairRoutes } from './compute-keypairs.js'
import { serverRoutes } from './compute-servers.js'
import { extraRoutes } from './compute-extras.js'
import { hostRoutes } from './compute-hosts.js'
import { volumeAttachmentRoutes } from './compute-volume-attachments.js'
import { imageProxyRoutes } from './compute-images.js'

/** Nova's v2.1 version document, as GET /v2.1 and GET / show it. */
function v21(req: RestRequest) {
  return {
    id: 'v2.1', status: 'CURRENT', version: MAX_VERSION, min_version: MIN_VERSION, updated: '2013-07-23T11:33:21Z',
    links: [{ rel: 'self', href: `${req.baseUrl}/v2.1/` }, { rel: 'describedby', type: 'text/html', href: 'http://docs.openstack.org/' }],
    'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.compute+json;version=2.1' }],
  }
}

/**
 * Nova's legacy v2.0 entry: Nova lists it first (SUPPORTED, no
 * microversions) and Tempest's version test expects it there. Strato serves
 * its version document only; the API itself is v2.1, which every client
 * picks as the highest version listed.
 */
function v20(req: RestRequest) {
  return {
    id: 'v2.0', status: 'SUPPORTED', version: '', min_version: '', updated: '2011-01-21T11:33:21Z',
    links: [{ rel: 'self', href: `${req.baseUrl}/v2/` }, { rel: 'describedby', type: 'text/html', href: 'http://docs.openstack.org/' }],
    'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.compute+json;version=2' }],
  }
}

export function computeRest(d: RestDomain): RestService {
  const routes: Route[] = [
    { method: 'GET', path: '/', policy: 'public', handler: async (req) => ({ body: { versions: [v20(req), v21(req)] } }) },
    { method: 'GET', path: '/v2', policy: 'public', handler: async (req) => ({ body: { version: v20(req) } }) },
    { method: 'GET', path: '/v2.1', policy: 'public', handler: async (req) => ({ body: { version: v21(req) } }) },
  ]
  // The version is checked before anything is done: a refused version changes nothing.
  const versioned = [...flavorRoutes(d), ...keypairRoutes(d), ...serverRoutes(d), ...extraRoutes(d), ...hostRoutes(d), ...volumeAttachmentRoutes(d), ...imageProxyRoutes(d)].map((r): Route => ({
    ...r,
    path: `/v2.1${r.path}`,
    handler: (req) => (microversion(req), r.handler(req)),
  }))
  return {
    type: 'compute',
    prefix: REST_PREFIX.compute,
    routes: [...routes, ...versioned],
    headers: (req) => (req.path === '/' || req.path === '/v2' || req.path === '/v2.1' ? {} : versionHeaders(req)),
  }
}
