/**
 * Runs a real controller in-process for functional tests: temp data dir, a
 * free loopback port, first-run bootstrap writing admin-openrc, and typed
 * clients for the identity services. Admin credentials are read back from
 * the openrc file, as a user would.
 *
 * The listener is plaintext on 127.0.0.1 unless the test asks for TLS
 * (`tls: { mode: 'on' }`): explicit, loopback only, and it keeps the suites
 * that are not about TLS from paying for a CA and handshakes. With TLS on,
 * `credentials` trusts the controller's CA and the clients use it.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import type { ChannelCredentials } from '@grpc/grpc-js'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { pino } from 'pino'
import { loadConfig, type ConfigOverrides } from '../../controller/config.js'
import { readOpenrc } from '../../controller/identity/bootstrap.js'
import { Controller } from '../../controller/server.js'
import {
  CatalogClient, DomainsClient, ProjectsClient, RolesClient, TokensClient, UsersClient, type IssueTokenResponse,
} from '../../proto/gen/strato/identity/v1/identity.js'
import { call, client, tlsCredentials, type Decoded } from './grpc.js'
import { credentials as grpcCredentials } from '@grpc/grpc-js'
import { natsCredsFor } from './nats.js'
import { testingOnPostgres, testDatabaseUrl } from './postgres.js'

export interface TestController {
  controller: Controller
  address: string
  /** What clients of `address` need: plaintext, or TLS trusting the controller's CA. */
  credentials: ChannelCredentials
  /** The CA file clients trust (OS_CACERT), when TLS is on. */
  caFile: string | null
  dataDir: string
  openrc: Record<string, string>
  clients: {
    tokens: TokensClient
    domains: DomainsClient
    projects: ProjectsClient
    users: UsersClient
    roles: RolesClient
    catalog: CatalogClient
  }
  /** An admin token scoped to project admin. */
  adminToken: string
  /** Issues a token by password: project scope by name (+domain), domain scope, or none. */
  login(user: string, password: string, opts?: { domain?: string; project?: string; projectDomain?: string; scopeDomain?: string }): Promise<Decoded<IssueTokenResponse>>
  close(): Promise<void>
}

/** The openrc the controller wrote, as a map (the controller's own reader). */
export const parseOpenrc = readOpenrc

/** The PostgreSQL database of each data dir (STRATO_TEST_DATABASE=postgres), as the SQLite file lives in it. */
const postgresByDataDir = new Map<string, string>()

export async function startController(overrides: ConfigOverrides = {}, dataDir = mkdtempSync(path.join(tmpdir(), 'strato-ctl-'))): Promise<TestController> {
  const openrcPath = path.join(dataDir, 'admin-openrc')
  // A test nats-server with auth: connect with its controller credentials.
  const natsCredsFile = overrides.natsUrl ? natsCredsFor(overrides.natsUrl)?.controllerCreds : undefined
  // STRATO_TEST_DATABASE=postgres: a fresh database on this process's private cluster instead of
  // <dataDir>/strato.db, and the same one again when a test restarts a controller on its data dir.
  let databaseUrl: string | undefined
  if (!overrides.databaseUrl && testingOnPostgres()) {
    databaseUrl = postgresByDataDir.get(dataDir) ?? (await testDatabaseUrl())
    postgresByDataDir.set(dataDir, databaseUrl)
  }
  const cfg = loadConfig({ dataDir, tls: { mode: 'off' }, ...(natsCredsFile ? { natsCredsFile } : {}), ...(databaseUrl ? { databaseUrl } : {}), ...overrides, bootstrap: { openrcPath, ...overrides.bootstrap }, grpc: { host: '127.0.0.1', port: 0, publicAddress: null, ...overrides.grpc }, rest: { host: null, port: 0, publicUrl: null, ...overrides.rest } }, {})
  const controller = new Controller(cfg, pino({ level: process.env.STRATO_TEST_LOG ?? 'silent' }))
  await controller.start()
  const address = controller.address
  const caFile = controller.tls?.caFile ?? null
  const credentials = caFile ? tlsCredentials(readFileSync(caFile)) : grpcCredentials.createInsecure()
  const clients = {
    tokens: client(TokensClient, address, credentials),
    domains: client(DomainsClient, address, credentials),
    projects: client(ProjectsClient, address, credentials),
    users: client(UsersClient, address, credentials),
    roles: client(RolesClient, address, credentials),
    catalog: client(CatalogClient, address, credentials),
  }
  const openrc = parseOpenrc(cfg.bootstrap.openrcPath ?? openrcPath)
  const login: TestController['login'] = (user, password, opts = {}) => {
    const scope = opts.project
      ? { project: { name: opts.project, domain: { name: opts.projectDomain ?? opts.domain ?? 'Default' } } }
      : opts.scopeDomain
        ? { domain: { name: opts.scopeDomain } }
        : undefined
    return call<IssueTokenResponse>(clients.tokens, 'issueToken', {
      identity: { methods: ['password'], password: { user: { name: user, domain: { name: opts.domain ?? 'Default' }, password } } },
      ...(scope ? { scope } : {}),
    })
  }
  const admin = await login(openrc.OS_USERNAME!, openrc.OS_PASSWORD!, { project: openrc.OS_PROJECT_NAME! })
  return {
    controller,
    address,
    credentials,
    caFile,
    dataDir,
    openrc,
    clients,
    adminToken: admin.token,
    login,
    async close() {
      for (const c of Object.values(clients)) c.close()
      await controller.stop()
      rmSync(dataDir, { recursive: true, force: true })
    },
  }
}
