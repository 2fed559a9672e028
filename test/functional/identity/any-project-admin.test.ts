/**
 * Who is a cloud admin: by default only an admin of the admin project (as
 * Keystone with admin_project_name); with bootstrap.anyProjectAdmin, an admin
 * of any project (Keystone's default, which Tempest's dynamic credentials need).
 */
import t from 'tap'
import { startController, type TestController } from '../../helpers/controller.js'
import { call, status } from '../../helpers/grpc.js'

async function projectAdminToken(s: TestController): Promise<string> {
  const tok = s.adminToken
  const project = await call<{ id: string }>(s.clients.projects, 'createProject', { name: 'p1' }, tok)
  const user = await call<{ id: string }>(s.clients.users, 'createUser', { name: 'padmin', password: 'secret-pass-1' }, tok)
  const admin = (await call<{ roles: Array<{ id: string }> }>(s.clients.roles, 'listRoles', { name: 'admin' }, tok)).roles[0]!
  await call(s.clients.roles, 'grantRole', { roleId: admin.id, userId: user.id, projectId: project.id }, tok)
  return (await s.login('padmin', 'secret-pass-1', { project: 'p1' })).token
}

t.test('by default, an admin of another project is not a cloud admin', async (t) => {
  const s = await startController()
  t.teardown(() => s.close())
  const tok = await projectAdminToken(s)
  const err = await call(s.clients.domains, 'createDomain', { name: 'd1' }, tok).then(() => undefined, (e: { code: number; details: string }) => e)
  t.equal(err?.code, status.PERMISSION_DENIED)
  t.match(err?.details, /CreateDomain requires one of: cloud_admin/)
  t.same((await call<{ domains: Array<{ name: string }> }>(s.clients.domains, 'listDomains', {}, s.adminToken)).domains.map((d) => d.name), ['Default'], 'nothing was created')
})

t.test('with anyProjectAdmin, it is (Keystone without admin_project_name)', async (t) => {
  const s = await startController({ bootstrap: { anyProjectAdmin: true } })
  t.teardown(() => s.close())
  const tok = await projectAdminToken(s)
  const d = await call<{ name: string }>(s.clients.domains, 'createDomain', { name: 'd1' }, tok)
  t.equal(d.name, 'd1')
})
