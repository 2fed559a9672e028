#!/usr/bin/env node
/**
 * `npm run start:cluster`: the scaled-out shape on one machine, for trying
 * it — a private PostgreSQL cluster (`<home>/postgres`), a 3-node NATS
 * cluster (JetStream streams with 3 replicas), two controllers on that one
 * database and that cluster (different gRPC/REST ports, one data dir: the
 * same signing keys, CA and image files), and the local agent given every
 * NATS URL. In the foreground like `npm start` (run.ts), whose pieces it
 * uses; Ctrl-C stops everything. It prints the addresses and writes
 * admin-openrc (first controller) and admin-openrc-2 (second).
 */
import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs'
import type { ChildProcess } from 'node:child_process'
import path from 'node:path'
import pg from 'pg'
import { registerDemo } from './demo.js'
import { readOpenrc, writeOpenrc } from '../../controller/identity/bootstrap.js'
import { REST_PREFIX } from '../../controller/rest/http.js'
import { loadConfig } from '../../controller/config.js'
import { createLogger } from '../../controller/log.js'
import { Controller } from '../../controller/server.js'
import { writePrivateFile } from '../../proto/private-file.js'
import { loadStackConfig } from './config.js'
import { prepareStackNatsCluster } from './nats-auth.js'
import { clusterPaths, initCluster, startCluster, stopCluster } from './postgres.js'
import { mapLocalHost, portFree, startAgent, startNatsServer, stopChild } from './processes.js'

process.umask(0o077)
const cfg = loadStackConfig()
const log = createLogger({ name: 'strato', level: cfg.logLevel, pretty: true })
const NATS_NODES = 3
const CONTROLLERS = 2
const DATABASE = 'strato'

/** The second controller's openrc: the first's, beside it, with `-2`. */
const openrcOf = (i: number) => (i === 0 ? cfg.openrc : `${cfg.openrc}-${i + 1}`)

/**
 * The stack's PostgreSQL: made at first start in `<home>/postgres` (its
 * superuser's password kept in `<home>/postgres.secret`, 0600), started on
 * 127.0.0.1, and its database `strato` made when missing. Returns its URL.
 */
async function startPostgres(dir: string): Promise<string> {
  const secret = path.join(cfg.home, 'postgres.secret')
  if (!existsSync(secret)) writePrivateFile(secret, randomBytes(18).toString('hex'))
  const password = readFileSync(secret, 'utf8').trim()
  initCluster(dir, 'strato', password)
  startCluster(dir, cfg.postgresPort)
  const url = (db: string) => `postgres://strato:${password}@127.0.0.1:${cfg.postgresPort}/${db}`
  const admin = new pg.Client({ connectionString: url('postgres') })
  await admin.connect()
  try {
    if (!(await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE])).rowCount) await admin.query(`CREATE DATABASE "${DATABASE}"`)
  } finally {
    await admin.end()
  }
  return url(DATABASE)
}

