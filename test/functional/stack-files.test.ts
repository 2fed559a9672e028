// Private files, as `npm start` leaves them (issue 15): nothing under STRATO_HOME
// has a bit for other users, after the start and with a server running; the
// database (+ WAL, SHM) and admin-openrc are 0600; the only way in for anyone
// but root is QEMU's group, search-only (0710), on the directories down to the
// guests' files. An unprivileged local user (nobody) cannot read the database
// or a guest's disk. Needs root (libvirt, runuser).
import { spawnSync } from 'node:child_process'
import { lstatSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { parseOpenrc } from '../helpers/controller.js'
import { call, tlsCredentials } from '../helpers/grpc.js'
import { eventually } from '../helpers/agents.js'
import { cloudClients, serverGone, serverWaiter } from '../helpers/cloud.js'
import { ctrlC, stackLauncher } from '../helpers/stack.js'
import { BOOT_SECTOR_IMAGE, DEMO_LINE, openrcToken } from '../../cli/stack/demo.js'
import { groupId } from '../../agent/disk/guest-dirs.js'
import type { ConsoleOutput, CreateServerResponse } from '../../proto/gen/strato/compute/v1/servers.js'


if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root: npm start drives qemu:///system, and runuser')
} else {
  const stacks = stackLauncher(t, 'stack-files')

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
  const qemuGid = groupId('libvirt-qemu')
  const octal = (m: number) => m.toString(8).padStart(4, '0')

  /** No bit for others anywhere; directories 0700, or 0710 of QEMU's group; files with no group bits. */
  const checkTree = (t: Test, home: string, when: string) => {
    const entries = [{ path: home, mode: statSync(home).mode & 0o7777, uid: 0, gid: statSync(home).gid, dir: true }, ...walk(home)]
    const bad = entries.filter((e) =>
      (e.mode & 0o007) !== 0 ||
      (e.dir ? !(e.mode === 0o700 || (e.mode === 0o710 && e.gid === qemuGid)) : (e.mode & 0o077) !== 0))
    t.same(bad.map((e) => `${path.relative(home, e.path) || '.'} ${octal(e.mode)} gid ${e.gid}`), [], `${when}: ${entries.length} entries, none open to others, QEMU's group may only pass through`)
    return entries
  }

  t.test('npm start: STRATO_HOME is private after the start and with a server running', { timeout: 600_000 }, async (t) => {
    const home = mkdtempSync(path.join(tmpdir(), 'strato-files-'))
    t.teardown(() => rmSync(home, { recursive: true, force: true }))
    const stack = await stacks.start(home, { timeoutMs: 180_000 })
    const grpcPort = stack.grpcPort

    const db = path.join(home, 'controller', 'strato.db')
    const started = checkTree(t, home, 'after npm start')
    for (const f of [db, `${db}-wal`, `${db}-shm`, path.join(home, 'admin-openrc')]) {
      t.equal(octal(statSync(f).mode & 0o777), '0600', `${path.relative(home, f)} is 0600`)
    }
    t.ok(started.some((e) => e.path.startsWith(path.join(home, 'nats', 'jetstream'))), "nats-server's store is in the walk")
    t.equal(octal(statSync(path.join(home, 'controller')).mode & 0o777), '0700', 'the controller dir is 0700')
    t.equal(octal(statSync(home).mode & 0o777), '0710', 'STRATO_HOME: search only, for QEMU')
    t.equal(statSync(home).gid, qemuGid, "… by QEMU's group")

    // A server: its disk, config drive, console log and the cached base.
    // npm start serves TLS: the clients trust the CA admin-openrc names.
    const openrc = parseOpenrc(path.join(home, 'admin-openrc'))
    const c = cloudClients(`127.0.0.1:${grpcPort}`, tlsCredentials(readFileSync(openrc.OS_CACERT!)))
    t.teardown(() => Object.values(c).forEach((x) => x.close()))
    const token = await openrcToken(`127.0.0.1:${grpcPort}`, openrc)
    const made = await call<CreateServerResponse>(c.servers, 'createServer', { name: 'private', flavorRef: 'm1.nano', imageRef: BOOT_SECTOR_IMAGE, networkMode: 'none', userData: Buffer.from('#!/bin/sh\necho secret\n').toString('base64') }, token)
    const id = made.servers[0]!.id
    const up = await serverWaiter(c, token)(id, (x) => x.status !== 'BUILD', token, 180_000)
    t.equal(up.status, 'ACTIVE', `the server boots (${up.fault?.message ?? 'no fault'})`)
    await eventually(async () => (await call<ConsoleOutput>(c.servers, 'getConsoleOutput', { id }, token)).output.includes(DEMO_LINE) || undefined, 90_000, 'the demo line on the console')
    t.pass('QEMU reads its disk through the 0710 directories: the guest printed its line')
    const entries = checkTree(t, home, 'with a server running')
    const instance = path.join(home, 'agent', 'instances', id)
    for (const f of ['disk', 'disk.config', 'console.log']) t.ok(entries.some((e) => e.path === path.join(instance, f)), `${f} is in the walk`)
    t.ok(entries.some((e) => e.path.startsWith(path.join(home, 'agent', 'instances', '_base', ''))), 'the cached base is in the walk')

    // An unprivileged local user reads neither the database nor the guest's disk.
    for (const f of [db, path.join(instance, 'disk'), path.join(instance, 'disk.config')]) {
      const r = spawnSync('runuser', ['-u', 'nobody', '--', 'cat', f], { encoding: 'utf8' })
      t.not(r.status, 0, `nobody cannot cat ${path.relative(home, f)}`)
      t.match(r.stderr, /Permission denied/, '… EACCES')
    }
    const list = spawnSync('runuser', ['-u', 'nobody', '--', 'ls', home], { encoding: 'utf8' })
    t.match(list.stderr, /Permission denied/, 'nor list STRATO_HOME')

    await call(c.servers, 'deleteServer', { id }, token)
    await eventually(() => serverGone(c, id, token), 60_000, 'the server to be deleted')
    t.ok(await ctrlC(stack), 'Ctrl-C stops the stack cleanly')
    checkTree(t, home, 'after the stop')
  })
}
