/**
 * The real `openstack` client (Debian's python3-openstackclient 6.0.0) against
 * Strato's REST listener, with the files the controller writes for it. First
 * the seed's walkthrough end to end on a stack (nats-server, controller, an
 * agent on the fake virt driver), as the seed types it: `. admin-openrc`,
 * image create (qcow2, bare, public) and list, flavor create --id 0, the
 * provider network and subnet, the demo project and user; then `.
 * demo-openrc`: keypair create from ssh-keygen's key, the two security-group
 * rules, the listings, `server create … --wait`, server show, console log
 * show, server stop/start/delete — each `-f json` checked for the fields the
 * seed's tables show. Then Keystone's part: the seed's domain walkthrough,
 * projects, users, roles, assignments, tokens and the catalog; clouds.yaml
 * over HTTPS with the controller's CA. Skipped where the client is absent.
 */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, statSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { openstackFiles, readOpenrc } from '../../../controller/identity/bootstrap.js'
import { startController } from '../../helpers/controller.js'
import { startNats } from '../../helpers/nats.js'
import { eventually, startAgent } from '../../helpers/agents.js'
import { bootDiskImage, bootMarker } from '../../fixtures/boot-sector.js'
import { hasOpenstack, openstackClient } from '../../helpers/osc.js'

/** A row or object of `-f json` output. */
type Json = any // eslint-disable-line @typescript-eslint/no-explicit-any

interface Run { code: number; stdout: string; stderr: string }

// One HOME for the file's commands, empty like a fresh user's (the client keeps nothing in it).
const home = mkdtempSync(path.join(tmpdir(), 'osc-home-'))
t.teardown(() => rmSync(home, { recursive: true, force: true }))
const osc = openstackClient()
t.teardown(() => osc.close())

/** Only the given environment (no OS_* leaks from ours) and the file's HOME. */
const envOf = (env: Record<string, string>) => ({ PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, ...env })

/** Runs a program; asynchronous, so the in-process controller keeps answering. */
function run(file: string, args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { env: envOf(env), timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr })
    })
  })
}

/** `openstack <args>` in the file's shared client (test/helpers/osc.ts); `process` runs /usr/bin/openstack itself. */
const openstack = (env: Record<string, string>, ...args: string[]) => osc.run(args, { env: envOf(env) })
const openstackProcess = (env: Record<string, string>, ...args: string[]) => osc.run(args, { env: envOf(env), process: true })

/** `-f json` output of a command that must succeed. */
async function json(t: Test, env: Record<string, string>, ...args: string[]): Promise<Json> {
  return parsed(t, args, await openstack(env, ...args, '-f', 'json'))
}

/** The same, as its own `/usr/bin/openstack` process. */
async function jsonProcess(t: Test, env: Record<string, string>, ...args: string[]): Promise<Json> {
  return parsed(t, args, await openstackProcess(env, ...args, '-f', 'json'))
}

function parsed(t: Test, args: string[], r: Run): Json {
  t.equal(r.code, 0, `openstack ${args.join(' ')}${r.code ? `: ${r.stderr}` : ''}`)
  return r.code === 0 ? JSON.parse(r.stdout) : undefined
}

async function ok(t: Test, env: Record<string, string>, ...args: string[]): Promise<void> {
  const r = await openstack(env, ...args)
  t.equal(r.code, 0, `openstack ${args.join(' ')}${r.code ? `: ${r.stderr}` : ''}`)
}

