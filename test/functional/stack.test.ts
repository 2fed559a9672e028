// `npm start` end to end, as a new user runs it: the stack comes up, bootstraps,
// writes admin-openrc (0600, generated password), and a gRPC client that is not
// ours (Debian's python3-grpcio) lists the services by reflection and issues a
// token with those credentials. A second stack runs side by side; a restart
// keeps the cloud; Ctrl-C stops everything cleanly.
// Private files, as `npm start` leaves them (issue 15), on the first stack: nothing under STRATO_HOME
// has a bit for other users, after the start, with a server running and after the stop; the
// database (+ WAL, SHM) and admin-openrc are 0600; the only way in for anyone but root is QEMU's
// group, search-only (0710), on the directories down to the guests' files. An unprivileged local
// user (nobody) cannot read the database or a guest's disk (root only: runuser). The local agent's NBD
// certificate is issued at bootstrap (CN=<host>, the cloud CA) and kept across a restart.
import { spawnSync } from 'node:child_process'
import { createPrivateKey, X509Certificate } from 'node:crypto'
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { parseOpenrc } from '../helpers/controller.js'
import { call, client } from '../helpers/grpc.js'
import { eventually } from '../helpers/agents.js'
import { cloudClients, serverGone, serverWaiter } from '../helpers/cloud.js'
import { ctrlC, stackLauncher, type Stack } from '../helpers/stack.js'
import { BOOT_SECTOR_IMAGE, DEMO_IMAGE, DEMO_LINE, GUEST_FLAVOR, openrcCredentials, openrcToken } from '../../cli/stack/demo.js'
import { cachedGuestImage, GUEST_READY } from '../../cli/stack/guest/build.js'
import { groupId } from '../../agent/disk/guest-dirs.js'
import { ImagesClient, type ListImagesResponse } from '../../proto/gen/strato/image/v1/image.js'
import type { ListHostsResponse } from '../../proto/gen/strato/compute/v1/hosts.js'
import type { ConsoleOutput, CreateServerResponse, ListServersResponse } from '../../proto/gen/strato/compute/v1/servers.js'

const root = path.resolve(import.meta.dirname, '../..')

const stacks = stackLauncher(t, 'stack-test')

function probe(s: Stack, version: string) {
  const env = { ...process.env, ...parseOpenrc(path.join(s.home, 'admin-openrc')) }
  // npm start runs TLS: the probe (grpcio) verifies against admin-openrc's OS_CACERT.
  const r = spawnSync('/usr/bin/python3', [path.join(root, 'test/fixtures/grpc_probe.py'), root, `127.0.0.1:${s.grpcPort}`, version, env.OS_CACERT ?? ''], { env, encoding: 'utf8', timeout: 60_000 })
  if (r.status !== 0) throw new Error(`probe failed (${r.status}): ${r.stderr}`)
  return JSON.parse(r.stdout)
}

const natsRunning = (port: number) => spawnSync('pgrep', ['-f', `nats-server.*-p ${port}`]).status === 0

/** Every entry under `dir` (not following links), with its mode, owner and group. */
const walk = (dir: string): Array<{ path: string; mode: number; uid: number; gid: number; dir: boolean }> => {
  const found = []
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name)
    const st = lstatSync(p)
    found.push({ path: p, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, dir: st.isDirectory() })
    if (st.isDirectory()) found.push(...walk(p))
  }
  return found
}
const asRoot = process.getuid?.() === 0
const qemuGid = groupId('libvirt-qemu')
const octal = (m: number) => m.toString(8).padStart(4, '0')

/**
 * No bit for others anywhere; directories 0700, or 0710 of QEMU's group; files with no group bits, but for
 * libvirt's NBD client certificate (the launcher's `pki-qemu`, /etc/pki/qemu outside tests), which QEMU's group reads.
 */
