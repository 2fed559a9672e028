/** Identity v3 (Keystone) over REST: version discovery, tokens, and the identity resources. */
import { REST_PREFIX, type RestService } from './http.js'
import type { RestDomain } from './services.js'

/** The Identity API version Keystone 2023.x reports, which clients expect. */
const V3 = { id: 'v3.14', status: 'stable', updated: '2020-04-07T00:00:00Z', 'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.identity-v3+json' }] }

export function identityRest(_d: RestDomain): RestService {
  return {
    type: 'identity',
    prefix: REST_PREFIX.identity,
    routes: [
      {
        method: 'GET', path: '/', policy: 'public',
        handler: async (req) => ({ status: 300, body: { versions: { values: [{ ...V3, links: [{ rel: 'self', href: `${req.baseUrl}/v3/` }] }] } } }),
      },
      {
        method: 'GET', path: '/v3', policy: 'public',
        handler: async (req) => ({ body: { version: { ...V3, links: [{ rel: 'self', href: `${req.baseUrl}/v3/` }] } } }),
      },
    ],
  }
}
