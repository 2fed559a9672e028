/**
 * First-run bootstrap, like `keystone-manage bootstrap`: domain Default (id
 * `default`), projects admin and service, roles admin → member → reader, user
 * admin with a generated password and the admin role on project admin. The
 * password is written only to the openrc file (mode 0600). Idempotent: an
 * already bootstrapped database is left alone.
 */
import { mkdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { writePrivateFile } from '../../proto/private-file.js'
import type { Logger } from '../log.js'
import { DEFAULT_DOMAIN_ID, type IdentityCatalog } from './catalog.js'
import { generatePassword } from './passwords.js'
import type { Db } from '../store/db.js'

export interface BootstrapResult {
  created: boolean
  adminPassword?: string
}

export interface BootstrapOptions {
  adminProjectName: string
  openrcPath: string
  authUrl: string
  caFile?: string | null
  region: string
  /** Keystone's URL on the REST listener (`…/identity/v3`): the OpenStack tools' openrc and clouds.yaml are written beside admin-openrc. */
  openstackAuthUrl?: string | null
}

export async function bootstrap(db: Db, catalog: IdentityCatalog, opts: BootstrapOptions, log: Logger): Promise<BootstrapResult> {
  const result = await bootstrapOnce(db, catalog, opts, log)
  if (opts.openstackAuthUrl) writeOpenstackFiles(opts.openrcPath, { authUrl: opts.openstackAuthUrl, caFile: opts.caFile ?? null, region: opts.region }, log)
  return result
}

async function bootstrapOnce(db: Db, catalog: IdentityCatalog, opts: BootstrapOptions, log: Logger): Promise<BootstrapResult> {
  const existing = await db.selectFrom('domains').select('id').where('id', '=', DEFAULT_DOMAIN_ID).executeTakeFirst()
  if (existing) {
    refreshEndpoint(opts.openrcPath, opts.authUrl, opts.caFile ?? null, log)
    return { created: false }
  }
  const password = generatePassword()
  await catalog.createDomain({ id: DEFAULT_DOMAIN_ID, name: 'Default', description: 'The default domain' })
  const admin = await catalog.createProject({ name: opts.adminProjectName, domainId: DEFAULT_DOMAIN_ID, description: 'Bootstrap project for initializing the cloud.' })
  await catalog.createProject({ name: 'service', domainId: DEFAULT_DOMAIN_ID, description: 'Service project' })
  const roles: Record<string, string> = {}
  for (const name of ['admin', 'member', 'reader']) roles[name] = (await catalog.createRole({ name })).id
  await catalog.createImpliedRole(roles.admin!, roles.member!)
  await catalog.createImpliedRole(roles.member!, roles.reader!)
  const user = await catalog.createUser({ name: 'admin', domainId: DEFAULT_DOMAIN_ID, password, defaultProjectId: admin.id })
  await catalog.grantRole({ roleId: roles.admin!, userId: user.id, projectId: admin.id })
  writeOpenrc(opts.openrcPath, {
    OS_AUTH_URL: opts.authUrl,
    // The CA that signed the API's certificate, read by clients as openstackclient reads it.
    ...(opts.caFile ? { OS_CACERT: opts.caFile } : {}),
    OS_PROJECT_DOMAIN_NAME: 'Default',
    OS_USER_DOMAIN_NAME: 'Default',
    OS_PROJECT_NAME: opts.adminProjectName,
    OS_USERNAME: 'admin',
    OS_PASSWORD: password,
    OS_REGION_NAME: opts.region,
    OS_IDENTITY_API_VERSION: '3',
  })
  log.info({ openrc: opts.openrcPath }, 'bootstrapped the cloud: domain Default, projects admin and service, roles admin/member/reader, user admin')
  return { created: true, adminPassword: password }
}

/**
 * An openrc written by an earlier run keeps its password and address, but
 * follows the listener's TLS: when TLS was turned on or off, or the CA moved,
 * the scheme of OS_AUTH_URL and OS_CACERT are rewritten so `. admin-openrc`
 * still reaches the API (e.g. a stack bootstrapped before TLS existed).
 */
function refreshEndpoint(file: string, authUrl: string, caFile: string | null, log: Logger): void {
  let vars: Record<string, string>
  try {
    vars = readOpenrc(file)
  } catch {
    return // none here (written elsewhere, or removed): nothing to keep current
  }
  const scheme = (url: string) => /^([a-z]+):\/\//.exec(url)?.[1] ?? ''
  if (!vars.OS_AUTH_URL || (scheme(vars.OS_AUTH_URL) === scheme(authUrl) && (vars.OS_CACERT ?? null) === caFile)) return
  const { OS_CACERT: _old, ...rest } = vars
  const next: Record<string, string> = {}
  for (const [k, v] of Object.entries(rest)) {
    next[k] = k === 'OS_AUTH_URL' ? `${scheme(authUrl)}://${v.replace(/^[a-z]+:\/\//, '')}` : v
    if (k === 'OS_AUTH_URL' && caFile) next.OS_CACERT = caFile
  }
  writeOpenrc(file, next)
  log.info({ openrc: file, authUrl }, 'admin-openrc now names the API as it listens (OS_AUTH_URL, OS_CACERT)')
}

/** The files the OpenStack tools read, beside admin-openrc: `openstack-openrc` (`. openstack-openrc; openstack …`) and `clouds.yaml` (`openstack --os-cloud strato …`). */
export function openstackFiles(openrcPath: string): { openrc: string; cloudsYaml: string } {
  const dir = path.dirname(openrcPath)
  return { openrc: path.join(dir, 'openstack-openrc'), cloudsYaml: path.join(dir, 'clouds.yaml') }
}

/** The name of the cloud in clouds.yaml. */
export const OPENSTACK_CLOUD = 'strato'

/**
 * Writes the OpenStack tools' openrc and clouds.yaml (0600) from admin-openrc's
 * credentials, naming Keystone on the REST listener as it listens now: the
 * same admin, project and region; OS_CACERT when the listener speaks TLS.
 * Rewritten at every start (the port or the CA may have changed); nothing is
 * written when there is no admin-openrc here to take the credentials from.
 */
export function writeOpenstackFiles(openrcPath: string, opts: { authUrl: string; caFile: string | null; region: string }, log: Logger): void {
  let admin: Record<string, string>
  try {
    admin = readOpenrc(openrcPath)
  } catch {
    return
  }
  const files = openstackFiles(openrcPath)
  const vars = {
    OS_AUTH_URL: opts.authUrl,
    OS_IDENTITY_API_VERSION: '3',
    OS_USERNAME: admin.OS_USERNAME ?? 'admin',
    OS_PASSWORD: admin.OS_PASSWORD ?? '',
    OS_PROJECT_NAME: admin.OS_PROJECT_NAME ?? 'admin',
    OS_USER_DOMAIN_NAME: admin.OS_USER_DOMAIN_NAME ?? 'Default',
    OS_PROJECT_DOMAIN_NAME: admin.OS_PROJECT_DOMAIN_NAME ?? 'Default',
    OS_REGION_NAME: opts.region,
    OS_INTERFACE: 'public',
    ...(opts.caFile ? { OS_CACERT: opts.caFile } : {}),
  }
  writeOpenrc(files.openrc, vars)
  // JSON strings are YAML scalars: no quoting rules of our own.
  const q = (v: string) => JSON.stringify(v)
  const yaml = [
    '# Written by Strato at every start, from admin-openrc: openstack --os-cloud strato …',
    'clouds:',
    `  ${OPENSTACK_CLOUD}:`,
    '    auth:',
    `      auth_url: ${q(vars.OS_AUTH_URL)}`,
    `      username: ${q(vars.OS_USERNAME)}`,
    `      password: ${q(vars.OS_PASSWORD)}`,
    `      project_name: ${q(vars.OS_PROJECT_NAME)}`,
    `      user_domain_name: ${q(vars.OS_USER_DOMAIN_NAME)}`,
    `      project_domain_name: ${q(vars.OS_PROJECT_DOMAIN_NAME)}`,
    `    region_name: ${q(opts.region)}`,
    '    interface: public',
    '    identity_api_version: 3',
    ...(opts.caFile ? [`    cacert: ${q(opts.caFile)}`] : []),
  ].join('\n') + '\n'
  writePrivateFile(files.cloudsYaml, yaml, { dirMode: 0o755 })
  log.debug({ openrc: files.openrc, cloudsYaml: files.cloudsYaml }, 'wrote the OpenStack tools\' openrc and clouds.yaml')
}

function shellQuote(v: string): string {
  return `'${v.replaceAll("'", "'\\''")}'`
}

/** Reads back what writeOpenrc wrote: `export K='V'` lines (shell-quoted) → a map. */
export function readOpenrc(file: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^export (\w+)='(.*)'$/.exec(line)
    if (m) out[m[1]!] = m[2]!.replaceAll("'\\''", "'")
  }
  return out
}

export function writeOpenrc(file: string, vars: Record<string, string>): void {
  writePrivateFile(file, Object.entries(vars).map(([k, v]) => `export ${k}=${shellQuote(v)}`).join('\n') + '\n', { dirMode: 0o755 })
}
