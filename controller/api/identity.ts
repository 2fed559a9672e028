/** gRPC adapters for strato.identity.v1: request → catalog/authenticator call → response. */
import {
  CatalogService, Domain, DomainsService, ListCatalogResponse, ListDomainsResponse, ListProjectsResponse, ListRoleAssignmentsResponse,
  ListRolesResponse, ListUsersResponse, IssueTokenResponse, Project, Role, RotateSigningKeysResponse, TokenBody, TokensService, User,
  UsersService, ProjectsService, RolesService, type CatalogEntry, type IssueTokenRequest,
} from '../../proto/gen/strato/identity/v1/identity.js'
import { Empty } from '../../proto/gen/google/protobuf/empty.js'
import type { Authenticator } from '../identity/auth.js'
import type { IdentityCatalog, User as UserModel } from '../identity/catalog.js'
import type { TokenClaims } from '../identity/model.js'
import { requestDomain } from '../identity/policy.js'
import { implement, type AuthedCall, type RpcDeps } from './rpc.js'
import type { UntypedServiceImplementation } from '@grpc/grpc-js'

export interface IdentityApiDeps {
  catalog: IdentityCatalog
  auth: Authenticator
  /** The service catalog handed out in scoped tokens. */
  serviceCatalog: () => CatalogEntry[]
}

function tokenBody(c: TokenClaims, catalog: CatalogEntry[]): TokenBody {
  const scoped = c.project !== undefined || c.domain !== undefined
  return TokenBody.fromPartial({
    expiresAt: new Date(c.expiresAt),
    issuedAt: new Date(c.issuedAt),
    auditIds: c.auditChainId === c.auditId ? [c.auditId] : [c.auditId, c.auditChainId],
    methods: c.methods,
    user: c.user,
    ...(c.project ? { project: c.project } : {}),
    ...(c.domain ? { domain: c.domain } : {}),
    roles: c.roles,
    catalog: scoped ? catalog : [],
    isAdminProject: c.isAdminProject,
  })
}

const userOut = (u: UserModel): User => User.fromPartial(u)
const empty = (): Empty => Empty.fromPartial({})

export function identityServices(d: IdentityApiDeps, rpc: RpcDeps): Array<[object, UntypedServiceImplementation]> {
  const { catalog, auth } = d
  const authed = (c: unknown) => c as AuthedCall
  return [
    [TokensService, implement(TokensService, {
      issueToken: async (req: IssueTokenRequest) => {
        const identity = req.identity
        const { token, claims } = await auth.issue({
          methods: identity?.methods ?? [],
          ...(identity?.password ? { password: { ...(identity.password.user ? { user: identity.password.user } : {}) } } : {}),
          ...(identity?.token ? { token: identity.token } : {}),
          ...(req.scope ? { scope: req.scope } : {}),
        })
        return IssueTokenResponse.fromPartial({ token, body: tokenBody(claims, d.serviceCatalog()) })
      },
      validateToken: async (req, call) => tokenBody(req.token ? await auth.validate(req.token) : authed(call).auth.claims, d.serviceCatalog()),
      revokeToken: async (req, call) => {
        const target = req.token ? await auth.validate(req.token) : authed(call).auth.claims
        await auth.revoke({ auditId: target.auditId })
        return empty()
      },
      rotateSigningKeys: async () => {
        const { primaryKeyId, activeKeyIds } = await auth.rotateKeys()
        return RotateSigningKeysResponse.fromPartial({ primaryKeyId, activeKeyIds })
      },
    }, rpc)],

    [DomainsService, implement(DomainsService, {
      createDomain: async (req) => Domain.fromPartial(await catalog.createDomain(req)),
      getDomain: async (req) => Domain.fromPartial(await catalog.getDomain(req)),
      listDomains: async (req, call) => ListDomainsResponse.fromPartial({ domains: await catalog.listDomains(req, call.visibility!) }),
      updateDomain: async (req) => Domain.fromPartial(await catalog.updateDomain(req.id, req)),
      deleteDomain: async (req) => (await catalog.deleteDomain(req.id), empty()),
    }, rpc)],

    [ProjectsService, implement(ProjectsService, {
      createProject: async (req, call) => Project.fromPartial(await catalog.createProject({ ...req, domainId: requestDomain(req, authed(call).auth) })),
      getProject: async (req, call) => Project.fromPartial(await catalog.getProject(req.id ? { id: req.id } : { name: req.name, domainId: requestDomain(req, authed(call).auth) })),
      listProjects: async (req, call) => ListProjectsResponse.fromPartial({ projects: await catalog.listProjects(req, call.visibility!) }),
      updateProject: async (req) => Project.fromPartial(await catalog.updateProject(req.id, req)),
      deleteProject: async (req) => (await catalog.deleteProject(req.id), empty()),
    }, rpc)],

    [UsersService, implement(UsersService, {
      createUser: async (req, call) => userOut(await catalog.createUser({ ...req, domainId: requestDomain(req, authed(call).auth) })),
      getUser: async (req, call) => userOut(await catalog.getUser(req.id ? { id: req.id } : { name: req.name, domainId: requestDomain(req, authed(call).auth) })),
      listUsers: async (req, call) => ListUsersResponse.fromPartial({ users: await catalog.listUsers(req, call.visibility!) }),
      updateUser: async (req) => userOut(await catalog.updateUser(req.id, req)),
      deleteUser: async (req) => (await catalog.deleteUser(req.id), empty()),
    }, rpc)],

    [RolesService, implement(RolesService, {
      createRole: async (req) => Role.fromPartial(await catalog.createRole(req)),
      getRole: async (req) => Role.fromPartial(await catalog.getRole(req)),
      listRoles: async (req) => ListRolesResponse.fromPartial({ roles: await catalog.listRoles(req) }),
      updateRole: async (req) => Role.fromPartial(await catalog.updateRole(req.id, req)),
      deleteRole: async (req) => (await catalog.deleteRole(req.id), empty()),
      createImpliedRole: async (req) => Role.fromPartial(await catalog.createImpliedRole(req.priorRoleId, req.impliedRoleId)),
      deleteImpliedRole: async (req) => (await catalog.deleteImpliedRole(req.priorRoleId, req.impliedRoleId), empty()),
      grantRole: async (req) => (await catalog.grantRole(req), empty()),
      revokeRole: async (req) => (await catalog.revokeRole(req), empty()),
      listRoleAssignments: async (req, call) =>
        ListRoleAssignmentsResponse.fromPartial({ roleAssignments: await catalog.listRoleAssignments(req, call.visibility!) }),
    }, rpc)],

    [CatalogService, implement(CatalogService, {
      listCatalog: async () => ListCatalogResponse.fromPartial({ catalog: d.serviceCatalog() }),
    }, rpc)],
  ]
}
