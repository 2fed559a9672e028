/**
 * Integration, on a real host: server snapshots (Nova's createImage) with the
 * agent daemon as its own process driving libvirt (KVM, TCG without
 * /dev/kvm). A stopped server whose disk was written (a new boot sector with
 * the native engine, a pattern with `qemu-io`) is snapshotted; a new server
 * booted from that image prints the new boot sector's line and its disk
 * reads the pattern (checked with `qemu-io` through its overlay chain). A
 * running server is snapshotted too (paused for the copy) and is ACTIVE and
 * running afterwards; the time of five such snapshots is reported (of the
 * boot sector's server; of the demo guest's with STRATO_TEST_SNAPSHOT_GUEST=demo).
 * Needs root, libvirt-daemon-system, qemu-system-x86, qemu-utils.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync, readdirSync } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { serverGone, startCloud, uploadImage, type TestCloud } from '../../helpers/cloud.js'
import { spawnAgent, type AgentProcess } from '../../helpers/agent-process.js'
import { ensureLibvirtd, virsh, virshPowerState } from '../../helpers/libvirt.js'
import { call, type Decoded } from '../../helpers/grpc.js'
import { eventually } from '../../helpers/agents.js'
import { bootMarker, bootSector } from '../../fixtures/boot-sector.js'
import { cachedGuestImage } from '../../../cli/stack/guest/build.js'
import { writeImage } from '../../../native/index.js'
import { PowerState } from '../../../proto/power-state.js'
import type { ConsoleOutput, CreateServerImageResponse, CreateServerResponse, Server } from '../../../proto/gen/strato/compute/v1/servers.js'
import type { Flavor } from '../../../proto/gen/strato/compute/v1/compute.js'
import type { Image } from '../../../proto/gen/strato/image/v1/image.js'

const run = promisify(execFile)

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root to drive qemu:///system')
} else {
  const bridge = `brs-${randomBytes(3).toString('hex')}`
  let cloud: TestCloud
  let agent: AgentProcess
  const made: string[] = []

  t.before(async () => {
    await ensureLibvirtd()
    cloud = await startCloud({ hosts: [], controller: { hosts: { heartbeatIntervalMs: 500, missedHeartbeats: 10 }, servers: { castRetryMs: 1_000, agentCallTimeoutMs: 20_000 } } })
    agent = await spawnAgent({
      host: 'kvm-snap', natsUrl: cloud.nats.url, driver: 'libvirt',
      env: {
        STRATO_AGENT_CONTROLLER: cloud.s.address,
        STRATO_AGENT_BRIDGE_MAPPINGS: `provider:${bridge}`,
        STRATO_AGENT_SHUTDOWN_TIMEOUT_MS: '3000',
        STRATO_AGENT_POWER_SYNC_INTERVAL_MS: '1000',
        STRATO_AGENT_DISK_GB: '50',
      },
    })
    await agent.running(60_000)
    await eventually(async () => (await cloud.s.controller.hosts.discover()).mapped.length > 0 || undefined, 10_000, 'the host to be discovered')
  })

  t.teardown(async () => {
    if (t.passing() === false || process.env.STRATO_TEST_LOG) t.comment(agent?.log().slice(-6000) ?? '')
    for (const uuid of made) {
      await call(cloud.c.servers, 'deleteServer', { id: uuid }, cloud.s.adminToken).catch(() => {})
      await eventually(() => serverGone(cloud.c, uuid, cloud.s.adminToken), 30_000).catch(() => {})
      await virsh('destroy', `instance-${uuid}`).catch(() => {})
      await virsh('undefine', `instance-${uuid}`, '--nvram').catch(() => {})
    }
    await agent?.remove()
    await cloud?.close()
    await run('ip', ['link', 'del', bridge]).catch(() => {})
  })

  const token = () => cloud.s.adminToken
  const get = (id: string) => call<Server>(cloud.c.servers, 'getServer', { id }, token())
  const consoleOf = async (id: string) => (await call<ConsoleOutput>(cloud.c.servers, 'getConsoleOutput', { id }, token())).output
  const wait = async (id: string, want: string, ms = 120_000) => {
    const s = await cloud.waitFor(id, (x: Decoded<Server>) => (x.status === want && x.taskState === '') || x.status === 'ERROR', token(), ms, want)
    if (s.status !== want) throw new Error(`server ${id} is ${s.status}, not ${want}: ${s.fault?.message ?? 'no fault'}`)
    return s
  }
  const boot = async (name: string, imageRef: string, flavorRef = cloud.flavor.id) => {
    const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name, flavorRef, imageRef, networks: [{ uuid: cloud.network.id }] }, token())
    const id = r.servers[0]!.id
    made.push(id)
    await wait(id, 'ACTIVE')
    return id
  }
  /** Snapshots `id` and waits until the image is active and the server's task is done; the image, and how long it took. */
  const snapshot = async (id: string, name: string) => {
    const started = process.hrtime.bigint()
    const r = await call<CreateServerImageResponse>(cloud.c.servers, 'createServerImage', { id, name }, token())
    const s = await cloud.waitFor(id, (x) => x.taskState === '', token(), 300_000, `the snapshot ${name}`)
    const ms = Number(process.hrtime.bigint() - started) / 1e6
    // A failed snapshot deletes its image: say why.
    const image = await call<Image>(cloud.c.images, 'getImage', { id: r.imageId }, token()).catch(() => undefined)
    if (!image) throw new Error(`snapshot ${name} failed: ${s.fault?.message ?? 'no fault'}`)
    return { image, ms, server: s }
  }

  t.test("a stopped server's written disk becomes an image that boots with those bytes", { timeout: 900_000 }, async (t) => {
    const a = await boot('snap-src', cloud.image.id)
    await eventually(async () => ((await consoleOf(a)).includes(cloud.marker) ? true : undefined), 90_000, 'the first marker')
    await call(cloud.c.servers, 'stopServer', { id: a }, token())
    await wait(a, 'SHUTOFF')

    // Written while it is stopped: a new boot sector (native engine), and a pattern (qemu-io, an independent writer).
    const marker = bootMarker(`snapshot-${randomBytes(3).toString('hex')}`)
    const disk = path.join(agent.instancesDir, a, 'disk')
    await writeImage(disk, 0, bootSector(marker), 'qcow2')
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 8M 64k', disk])

    const { image, server } = await snapshot(a, 'snap-of-stopped')
    t.match(image, { status: 'active', diskFormat: 'qcow2', virtualSize: cloud.flavor.disk * 1024 ** 3 }, 'an active qcow2 image of the root disk')
    t.match(image.properties, { image_type: 'snapshot', instance_uuid: a, base_image_ref: cloud.image.id })
    t.equal(server.status, 'SHUTOFF', 'the server is still SHUTOFF')
    t.equal(await virshPowerState(`instance-${a}`), PowerState.SHUTDOWN, 'virsh: shut off')
    t.same(readdirSync(path.join(agent.instancesDir, a)).filter((f) => f.startsWith('snapshot-')), [], 'no temporary file left')

    const b = await boot('snap-dst', image.id)
    const out = await eventually(async () => {
      const c = await consoleOf(b)
      return c.includes(marker) ? c : undefined
    }, 120_000, 'the written boot sector\'s line on the new server\'s console')
    t.notOk(out.includes(cloud.marker), "the new server booted the written boot sector, not the original image's")
    await call(cloud.c.servers, 'stopServer', { id: b }, token())
    await wait(b, 'SHUTOFF')
    const bDisk = path.join(agent.instancesDir, b, 'disk')
    const chain = JSON.parse((await run('qemu-img', ['info', '--output=json', '--backing-chain', '-U', bDisk])).stdout) as Array<{ filename: string; 'backing-filename'?: string }>
    t.equal(chain[0]!['backing-filename'], path.join(agent.instancesDir, '_base', `${image.id}.qcow2`), "the new server's overlay is backed by the snapshot's cached base")
    t.equal(chain.length, 2, 'a chain of two: the overlay and the flattened snapshot')
    const read = await run('qemu-io', ['-r', '-f', 'qcow2', '-c', 'read -P 0x5a 8M 64k', bDisk])
    t.match(read.stdout, 'read 65536/65536 bytes at offset 8388608', "qemu-io reads the pattern through the new server's chain")
    t.notMatch(read.stdout + read.stderr, /Pattern verification failed/)
  })

  t.test('a running server is paused for the copy and is ACTIVE and running afterwards; five snapshots timed', { timeout: 1_800_000 }, async (t) => {
    // The boot sector: the behaviour is the same for any guest, and the demo guest cost the suite
    // ~20 CPU-s more (its TCG boot, six copies of its disk). STRATO_TEST_SNAPSHOT_GUEST=demo times
    // the demo image's server (README's figures).
    const guest = process.env.STRATO_TEST_SNAPSHOT_GUEST === 'demo' ? await cachedGuestImage() : undefined
    let imageRef = cloud.image.id
    let flavorRef = cloud.flavor.id
    let what = 'the boot-sector image'
    if (guest) {
      const img = await call<Image>(cloud.c.images, 'createImage', { name: 'demo-guest', diskFormat: 'qcow2', containerFormat: 'bare', visibility: 'public' }, token())
      await uploadImage(cloud.c.images, token(), img.id, readFileSync(guest))
      const f = await call<Flavor>(cloud.c.flavors, 'createFlavor', { id: '2', name: 'm1.micro', vcpus: 1, ram: 128, disk: 1 }, token())
      imageRef = img.id
      flavorRef = f.id
      what = 'the demo guest image (m1.micro)'
    }
    const id = await boot('snap-running', imageRef, flavorRef)
    // A guest left paused (as a snapshot an agent restart interrupted leaves it) runs again after the next one.
    await virsh('suspend', `instance-${id}`)
    t.equal(await virshPowerState(`instance-${id}`), PowerState.PAUSED, 'virsh: paused behind Strato\'s back')
    await snapshot(id, 'after-a-pause')
    t.equal(await virshPowerState(`instance-${id}`), PowerState.RUNNING, 'virsh: running after the snapshot')
    const times: number[] = []
    for (let i = 0; i < 5; i++) {
      const { image, ms, server } = await snapshot(id, `running-${i}`)
      t.equal(image.status, 'active', `snapshot ${i}: active`)
      t.match(server, { status: 'ACTIVE', powerState: PowerState.RUNNING }, `snapshot ${i}: the server is ACTIVE and running`)
      t.equal(await virshPowerState(`instance-${id}`), PowerState.RUNNING, `snapshot ${i}: virsh: running (resumed after the copy)`)
      times.push(ms)
    }
    times.sort((x, y) => x - y)
    // How long the guest stood paused: the driver logs both ends (pino JSON lines, `time` in ms).
    const events = agent.log().split('\n').flatMap((l) => {
      try {
        const e = JSON.parse(l) as { msg?: string; instance?: string; time?: number }
        return e.instance === id && (e.msg === 'paused' || e.msg === 'unpaused') ? [e] : []
      } catch {
        return []
      }
    })
    const pauses = events.flatMap((e, i) => (e.msg === 'unpaused' && events[i - 1]?.msg === 'paused' ? [e.time! - events[i - 1]!.time!] : [])).sort((x, y) => x - y)
    t.equal(pauses.length, 5, 'the guest was paused and resumed once per snapshot')
    t.comment(`snapshot of a running server of ${what}: median ${times[2]!.toFixed(0)} ms of 5 (${times.map((x) => x.toFixed(0)).join(', ')} ms; API call to image active); guest paused for a median ${pauses[2]} ms (${pauses.join(', ')} ms)`)
    t.equal((await get(id)).taskState, '')
  })
}
