/** gRPC adapter for strato.compute.v1.Hosts. */
import type { UntypedServiceImplementation } from '@grpc/grpc-js'
import { DeleteJoinTokenResponse, DiscoverHostsResponse, Host, HostsService, JoinHostResponse, JoinToken, ListHostsResponse, ListJoinTokensResponse } from '../../proto/gen/strato/compute/v1/hosts.js'
import { FailedPrecondition } from '../../proto/errors.js'
import { caCertHash } from '../../proto/ca-hash.js'
import type { HostRegistry, HostView } from '../compute/hosts.js'
import { checkHostName } from '../compute/hosts.js'
import type { HostCredentialIssuer, JoinTokens, JoinTokenView } from '../compute/join-tokens.js'
import { implement, type RpcDeps } from './rpc.js'

function toHost(h: HostView): Host {
  return Host.fromPartial({ ...h, ...(h.lastHeartbeatAt ? { lastHeartbeatAt: h.lastHeartbeatAt } : {}) })
}

function toJoinToken(t: JoinTokenView, token = ''): JoinToken {
  return JoinToken.fromPartial({
    id: t.id, token, description: t.description, host: t.host, expiresAt: t.expiresAt, createdAt: t.createdAt, createdBy: t.createdBy, usedByHost: t.usedByHost,
    ...(t.usedAt ? { usedAt: t.usedAt } : {}),
  })
}

function joinable(issuer: HostCredentialIssuer | undefined): HostCredentialIssuer {
  if (!issuer) throw new FailedPrecondition('this controller gives no bus credentials (it has no NATS account to sign with); hosts cannot join it')
  return issuer
}

/**
 * `issuer()` is undefined until the bus is up (or when this controller has
 * no bus credentials to give): JoinHost then says so instead of admitting a
 * host that could not connect.
 */
export function hostServices(hosts: HostRegistry, joinTokens: JoinTokens, issuer: () => HostCredentialIssuer | undefined, rpc: RpcDeps): Array<[object, UntypedServiceImplementation]> {
  return [
    [HostsService, implement(HostsService, {
      listHosts: async (req) => ListHostsResponse.fromPartial({ hosts: (await hosts.list({ availabilityZone: req.availabilityZone, unmappedOnly: req.unmappedOnly })).map(toHost) }),
      discoverHosts: async () => {
        const r = await hosts.discover()
        return DiscoverHostsResponse.fromPartial({ lines: r.lines, mapped: r.mapped.map(toHost) })
      },
      updateHost: async (req) => toHost(await hosts.update(checkHostName(req.host), { ...(req.enabled !== undefined ? { enabled: req.enabled } : {}), disabledReason: req.disabledReason })),
      createJoinToken: async (req, call) => {
        const give = joinable(issuer())
        const { token, view } = await joinTokens.create({ ttlMs: Number(req.ttlSeconds ?? 0) * 1000, description: req.description, host: req.host, createdBy: call.auth?.userId ?? '' })
        call.log.info({ joinToken: view.id, expiresAt: view.expiresAt, host: view.host || undefined }, 'join token created')
        const ca = give.caPem()
        return JoinToken.fromPartial({ ...toJoinToken(view, token), controllerAddress: give.controllerAddress(), caCertHash: ca ? caCertHash(ca) : '' })
      },
      listJoinTokens: async () => ListJoinTokensResponse.fromPartial({ joinTokens: (await joinTokens.list()).map((t) => toJoinToken(t)) }),
      deleteJoinToken: async (req) => {
        await joinTokens.delete(req.id ?? '')
        return DeleteJoinTokenResponse.fromPartial({})
      },
      joinHost: async (req, call) => {
        const give = joinable(issuer())
        const host = checkHostName(req.host)
        // Inside the token's transaction: a CSR refused (another host's name) leaves the token unused and nothing stored.
        const { result, view } = await joinTokens.consume(req.token ?? '', host, async () => ({
          ...(await give.busCredentials(host, req.natsPublicKey ?? '')),
          nbdCertPem: req.nbdCsr ? await give.hostCertificate(host, req.nbdCsr, req.nbdAddresses ?? []) : '',
        }))
        call.log.info({ joinToken: view.id, host, nbdCertificate: result.nbdCertPem !== '' }, 'host joined; it waits to be mapped (strato host discover)')
        return JoinHostResponse.fromPartial({ natsUrls: result.natsUrls, natsUserJwt: result.userJwt, caPem: give.caPem(), controllerAddress: give.controllerAddress(), nbdCertPem: result.nbdCertPem })
      },
    }, rpc)],
  ]
}