if (!hasOpenstack()) {
  t.plan(0, 'needs python3-openstackclient (npm run setup installs it)')
} else {
  t.test("the seed's walkthrough end to end: image, flavor, network, keypair, rules, server create --wait … delete", async (t) => {
    // A stack with nothing made yet: the seed makes it all.
    const nats = await startNats()
    t.teardown(() => nats.stop())
    const s = await startController({ natsUrl: nats.url, hosts: { heartbeatIntervalMs: 200, missedHeartbeats: 5, castAckWaitMs: 3_000 }, servers: { castRetryMs: 200, agentCallTimeoutMs: 5_000 } })
    t.teardown(() => s.close())
    const agent = await startAgent(nats.url, 'node1', { powerSyncIntervalMs: 200, shutdownTimeoutMs: 2_000 })
    t.teardown(() => agent.stop())
    await s.controller.hosts.discover()
    const scratch = mkdtempSync(path.join(tmpdir(), 'strato-seed-'))
    t.teardown(() => rmSync(scratch, { recursive: true, force: true }))
    const admin = readOpenrc(openstackFiles(path.join(s.dataDir, 'admin-openrc')).openrc)
    const demo = { ...admin, OS_USERNAME: 'demo', OS_PASSWORD: 'demo-pw', OS_PROJECT_NAME: 'demo' }

    // . admin-openrc; openstack image create "cirros" --file … --disk-format qcow2 --container-format bare --public
    const file = await bootDiskImage({ line: bootMarker('seed'), path: path.join(scratch, 'cirros-0.3.4-x86_64-disk.img'), sizeMiB: 16 })
    const bytes = readFileSync(file)
    const created = await jsonProcess(t, admin, 'image', 'create', 'cirros', '--file', file, '--disk-format', 'qcow2', '--container-format', 'bare', '--public')
    // Client 6.0.0 prints the POST's answer (queued), as it does against Glance; the seed's table is the image after its upload.
    t.match(created, { id: /^[0-9a-f-]{36}$/, name: 'cirros', disk_format: 'qcow2', container_format: 'bare', visibility: 'public', status: 'queued' })
    const adminProject = (await json(t, admin, 'project', 'show', 'admin')).id
    const image = await json(t, admin, 'image', 'show', 'cirros')
    // The seed's table: every property it shows.
    t.match(image, {
      checksum: createHash('md5').update(bytes).digest('hex'), container_format: 'bare', created_at: /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, disk_format: 'qcow2',
      file: `/v2/images/${image.id}/file`, id: /^[0-9a-f-]{36}$/, min_disk: 0, min_ram: 0, name: 'cirros', owner: adminProject, protected: false,
      schema: '/v2/schemas/image', size: bytes.length, status: 'active', tags: [], updated_at: /Z$/, visibility: 'public',
    })
    t.equal(image.id, created.id)
    t.ok(image.virtual_size === null || image.virtual_size >= bytes.length, `virtual_size is shown (${image.virtual_size})`)
    t.same(await json(t, admin, 'image', 'list'), [{ ID: image.id, Name: 'cirros', Status: 'active' }])

    // openstack flavor create --id 0 …; the provider network and subnet as the seed makes them.
    t.match(await json(t, admin, 'flavor', 'create', '--id', '0', '--vcpus', '1', '--ram', '64', '--disk', '1', 'm1.nano'), { id: '0', name: 'm1.nano', vcpus: 1, ram: 64, disk: 1, 'os-flavor-access:is_public': true })
    const net = await json(t, admin, 'network', 'create', '--share', '--external', '--provider-physical-network', 'provider', '--provider-network-type', 'flat', 'provider')
    t.match(net, { name: 'provider', shared: true, 'router:external': true, 'provider:network_type': 'flat', 'provider:physical_network': 'provider', status: 'ACTIVE' })
    const sub = await json(t, admin, 'subnet', 'create', '--network', 'provider', '--allocation-pool', 'start=192.168.201.200,end=192.168.201.210', '--dns-nameserver', '114.114.114.114', '--gateway', '192.168.201.1', '--subnet-range', '192.168.201.0/24', 'provider')
    t.match(sub, { network_id: net.id, cidr: '192.168.201.0/24', gateway_ip: '192.168.201.1', allocation_pools: [{ start: '192.168.201.200', end: '192.168.201.210' }], dns_nameservers: ['114.114.114.114'] })

    // The install guide's demo project and user (the seed's demo-openrc).
    const demoProject = await json(t, admin, 'project', 'create', '--domain', 'default', '--description', 'Demo Project', 'demo')
    const demoUser = await json(t, admin, 'user', 'create', '--domain', 'default', '--password', 'demo-pw', 'demo')
    await ok(t, admin, 'role', 'add', '--project', 'demo', '--user', 'demo', 'member')

    // . demo-openrc; ssh-keygen -q -N ""; openstack keypair create --public-key ~/.ssh/id_rsa.pub mykey
    const key = path.join(scratch, 'id_rsa')
    const keygen = await run('/usr/bin/ssh-keygen', ['-q', '-N', '', '-t', 'rsa', '-b', '2048', '-f', key], {})
    t.equal(keygen.code, 0, keygen.stderr)
    const fingerprint = (await run('/usr/bin/ssh-keygen', ['-l', '-E', 'md5', '-f', `${key}.pub`], {})).stdout.split(' ')[1]!.replace(/^MD5:/, '')
    t.match(await json(t, demo, 'keypair', 'create', '--public-key', `${key}.pub`, 'mykey'), { name: 'mykey', fingerprint, type: 'ssh', user_id: demoUser.id })
    t.same(await json(t, demo, 'keypair', 'list'), [{ Name: 'mykey', Fingerprint: fingerprint, Type: 'ssh' }])

    // The two rules on the demo project's own default group.
    const icmp = await json(t, demo, 'security', 'group', 'rule', 'create', '--proto', 'icmp', 'default')
    t.match(icmp, { protocol: 'icmp', direction: 'ingress', ether_type: 'IPv4', project_id: demoProject.id })
    const ssh = await json(t, demo, 'security', 'group', 'rule', 'create', '--proto', 'tcp', '--dst-port', '22', 'default')
    t.match(ssh, { protocol: 'tcp', port_range_min: 22, port_range_max: 22, security_group_id: icmp.security_group_id })

    // What is there to boot with, then the seed's server create (with --wait, as the README shows it).
    const [flavors, images, networks, groups] = await Promise.all([
      json(t, demo, 'flavor', 'list'), json(t, demo, 'image', 'list'), json(t, demo, 'network', 'list'), json(t, demo, 'security', 'group', 'list'),
    ])
    t.same(flavors, [{ ID: '0', Name: 'm1.nano', RAM: 64, Disk: 1, Ephemeral: 0, VCPUs: 1, 'Is Public': true }])
    t.same(images, [{ ID: image.id, Name: 'cirros', Status: 'active' }])
    t.same(networks, [{ ID: net.id, Name: 'provider', Subnets: [sub.id] }])
    t.match(groups, [{ ID: icmp.security_group_id, Name: 'default', Project: demoProject.id }])
    const server = await jsonProcess(t, demo, 'server', 'create', '--flavor', 'm1.nano', '--image', 'cirros', '--nic', `net-id=${net.id}`, '--security-group', 'default', '--key-name', 'mykey', '--wait', 'provider-instance')
    t.match(server, {
      id: /^[0-9a-f-]{36}$/, name: 'provider-instance', status: 'ACTIVE', key_name: 'mykey', flavor: 'm1.nano (0)', image: `cirros (${image.id})`,
      addresses: { provider: [/^192\.168\.201\.2(0\d|10)$/] }, security_groups: [{ name: 'default' }], 'OS-EXT-STS:vm_state': 'active', 'OS-EXT-STS:power_state': 1,
      project_id: demoProject.id, user_id: demoUser.id,
    })
    const shown = await json(t, demo, 'server', 'show', 'provider-instance')
    t.match(shown, { id: server.id, name: 'provider-instance', status: 'ACTIVE', addresses: server.addresses, flavor: 'm1.nano (0)', key_name: 'mykey' })
    // Compute 2.90: a hostname asked for, shown to its owner (deleted with provider-instance below).
    const named = await json(t, demo, '--os-compute-api-version', '2.90', 'server', 'create', '--flavor', 'm1.nano', '--image', 'cirros', '--nic', `net-id=${net.id}`, '--hostname', 'web-1', 'Web Server')
    t.match(named, { name: 'Web Server', 'OS-EXT-SRV-ATTR:hostname': 'web-1' }, 'server create --hostname at 2.90')
    const log = await openstack(demo, 'console', 'log', 'show', 'provider-instance')
    t.equal(log.code, 0, log.stderr)
    t.match(log.stdout, `fake guest instance-${server.id} ${server.id} booted`)

    // server stop / start / delete, watched with server show.
    const status = async () => (await openstack(demo, 'server', 'show', 'provider-instance', '-c', 'status', '-f', 'value')).stdout.trim()
    await ok(t, demo, 'server', 'stop', 'provider-instance')
    await eventually(async () => (await status()) === 'SHUTOFF', 60_000, 'SHUTOFF')
    t.match(await json(t, demo, 'server', 'show', 'provider-instance'), { status: 'SHUTOFF', 'OS-EXT-STS:vm_state': 'stopped', 'OS-EXT-STS:power_state': 4 })
    await ok(t, demo, 'server', 'start', 'provider-instance')
    await eventually(async () => (await status()) === 'ACTIVE', 60_000, 'ACTIVE again')
    await ok(t, demo, 'server', 'delete', '--wait', 'provider-instance', 'Web Server')
    t.same(await json(t, demo, 'server', 'list'), [], 'gone')
    const missing = await openstack(demo, 'server', 'show', 'provider-instance')
    t.equal(missing.code, 1)
    t.match(missing.stderr, /No server with a name or ID of 'provider-instance' exists/)
  })

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
    const refused = await openstackProcess(env, 'domain', 'delete', 'testdomain')
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
    const token = await jsonProcess(t, env, '--os-cloud', 'strato', 'token', 'issue')
    t.match(token, { id: /\S+/, project_id: /^[0-9a-f]{32}$/ })
    t.ok((await json(t, env, '--os-cloud', 'strato', 'project', 'list')).some((p: Json) => p.Name === 'admin'))
    // The openrc, sourced as a user would, works the same.
    t.match(await json(t, readOpenrc(files.openrc), 'token', 'issue'), { id: /\S+/ })
  })
}
