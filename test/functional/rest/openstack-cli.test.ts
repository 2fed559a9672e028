/**
 * The real `openstack` client (Debian's python3-openstackclient 6.0.0) against
 * Keystone on Strato's REST listener, with the files the controller writes for
 * it: the seed's domain walkthrough, projects, users, roles, assignments,
 * tokens and the catalog, each output checked (`-f json`); then clouds.yaml
 * over HTTPS with the controller's CA. Skipped where the client is absent.
 */
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, statSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { openstackFiles, readOpenrc } from '../../../controller/identity/bootstrap.js'
import { startController } from '../../helpers/controller.js'

const OPENSTACK = '/usr/bin/openstack'

/** A row or object of `-f json` output. */
type Json = any // eslint-disable-line @typescript-eslint/no-explicit-any

interface Run { code: number; stdout: string; stderr: string }

/** Runs a program with only the given environment (no OS_* leaks from ours) and a fresh HOME; asynchronous, so the in-process controller keeps answering. */
function run(file: string, args: string[], env: Record<string, string>): Promise<Run> {
  const home = mkdtempSync(path.join(tmpdir(), 'osc-home-'))
  return new Promise((resolve) => {
    execFile(file, args, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, ...env }, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr })
    })
  })
}

const openstack = (env: Record<string, string>, ...args: string[]) => run(OPENSTACK, args, env)

/** `-f json` output of a command that must succeed. */
async function json(t: Test, env: Record<string, string>, ...args: string[]): Promise<Json> {
  const r = await openstack(env, ...args, '-f', 'json')
  t.equal(r.code, 0, `openstack ${args.join(' ')}${r.code ? `: ${r.stderr}` : ''}`)
  return r.code === 0 ? JSON.parse(r.stdout) : undefined
}

async function ok(t: Test, env: Record<string, string>, ...args: string[]): Promise<void> {
  const r = await openstack(env, ...args)
  t.equal(r.code, 0, `openstack ${args.join(' ')}${r.code ? `: ${r.stderr}` : ''}`)
}

