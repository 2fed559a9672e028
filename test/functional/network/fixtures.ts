/** Builders shared by the networking tests: projects with users in a role, and network clients. */
import { client, call } from '../../helpers/grpc.js'
import type { TestController } from '../../helpers/controller.js'
import { FloatingIpsClient, NetworksClient, PortsClient, RoutersClient, SecurityGroupsClient, SubnetsClient } from '../../../proto/gen/strato/network/v1/network.js'
import { QuotasClient } from '../../../proto/gen/strato/compute/v1/compute.js'
import type { Domain, Project, Role, User } from '../../../proto/gen/strato/identity/v1/identity.js'

export interface NetClients {
  networks: NetworksClient
  subnets: SubnetsClient
  ports: PortsClient
  floatingIps: FloatingIpsClient
  routers: RoutersClient
  securityGroups: SecurityGroupsClient
  quotas: QuotasClient
  close(): void
}

export function netClients(address: string): NetClients {
  const c = {
    networks: client(NetworksClient, address),
    subnets: client(SubnetsClient, address),
    ports: client(PortsClient, address),
    floatingIps: client(FloatingIpsClient, address),
    routers: client(RoutersClient, address),
    securityGroups: client(SecurityGroupsClient, address),
    quotas: client(QuotasClient, address),
  }
  return { ...c, close: () => Object.values(c).forEach((x) => x.close()) }
}

export interface Tenant {
  token: string
  projectId: string
  userId: string
}

/** A new project with one user holding `role` on it (in `domain`, created if not 'default'), logged in. */
export async function tenant(s: TestController, name: string, opts: { role?: string; domain?: string } = {}): Promise<Tenant> {
  let domainId = 'default'
  let domainName = 'Default'
  if (opts.domain && opts.domain !== 'default') {
    const d = await call<Domain>(s.clients.domains, 'createDomain', { name: opts.domain }, s.adminToken)
    domainId = d.id
    domainName = d.name
  }
  const project = await call<Project>(s.clients.projects, 'createProject', { name, domainId }, s.adminToken)
  const user = await call<User>(s.clients.users, 'createUser', { name, domainId, password: `${name}-pw`, defaultProjectId: project.id }, s.adminToken)
  const role = await call<Role>(s.clients.roles, 'getRole', { name: opts.role ?? 'member' }, s.adminToken)
  await call(s.clients.roles, 'grantRole', { roleId: role.id, userId: user.id, projectId: project.id }, s.adminToken)
  const login = await s.login(name, `${name}-pw`, { project: name, domain: domainName })
  return { token: login.token, projectId: project.id, userId: user.id }
}

/** Another user with `role` on an existing project. */
export async function member(s: TestController, name: string, projectId: string, projectName: string, role: string): Promise<Tenant> {
  const user = await call<User>(s.clients.users, 'createUser', { name, domainId: 'default', password: `${name}-pw` }, s.adminToken)
  const r = await call<Role>(s.clients.roles, 'getRole', { name: role }, s.adminToken)
  await call(s.clients.roles, 'grantRole', { roleId: r.id, userId: user.id, projectId }, s.adminToken)
  const login = await s.login(name, `${name}-pw`, { project: projectName })
  return { token: login.token, projectId, userId: user.id }
}
