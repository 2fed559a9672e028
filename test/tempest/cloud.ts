/**
 * A cloud for Tempest: a real nats-server and controller with its REST
 * listener, agents (the fake virt driver for the quick subset in `npm test`,
 * libvirt for `npm run test:tempest`), the images, flavors and network
 * tempest.conf names, and a workspace.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { promisify } from 'node:util'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { startCloud, uploadImage, type TestCloud } from '../helpers/cloud.js'
import { call } from '../helpers/grpc.js'
import { eventually } from '../helpers/agents.js'
import { spawnAgent, type AgentProcess } from '../helpers/agent-process.js'
import { ensureLibvirtd } from '../helpers/libvirt.js'
import { libvirtNbdTls } from '../helpers/nbd-tls.js'
import type { Image } from '../../proto/gen/strato/image/v1/image.js'
import type { Flavor } from '../../proto/gen/strato/compute/v1/compute.js'
import { bootDiskImage } from '../fixtures/boot-sector.js'
import { runTempest, writeTempestWorkspace, type TempestResult } from './workspace.js'

export interface TempestCloud {
  cloud: TestCloud
  dir: string
  configFile: string
  /** Runs the tests matching `regex`, less those in exclude.txt. */
  run(regex: string, opts?: { concurrency?: number }): Promise<TempestResult>
  close(): Promise<void>
}

const run = promisify(execFile)

export const EXCLUDE_LIST = path.join(import.meta.dirname, 'exclude.txt')

export async function startTempestCloud(o: { driver: 'fake' | 'libvirt' }): Promise<TempestCloud> {
  // Tempest's dynamic credentials need Keystone's default: an admin of any project is a cloud admin.
  const controller = { bootstrap: { anyProjectAdmin: true }, hosts: { heartbeatIntervalMs: 500, missedHeartbeats: 10 }, servers: { castRetryMs: 1_000, agentCallTimeoutMs: 20_000 } }
  // A fake guest prints a boot log of a few lines, as any real guest does: Tempest's console tests count more than 3.
  const fakeAgent = { fake: { consoleBanner: (g: { name: string; uuid: string }) => `SeaBIOS (version fake)\nBooting from Hard Disk...\nfake guest ${g.name} ${g.uuid} booted\n${g.name} login:` } }
  const cloud = await startCloud(o.driver === 'fake' ? { controller, agent: fakeAgent } : { hosts: [], controller })
  // libvirt: one agent process on a bridge of this run's own (no uplink: nothing leaves the machine).
  const bridge = `brt-${randomBytes(3).toString('hex')}`
  let agent: AgentProcess | undefined
  const scratch = mkdtempSync(path.join(tmpdir(), 'strato-tempest-img-'))
  const close = async () => {
    await agent?.remove()
    await cloud.close()
    rmSync(scratch, { recursive: true, force: true })
    if (o.driver === 'libvirt') await run('ip', ['link', 'del', bridge]).catch(() => {})
  }
  try {
    if (o.driver === 'libvirt') {
      await ensureLibvirtd()
      // Multiattach volumes are NBD exports even on their own host: the host serves them on loopback, and
      // this machine's libvirt presents the host's client certificate (/etc/pki/qemu) of the same CA.
      const host = 'tempest-1'
      const tls = await libvirtNbdTls(scratch, host)
      agent = await spawnAgent({
        host, natsUrl: cloud.nats.url, driver: 'libvirt',
        env: {
          STRATO_AGENT_CONTROLLER: cloud.s.address, STRATO_AGENT_BRIDGE_MAPPINGS: `provider:${bridge}`, STRATO_AGENT_SHUTDOWN_TIMEOUT_MS: '3000', STRATO_AGENT_POWER_SYNC_INTERVAL_MS: '1000', STRATO_AGENT_DISK_GB: '50',
          STRATO_AGENT_VOLUME_EXPORT_ADDRESS: '127.0.0.1', STRATO_AGENT_VOLUME_EXPORT_TLS_DIR: tls.serverDir,
        },
      })
      await agent.running(60_000)
      await eventually(async () => (await cloud.s.controller.hosts.discover()).mapped.length > 0 || undefined, 10_000, 'the host to be discovered')
    }
    const { s, c } = cloud
    const rest = s.controller.rest!.origin
    // The alternative image and flavor some tests rebuild or resize to.
    const alt = await call<Image>(c.images, 'createImage', { name: 'cirros-alt', diskFormat: 'qcow2', containerFormat: 'bare', visibility: 'public' }, s.adminToken)
    const altFile = await bootDiskImage({ line: `${cloud.marker}-alt`, path: path.join(scratch, 'alt.qcow2'), sizeMiB: 16 })
    await uploadImage(c.images, s.adminToken, alt.id, readFileSync(altFile))
    const flavorAlt = await call<Flavor>(c.flavors, 'createFlavor', { id: '2', name: 'm1.micro', vcpus: 1, ram: 96, disk: 1 }, s.adminToken)
    const headers = { 'x-auth-token': s.adminToken }
    const ext = (await (await fetch(`${rest}/network/v2.0/extensions`, { headers })).json()) as { extensions?: Array<{ alias: string }> }
    const version = (await (await fetch(`${rest}/compute/v2.1`, { headers })).json()) as { version?: { version?: string } }
    const dir = mkdtempSync(path.join(tmpdir(), 'strato-tempest-'))
    const configFile = writeTempestWorkspace(dir, {
      authUrl: `${rest}/identity/v3`,
      region: 'RegionOne',
      admin: { user: s.openrc.OS_USERNAME!, password: s.openrc.OS_PASSWORD!, project: s.openrc.OS_PROJECT_NAME!, domain: 'Default' },
      caFile: s.caFile,
      imageRef: cloud.image.id,
      imageRefAlt: alt.id,
      flavorRef: cloud.flavor.id,
      flavorRefAlt: flavorAlt.id,
      networkName: cloud.network.name,
      publicNetworkId: cloud.network.id,
      networkExtensions: (ext.extensions ?? []).map((e) => e.alias),
      computeMaxMicroversion: version.version?.version || '2.1',
    })
    return {
      cloud, dir, configFile,
      run: (regex, opts = {}) => runTempest(dir, configFile, regex, { excludeList: EXCLUDE_LIST, concurrency: opts.concurrency ?? 2 }),
      close,
    }
  } catch (err) {
    await close()
    throw err
  }
}