const checkTree = (t: Test, home: string, when: string) => {
  const entries = [{ path: home, mode: statSync(home).mode & 0o7777, uid: 0, gid: statSync(home).gid, dir: true }, ...walk(home)]
  const bad = entries.filter((e) =>
    (e.mode & 0o007) !== 0 ||
    (e.dir ? !(e.mode === 0o700 || (e.mode === 0o710 && e.gid === qemuGid)) : (e.mode & 0o077) !== 0 && !(e.mode === 0o640 && e.gid === qemuGid && path.dirname(e.path) === path.join(home, 'pki-qemu'))))
  t.same(bad.map((e) => `${path.relative(home, e.path) || '.'} ${octal(e.mode)} gid ${e.gid}`), [], `${when}: ${entries.length} entries, none open to others, QEMU's group may only pass through`)
  return entries
}

t.test('npm start: bootstrap, external client, side-by-side stacks, restart, Ctrl-C', async (t) => {
  const homeA = mkdtempSync(path.join(tmpdir(), 'strato-stack-a-'))
  const homeB = mkdtempSync(path.join(tmpdir(), 'strato-stack-b-'))
  t.teardown(() => {
    rmSync(homeA, { recursive: true, force: true })
    rmSync(homeB, { recursive: true, force: true })
  })
  const a = await stacks.start(homeA)
  const openrc = path.join(homeA, 'admin-openrc')
  t.equal(statSync(openrc).mode & 0o777, 0o600, 'admin-openrc is mode 0600')
  const creds = parseOpenrc(openrc)
  t.match(creds, {
    OS_AUTH_URL: `grpcs://127.0.0.1:${a.grpcPort}`,
    OS_CACERT: path.join(homeA, 'controller', 'tls', 'ca.pem'),
    OS_USERNAME: 'admin',
    OS_PROJECT_NAME: 'admin',
    OS_USER_DOMAIN_NAME: 'Default',
    OS_PROJECT_DOMAIN_NAME: 'Default',
  })
  t.ok((creds.OS_PASSWORD ?? '').length >= 20, 'a generated password')
  t.notOk(a.output().includes(creds.OS_PASSWORD!), 'the password is not logged')

  const db = path.join(homeA, 'controller', 'strato.db')
  if (asRoot) {
    const started = checkTree(t, homeA, 'after npm start')
    for (const f of [db, `${db}-wal`, `${db}-shm`, openrc]) {
      t.equal(octal(statSync(f).mode & 0o777), '0600', `${path.relative(homeA, f)} is 0600`)
    }
    t.ok(started.some((e) => e.path.startsWith(path.join(homeA, 'nats', 'jetstream'))), "nats-server's store is in the walk")
    t.equal(octal(statSync(path.join(homeA, 'controller')).mode & 0o777), '0700', 'the controller dir is 0700')
    t.equal(octal(statSync(homeA).mode & 0o777), '0710', 'STRATO_HOME: search only, for QEMU')
    t.equal(statSync(homeA).gid, qemuGid, "… by QEMU's group")
    // The local agent's NBD certificate, issued at bootstrap as a joining host's is (a CSR made here, signed by the cloud CA).
    const ca = new X509Certificate(readFileSync(creds.OS_CACERT!))
    const nbd = new X509Certificate(readFileSync(path.join(homeA, 'agent', 'nbd-tls', 'server-cert.pem')))
    t.equal(nbd.subject, `CN=${a.agentHost}`, "the agent's NBD certificate names its host")
    t.ok(nbd.checkIssued(ca) && nbd.verify(ca.publicKey), '… signed by the cloud CA')
    t.ok(nbd.checkPrivateKey(createPrivateKey(readFileSync(path.join(homeA, 'agent', 'nbd-tls', 'server-key.pem')))), '… for the key beside it')
    t.equal(readFileSync(path.join(homeA, 'pki-qemu', 'client-cert.pem'), 'utf8'), nbd.toString(), "libvirt's client directory has it")
    t.same([statSync(path.join(homeA, 'pki-qemu', 'client-key.pem')).mode & 0o777, statSync(path.join(homeA, 'pki-qemu', 'client-key.pem')).gid], [0o640, qemuGid], "its key: 0640, QEMU's group")
    t.match(a.output(), /issued the local agent its NBD certificate/)
  }

  for (const version of ['v1', 'v1alpha']) {
    const r = probe(a, version)
    t.ok(r.services.includes('strato.identity.v1.Tokens'), `${version}: reflection lists the identity services`)
    t.ok(r.services.includes('grpc.health.v1.Health'))
    t.equal(r.timestamp_resolved, 'google.protobuf.Timestamp', `${version}: imported types resolve in a strict pool`)
    t.equal(r.body.user.name, 'admin', `${version}: token issued with admin-openrc's credentials`)
    t.equal(r.body.project.name, 'admin')
    t.same(r.body.roles.map((x: { name: string }) => x.name).sort(), ['admin', 'member', 'reader'])
    t.equal(r.wrong_password, 'UNAUTHENTICATED')
    t.equal(r.health, 'SERVING')
  }

  // A first user can boot right away: the host is mapped, the images and flavors are there (the boot sector on m1.nano: quick).
  const admin = { token: await openrcToken(`127.0.0.1:${a.grpcPort}`, creds) }
  const c = cloudClients(`127.0.0.1:${a.grpcPort}`, openrcCredentials(creds))
  t.teardown(() => Object.values(c).forEach((x) => x.close()))
  const hosts = await call<ListHostsResponse>(c.hosts, 'listHosts', {}, admin.token)
  t.match(hosts.hosts, [{ mapped: true, state: 'up', status: 'enabled' }], "this host's agent runs and is mapped")
  t.match(a.output(), /Creating host mapping for compute host/, 'the stack mapped it, as discover_hosts prints')
  // With user data: a config drive, whose file is private too.
  const made = await call<CreateServerResponse>(c.servers, 'createServer', { name: 'first', flavorRef: 'm1.nano', imageRef: BOOT_SECTOR_IMAGE, networkMode: 'none', userData: Buffer.from('#!/bin/sh\necho secret\n').toString('base64') }, admin.token)
  const id = made.servers[0]!.id
  const up = await serverWaiter(c, admin.token)(id, (x) => x.status !== 'BUILD', admin.token, 120_000)
  t.equal(up.status, 'ACTIVE', `the boot-sector image boots on m1.nano (${up.fault?.message ?? 'no fault'})`)
  const out = await eventually(async () => {
    const o = await call<ConsoleOutput>(c.servers, 'getConsoleOutput', { id }, admin.token)
    return o.output.includes(DEMO_LINE) ? o.output : undefined
  }, 60_000, 'the demo line on the console')
  t.match(out, DEMO_LINE, 'its console says hello')
  if (asRoot) {
    // The server: its disk, config drive, console log and the cached base.
    t.pass('QEMU reads its disk through the 0710 directories: the guest printed its line')
    const entries = checkTree(t, homeA, 'with a server running')
    const instance = path.join(homeA, 'agent', 'instances', id)
    for (const f of ['disk', 'disk.config', 'console.log']) t.ok(entries.some((e) => e.path === path.join(instance, f)), `${f} is in the walk`)
    t.ok(entries.some((e) => e.path.startsWith(path.join(homeA, 'agent', 'instances', '_base', ''))), 'the cached base is in the walk')
    // An unprivileged local user reads neither the database nor the guest's disk.
    for (const f of [db, path.join(instance, 'disk'), path.join(instance, 'disk.config')]) {
      const r = spawnSync('runuser', ['-u', 'nobody', '--', 'cat', f], { encoding: 'utf8' })
      t.not(r.status, 0, `nobody cannot cat ${path.relative(homeA, f)}`)
      t.match(r.stderr, /Permission denied/, '… EACCES')
    }
    const list = spawnSync('runuser', ['-u', 'nobody', '--', 'ls', homeA], { encoding: 'utf8' })
    t.match(list.stderr, /Permission denied/, 'nor list STRATO_HOME')
  }
  await call(c.servers, 'deleteServer', { id }, admin.token)
  await eventually(() => serverGone(c, id, admin.token), 60_000, 'the server to be deleted')

  // The README's quickstart, pasted into bash as a new user would, after npm start.
  const work = mkdtempSync(path.join(tmpdir(), 'strato-quickstart-'))
  t.teardown(() => rmSync(work, { recursive: true, force: true }))
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('## Quickstart'))
  const block = /```sh\n([\s\S]*?)```/.exec(section)![1]!
  copyFileSync(openrc, path.join(work, 'admin-openrc'))
  mkdirSync(path.join(work, 'node_modules', '.bin'), { recursive: true })
  symlinkSync(path.join(root, 'dist', 'cli', 'strato.js'), path.join(work, 'node_modules', '.bin', 'strato')) // what `npx strato` finds in a checkout
  const pasted = spawnSync('bash', ['-c', `shopt -s expand_aliases\nset -e\n${block}`], {
    cwd: work, encoding: 'utf8', timeout: 300_000,
    env: { ...process.env, HOME: work, npm_config_yes: 'true', npm_config_update_notifier: 'false' },
  })
  t.equal(pasted.status, 0, `the quickstart runs to the end in bash:\n${pasted.stderr.slice(-2000)}`)
  t.match(pasted.stdout, /Creating host mapping|Found 0 unmapped computes/, 'host discover --verbose prints what nova-manage prints')
  t.match(pasted.stdout, /\| status +\| ACTIVE +\|/, 'server create --wait shows the server ACTIVE')
  t.match(pasted.stdout, new RegExp(`\\| provider-instance \\| ACTIVE +\\| provider=192\\.168\\.201\\.2\\d\\d \\| cirros +\\| ${GUEST_FLAVOR.name.replace('.', '\\.')} \\|`), "server list: the seed's server on the provider network")
  const seedServer = (await call<ListServersResponse>(c.servers, 'listServers', { allProjects: true, name: '^provider-instance$' }, admin.token)).servers[0]!
  t.match(seedServer, { status: 'ACTIVE', keyName: 'mykey' })
  // The demo guest says it is ready, with the port's address (setup built it); else the boot sector stood in for it.
  const address = seedServer.addresses.find((a) => a.version === 4)?.addr ?? 'no address'
  const expected = (await cachedGuestImage()) ? `${GUEST_READY} provider-instance ${address} (login: ssh cirros@${address})` : DEMO_LINE
  await eventually(async () => (await call<ConsoleOutput>(c.servers, 'getConsoleOutput', { id: seedServer.id }, admin.token)).output.includes(expected) || undefined, 120_000, `the guest line '${expected}'`)
  t.pass(`the guest's console: ${expected}`)
  await call(c.servers, 'deleteServer', { id: seedServer.id }, admin.token)
  await eventually(() => serverGone(c, seedServer.id, admin.token), 60_000, 'the seed server to be deleted')

  // A second stack, side by side, with its own ports and home: its own cloud.
  const b = await stacks.start(homeB)
  const credsB = parseOpenrc(path.join(homeB, 'admin-openrc'))
  t.not(credsB.OS_PASSWORD, creds.OS_PASSWORD, 'each cloud has its own generated password')
  t.equal(probe(b, 'v1').body.user.name, 'admin')
  t.ok(await ctrlC(b), 'the second stack stops cleanly')

  t.ok(await ctrlC(a), 'Ctrl-C stops the stack cleanly')
  t.match(a.output(), /controller stopped[\s\S]*stack stopped/)
  t.notOk(natsRunning(a.natsPort), 'nats-server is gone')
  if (asRoot) checkTree(t, homeA, 'after the stop')

  // Restart on the same home: no second bootstrap, the same credentials still work.
  const before = readFileSync(openrc, 'utf8')
  const again = await stacks.start(homeA)
  t.equal(readFileSync(openrc, 'utf8'), before, 'admin-openrc is not rewritten')
  t.notMatch(again.output(), /first run/)
  // The launcher names each start's agent anew: the certificate follows the name (an unchanged one is kept: host-join.test.ts).
  t.match(again.output(), new RegExp(`issued the local agent its NBD certificate \\(CN=${again.agentHost}\\)`), "a renamed host's NBD certificate is issued again, for its new name")
  t.equal(new X509Certificate(readFileSync(path.join(homeA, 'agent', 'nbd-tls', 'client-cert.pem'))).subject, `CN=${again.agentHost}`)
  t.equal(probe(again, 'v1').body.user.name, 'admin', 'the old password still works')
  const images = await call<ListImagesResponse>(client(ImagesClient, `127.0.0.1:${again.grpcPort}`, openrcCredentials(creds)), 'listImages', { name: DEMO_IMAGE }, admin.token)
  t.equal(images.images.length, 1, 'the demo image is registered once')
  t.ok(await ctrlC(again))
  t.ok(existsSync(path.join(homeA, 'controller', 'strato.db')))
})