if (!existsSync(OPENSTACK)) {
  t.plan(0, 'needs python3-openstackclient (npm run setup installs it)')
} else {
  t.test('the domain walkthrough, users, roles and tokens with the openstack client and the openrc Strato wrote', async (t) => {
    const s = await startController()
    t.teardown(() => s.close())
    const files = openstackFiles(path.join(s.dataDir, 'admin-openrc'))
    const env = readOpenrc(files.openrc)
    t.equal(env.OS_AUTH_URL, `${s.controller.rest!.origin}/identity/v3`)
    t.match(env, { OS_IDENTITY_API_VERSION: '3', OS_USERNAME: 'admin', OS_PASSWORD: s.openrc.OS_PASSWORD, OS_PROJECT_NAME: 'admin', OS_REGION_NAME: 'RegionOne' })

    // Read-only commands side by side: the client's start-up (seconds on a busy machine) dominates.
    const [issued, catalog, endpoints] = await Promise.all([
      json(t, env, 'token', 'issue'), json(t, env, 'catalog', 'list'), json(t, env, 'endpoint', 'list', '--interface', 'public'),
    ])
    t.same(Object.keys(issued).sort(), ['expires', 'id', 'project_id', 'user_id'])
    const keystone = catalog.find((e: Json) => e.Type === 'identity')
    t.match(keystone, { Name: 'keystone', Endpoints: [{ interface: 'public', region_id: 'RegionOne', url: `${s.controller.rest!.origin}/identity` }] })
    t.ok(endpoints.some((e: Json) => e['Service Name'] === 'nova' && e['Service Type'] === 'compute' && e.Region === 'RegionOne'), 'endpoint list')

    // The seed: domain create, list; project create --domain.
    const domain = await json(t, env, 'domain', 'create', 'testdomain')
    t.match(domain, { name: 'testdomain', enabled: true, description: '' })
    t.ok((await json(t, env, 'domain', 'list')).some((d: Json) => d.Name === 'testdomain' && d.Enabled === true))
    const project = await json(t, env, 'project', 'create', '--domain', 'testdomain', 'testproject')
    t.match(project, { name: 'testproject', domain_id: domain.id, parent_id: domain.id, is_domain: false, enabled: true })
    t.same((await json(t, env, 'project', 'list', '--domain', 'testdomain')).map((p: Json) => p.Name), ['testproject'])

    // Users.
    const user = await json(t, env, 'user', 'create', '--domain', 'testdomain', '--password', 'secret-1', 'alice')
    t.match(user, { name: 'alice', domain_id: domain.id, enabled: true })
    t.same(await json(t, env, 'user', 'list', '--domain', 'testdomain'), [{ ID: user.id, Name: 'alice' }])
    await ok(t, env, 'user', 'set', '--domain', 'testdomain', '--email', 'alice@example.com', 'alice')
    t.match(await json(t, env, 'user', 'show', '--domain', 'testdomain', 'alice'), { id: user.id, email: 'alice@example.com' })

    // Roles and assignments.
    t.same((await json(t, env, 'role', 'list')).map((r: Json) => r.Name).sort(), ['admin', 'member', 'reader'])
    await ok(t, env, 'role', 'add', '--project', 'testproject', '--project-domain', 'testdomain', '--user', 'alice', '--user-domain', 'testdomain', 'member')
    const assignments = await json(t, env, 'role', 'assignment', 'list', '--names')
    t.ok(assignments.some((a: Json) => a.Role === 'member' && a.User === 'alice@testdomain' && a.Project === 'testproject@testdomain'), 'role assignment list --names')
    t.ok(assignments.some((a: Json) => a.Role === 'admin' && a.User === 'admin@Default' && a.Project === 'admin@Default'))

    // Alice's own token, revoked.
    const aliceEnv = { ...env, OS_USERNAME: 'alice', OS_PASSWORD: 'secret-1', OS_USER_DOMAIN_NAME: 'testdomain', OS_PROJECT_NAME: 'testproject', OS_PROJECT_DOMAIN_NAME: 'testdomain' }
    const aliceToken = await json(t, aliceEnv, 'token', 'issue')
    t.match(aliceToken, { project_id: project.id, user_id: user.id })
    const revoked = await openstack(env, 'token', 'revoke', aliceToken.id)
    t.equal(revoked.code, 0, `openstack token revoke <alice's token>${revoked.code ? `: ${revoked.stderr}` : ''}`)
    const validate = await fetch(`${env.OS_AUTH_URL}/auth/tokens`, { headers: { 'x-auth-token': s.adminToken, 'x-subject-token': aliceToken.id } })
    t.equal(validate.status, 404, 'the revoked token is gone')

    await ok(t, env, 'role', 'remove', '--project', 'testproject', '--project-domain', 'testdomain', '--user', 'alice', '--user-domain', 'testdomain', 'member')
    t.same(await json(t, env, 'role', 'assignment', 'list', '--user', 'alice', '--user-domain', 'testdomain'), [])
    await ok(t, env, 'user', 'delete', '--domain', 'testdomain', 'alice')

    // The seed: delete refused while enabled (Keystone's 403), set --disable, delete.
    const refused = await openstack(env, 'domain', 'delete', 'testdomain')
    t.equal(refused.code, 1)
    t.match(refused.stderr, /Cannot delete a domain that is enabled, please disable it first\. \(HTTP 403\)/)
    await ok(t, env, 'domain', 'set', 'testdomain', '--disable')
    t.match(await json(t, env, 'domain', 'show', 'testdomain'), { id: domain.id, enabled: false })
    await ok(t, env, 'domain', 'delete', 'testdomain')
    t.notOk((await json(t, env, 'domain', 'list')).some((d: Json) => d.Name === 'testdomain'), 'gone')
  })

  t.test('openstacksdk (Debian python3-openstacksdk) with clouds.yaml: identity resources, grants, the catalog', async (t) => {
    const s = await startController()
    t.teardown(() => s.close())
    const files = openstackFiles(path.join(s.dataDir, 'admin-openrc'))
    const script = [
      'import json, openstack',
      "c = openstack.connect(cloud='strato')",
      "d = c.identity.create_domain(name='sdkdom')",
      "p = c.create_project('sdkproj', domain_id=d.id)",
      "u = c.create_user('sdkuser', password='pw-12345', domain_id=d.id)",
      "c.grant_role('member', user=u.id, project=p.id, domain=d.id)",
      "a = c.list_role_assignments({'user': u.id})",
      'c.identity.update_domain(d, enabled=False)',
      'c.identity.delete_domain(d)',
      'print(json.dumps({"project_domain": p.domain_id == d.id, "user_domain": u.domain_id == d.id,',
      '  "assignments": [[x.role["id"], x.scope["project"]["id"] == p.id] for x in a],',
      '  "domains": [x.name for x in c.identity.domains()], "services": sorted(x.type for x in c.identity.services()),',
      '  "regions": [x.id for x in c.identity.regions()]}))',
    ].join('\n')
    const out = await run('/usr/bin/python3', ['-c', script], { OS_CLIENT_CONFIG_FILE: files.cloudsYaml })
    t.equal(out.code, 0, out.stderr)
    const r = JSON.parse(out.stdout || '{}')
    t.match(r, { project_domain: true, user_domain: true, domains: ['Default'], regions: ['RegionOne'] })
    t.equal(r.assignments.length, 1, 'the grant, on the project')
    t.equal(r.assignments[0][1], true)
    t.ok(['compute', 'identity', 'image', 'network'].every((x) => r.services.includes(x)))
  })

  t.test('clouds.yaml over HTTPS: openstack --os-cloud strato with the controller\'s CA', async (t) => {
    const s = await startController({ tls: { mode: 'on' } })
    t.teardown(() => s.close())
    const files = openstackFiles(path.join(s.dataDir, 'admin-openrc'))
    for (const f of [files.openrc, files.cloudsYaml]) t.equal(statSync(f).mode & 0o777, 0o600, `${path.basename(f)} is 0600`)
    const yaml = readFileSync(files.cloudsYaml, 'utf8')
    t.match(yaml, `auth_url: "${s.controller.rest!.origin}/identity/v3"`)
    t.match(yaml, `cacert: "${s.caFile}"`)
    t.match(readOpenrc(files.openrc), { OS_AUTH_URL: `${s.controller.rest!.origin}/identity/v3`, OS_CACERT: s.caFile })

    const env = { OS_CLIENT_CONFIG_FILE: files.cloudsYaml }
    const token = await json(t, env, '--os-cloud', 'strato', 'token', 'issue')
    t.match(token, { id: /\S+/, project_id: /^[0-9a-f]{32}$/ })
    t.ok((await json(t, env, '--os-cloud', 'strato', 'project', 'list')).some((p: Json) => p.Name === 'admin'))
    // The openrc, sourced as a user would, works the same.
    t.match(await json(t, readOpenrc(files.openrc), 'token', 'issue'), { id: /\S+/ })
  })
}
