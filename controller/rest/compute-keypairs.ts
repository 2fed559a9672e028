/**
 * Nova's os-keypairs over REST, on KeypairCatalog. Per microversion: `type`
 * from 2.2 (create 201 and delete 204 from 2.2, 200/202 before), `user_id`
 * (an admin acting for another user) from 2.10, `limit`/`marker` from 2.35;
 * from 2.92 a keypair is imported, never generated (public_key is required),
 * and its name may hold '@' and '.' (before it: letters, digits, ' ', '_', '-').
 */
import { FailedPrecondition, InvalidArgument } from '../../proto/errors.js'
import type { Keypair } from '../compute/keypairs.js'
import { bodyObject, type AuthedRequest, type RestRequest, type Route } from './http.js'
import type { RestDomain } from './services.js'
import { microversion, mv } from './compute-microversion.js'
import { intParam, isoMicro, nextLink, onlyQuery, rowNumber } from './compute-common.js'
import { onlyKeys } from './body.js'

const P = 'strato.compute.v1.Keypairs'

/** The user whose keypairs a request means: `user_id` (2.10, admins) or the caller. */
function ownerOf(req: RestRequest, asked: unknown = req.query.get('user_id')): string {
  const me = (req as AuthedRequest).auth.userId
  if (asked === undefined || asked === null || asked === '') return me
  if (typeof asked !== 'string') throw new InvalidArgument('user_id must be a string', { field: 'user_id' })
  if (microversion(req) < mv('2.10')) return me
  return asked
}

const target = (req: RestRequest) => ({ userId: ownerOf(req) })

/** Nova's keypair `id` is its row number; Strato keys a keypair by (user, name). */
const rowId = (k: Keypair) => rowNumber(`${k.userId}\0${k.name}`)

const typed = (req: RestRequest, k: Keypair) => (microversion(req) >= mv('2.2') ? { type: k.type } : {})

export function keypairRoutes(d: RestDomain): Route[] {
  return [
    {
      method: 'GET', path: '/os-keypairs', policy: `${P}/ListKeypairs`, target,
      handler: async (req) => {
        onlyQuery(req, ['user_id', 'limit', 'marker'])
        let all = await d.keypairs.list(ownerOf(req))
        let limit: number | undefined
        if (microversion(req) >= mv('2.35')) {
          const marker = req.query.get('marker')
          if (marker) {
            const i = all.findIndex((k) => k.name === marker)
            if (i < 0) throw new InvalidArgument(`marker [${marker}] not found`, { field: 'marker' })
            all = all.slice(i + 1)
          }
          limit = intParam(req, 'limit')
          if (limit !== undefined) all = all.slice(0, limit)
        }
        const next = nextLink(req, all, limit, (k) => k.name)
        return { body: { keypairs: all.map((k) => ({ keypair: { name: k.name, public_key: k.publicKey, fingerprint: k.fingerprint, ...typed(req, k) } })), ...(next ? { keypairs_links: next } : {}) } }
      },
    },
    {
      method: 'POST', path: '/os-keypairs', policy: `${P}/CreateKeypair`,
      target: async (req) => ({ userId: ownerOf(req, (await bodyObject(req, 'keypair')).user_id) }),
      handler: async (req) => {
        const b = await bodyObject(req, 'keypair')
        const v = microversion(req)
        onlyKeys(b, ['name', 'public_key', 'type', 'user_id'])
        if (b.type !== undefined && v < mv('2.2')) throw new InvalidArgument("Additional properties are not allowed ('type' was unexpected)", { field: 'type' })
        if (b.type !== undefined && b.type !== 'ssh') throw new InvalidArgument(b.type === 'x509' ? 'Strato keeps SSH keypairs only; x509 is not supported' : `type must be ssh or x509, got ${JSON.stringify(b.type)}`, { field: 'type' })
        if (b.user_id !== undefined && v < mv('2.10')) throw new InvalidArgument("Additional properties are not allowed ('user_id' was unexpected)", { field: 'user_id' })
        if (typeof b.name !== 'string') throw new InvalidArgument("'name' is a required string", { field: 'name' })
        if (v < mv('2.92') && /[@.]/.test(b.name)) throw new InvalidArgument(`Invalid input for field/attribute name. Value: ${b.name}. A keypair name may hold '@' and '.' from microversion 2.92 (before it: letters, digits, spaces, '_' and '-')`, { field: 'name' })
        if (v >= mv('2.92') && b.public_key === undefined) throw new InvalidArgument("'public_key' is a required property: from microversion 2.92 keypairs are imported, not generated (make one with ssh-keygen)", { field: 'public_key' })
        if (b.public_key !== undefined && (typeof b.public_key !== 'string' || b.public_key.trim() === '')) throw new InvalidArgument('Keypair data is invalid: public_key must be a non-empty string (leave it out to generate a key)', { field: 'public_key' })
        const projectId = (req as AuthedRequest).auth.projectId
        if (!projectId) throw new FailedPrecondition('keypairs count against a project quota: use a project-scoped token')
        const k = await d.keypairs.create({ name: b.name, ...(b.public_key ? { publicKey: b.public_key } : {}), userId: ownerOf(req, b.user_id), projectId })
        const keypair = { name: k.name, public_key: k.publicKey, fingerprint: k.fingerprint, user_id: k.userId, ...(k.privateKey ? { private_key: k.privateKey } : {}), ...typed(req, k) }
        return { status: v >= mv('2.2') ? 201 : 200, body: { keypair } }
      },
    },
    {
      method: 'GET', path: '/os-keypairs/:name', policy: `${P}/GetKeypair`, target,
      handler: async (req) => {
        onlyQuery(req, ['user_id'])
        const k = await d.keypairs.get(req.params.name, ownerOf(req))
        return {
          body: {
            keypair: {
              name: k.name, public_key: k.publicKey, fingerprint: k.fingerprint, user_id: k.userId,
              deleted: false, created_at: isoMicro(k.createdAt), updated_at: null, deleted_at: null, id: rowId(k), ...typed(req, k),
            },
          },
        }
      },
    },
    {
      method: 'DELETE', path: '/os-keypairs/:name', policy: `${P}/DeleteKeypair`, target,
      handler: async (req) => {
        onlyQuery(req, ['user_id'])
        await d.keypairs.delete(req.params.name, ownerOf(req))
        return { status: microversion(req) >= mv('2.2') ? 204 : 202 }
      },
    },
  ]
}