async function main(): Promise<void> {
  const ports: Array<[string, number, string]> = [
    ...Array.from({ length: NATS_NODES }, (_, i): [string, number, string] => [`NATS node ${i + 1}`, cfg.natsPort + i, 'STRATO_NATS_PORT']),
    ...Array.from({ length: NATS_NODES }, (_, i): [string, number, string] => [`NATS route ${i + 1}`, cfg.natsRoutePort + i, 'STRATO_NATS_ROUTE_PORT']),
    ...Array.from({ length: CONTROLLERS }, (_, i): [string, number, string] => [`controller ${i + 1} gRPC`, cfg.grpcPort + 2 * i, 'STRATO_GRPC_PORT']),
    ...(cfg.restPort === null ? [] : Array.from({ length: CONTROLLERS }, (_, i): [string, number, string] => [`controller ${i + 1} REST`, cfg.restPort! + 2 * i, 'STRATO_REST_PORT'])),
    ['PostgreSQL', cfg.postgresPort, 'STRATO_POSTGRES_PORT'],
  ]
  for (const [what, p, env] of ports) {
    if (!(await portFree(p, cfg.host))) throw new Error(`${what}'s port ${cfg.host}:${p} is in use (another stack?). Choose others with ${env}=...`)
  }
  // The home: others may pass through (not list) it, so PostgreSQL (user postgres) reaches its
  // directory and QEMU the guests' disks; everything in it is 0700, but for what QEMU reads.
  mkdirSync(cfg.home, { recursive: true, mode: 0o711 })
  chmodSync(cfg.home, 0o711)
  const natsDir = path.join(cfg.home, 'nats-cluster')
  mkdirSync(natsDir, { recursive: true, mode: 0o700 })
  const pgDir = path.join(cfg.home, 'postgres')

  const children: { nats: ChildProcess[]; agent?: ChildProcess } = { nats: [] }
  const controllers: Controller[] = []
  let pgStarted = false
  let stopping = false
  const stop = async (signal: string, code = 0) => {
    if (stopping) return
    stopping = true
    log.info({ signal }, 'stopping the stack')
    await stopChild(children.agent)
    for (const c of [...controllers].reverse()) await c.stop().catch((err) => log.error({ err }, 'controller did not stop cleanly'))
    await Promise.all(children.nats.map(stopChild))
    if (pgStarted) stopCluster(pgDir)
    log.info('stack stopped')
    process.exit(code)
  }
  process.on('SIGINT', () => void stop('SIGINT'))
  process.on('SIGTERM', () => void stop('SIGTERM'))

  try {
    const databaseUrl = await startPostgres(pgDir)
    pgStarted = true
    log.info({ address: `127.0.0.1:${cfg.postgresPort}`, database: DATABASE, dir: pgDir, log: clusterPaths(pgDir).logFile }, 'PostgreSQL running')

    const nats = await prepareStackNatsCluster({ natsDir, host: cfg.host, port: cfg.natsPort, routePort: cfg.natsRoutePort, size: NATS_NODES, agentHost: cfg.agentHost, caDir: path.join(cfg.home, 'controller', 'tls') })
    children.nats = await Promise.all(nats.nodes.map((n) => startNatsServer(n.configFile, path.join(natsDir, `${n.name}.log`), n.port, cfg.host, log)))
    for (const [i, proc] of children.nats.entries()) {
      proc.once('exit', (code) => {
        if (!stopping) log.error({ code, node: nats.nodes[i]!.name }, 'a NATS node exited; the cluster goes on with the others (restart the stack to bring it back)')
      })
    }
    log.info({ urls: nats.url, store: natsDir }, `NATS cluster running: ${NATS_NODES} nodes, routes on ${cfg.host}:${cfg.natsRoutePort}-${cfg.natsRoutePort + NATS_NODES - 1} (TLS, credentials required)`)

    // One after the other: the first makes the signing keys, the CA and the admin (first run); the second finds them.
    for (let i = 0; i < CONTROLLERS; i++) {
      const controller = new Controller(
        loadConfig({
          dataDir: path.join(cfg.home, 'controller'),
          grpc: { host: cfg.host, port: cfg.grpcPort + 2 * i, publicAddress: null },
          rest: { host: null, port: cfg.restPort === null ? null : cfg.restPort + 2 * i, publicUrl: null },
          databaseUrl,
          natsUrl: nats.url,
          natsCredsFile: nats.controllerCreds,
          natsCaFile: nats.caFile,
          natsOperatorDir: nats.operatorDir,
          // The second controller does not bootstrap (the database has the admin); its openrc is written below.
          bootstrap: { openrcPath: i === 0 ? cfg.openrc : null },
          log: { level: cfg.logLevel, pretty: true },
        }),
        log.child({ component: `controller-${i + 1}` }),
      )
      await controller.start()
      controllers.push(controller)
    }
    const [first] = controllers as [Controller, ...Controller[]]
    const openrc = readOpenrc(cfg.openrc)
    for (const [i, c] of controllers.entries()) if (i > 0) writeOpenrc(openrcOf(i), { ...openrc, OS_AUTH_URL: c.url })
    await registerDemo(first.address, openrc, log.child({ component: 'demo' }))
    children.agent = await startAgent(cfg, log, { controllerAddress: first.url, caFile: first.tls?.caFile ?? nats.caFile, natsUrl: nats.url, natsCreds: nats.agentCreds, homeReady: true, ...(first.joinIssuer ? { issuer: first.joinIssuer } : {}) })
    if (children.agent) await mapLocalHost(first, children.agent, log, () => stopping)

    for (const [i, c] of controllers.entries()) {
      const rest = c.rest ? `, REST ${c.rest.url(REST_PREFIX.identity)}/v3` : ''
      log.info(`controller ${i + 1}: ${c.url}${rest}  (. ${path.relative(process.cwd(), openrcOf(i)) || openrcOf(i)})`)
    }
    log.info(`NATS: ${nats.url}  PostgreSQL: 127.0.0.1:${cfg.postgresPort}/${DATABASE}`)
    log.info(`Strato cluster is up: ${CONTROLLERS} controllers, ${NATS_NODES} NATS nodes, PostgreSQL. Ctrl-C here stops it.`)
  } catch (err) {
    log.fatal((err as Error).message)
    await stop('start failed', 1)
  }
}

void main()
