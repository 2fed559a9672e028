/**
 * Tempest 33 (Debian's `tempest`) against a running Strato: a workspace with
 * a tempest.conf generated for the stack (its REST endpoint, admin
 * credentials, an image, two flavors, a network), the features Strato has
 * switched on and those it lacks switched off (each with its reason), and a
 * runner that returns the counts stestr reports. `run_validation = false`:
 * Tempest does not SSH into guests here.
 */
import { execFile } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { EXTENSIONS } from '../../controller/rest/volume.js'

export interface TempestTarget {
  /** e.g. `http://127.0.0.1:8771/identity/v3` */
  authUrl: string
  region: string
  admin: { user: string; password: string; project: string; domain: string }
  /** The CA of an HTTPS endpoint (OS_CACERT). */
  caFile?: string | null
  imageRef: string
  imageRefAlt: string
  flavorRef: string
  flavorRefAlt: string
  /** The network servers boot on (Tempest's `fixed_network_name`). */
  networkName: string
  /** An external network for floating IPs, when there is one. */
  publicNetworkId?: string
  /** Neutron extension aliases the stack serves (GET /network/v2.0/extensions). */
  networkExtensions: string[]
  /** The highest compute microversion the stack answers. */
  computeMaxMicroversion: string
}

/**
 * Features Tempest would test that Strato does not have: each is off in the
 * generated config, with why. Kept here, beside the config, so the README's
 * list and the config cannot disagree.
 */
export const FEATURES_OFF: Array<[section: string, option: string, reason: string]> = [
  ['compute-feature-enabled', 'resize', 'no resize or migration: one flavor per server for its life'],
  ['compute-feature-enabled', 'cold_migration', 'no migration'],
  ['compute-feature-enabled', 'live_migration', 'no migration'],
  ['compute-feature-enabled', 'shelve', 'no shelve'],
  ['compute-feature-enabled', 'shelve_migrate', 'no shelve'],
  ['compute-feature-enabled', 'suspend', 'no suspend'],
  ['compute-feature-enabled', 'pause', 'no pause'],
  ['compute-feature-enabled', 'rescue', 'no rescue'],
  ['compute-feature-enabled', 'change_password', 'no guest agent to set passwords'],
  ['compute-feature-enabled', 'interface_attach', 'no port hot-plug'],
  ['compute-feature-enabled', 'personality', 'file injection was removed from Nova in 2.57; Strato never had it'],
  ['compute-feature-enabled', 'vnc_console', 'no remote consoles (only the serial console log)'],
  ['compute-feature-enabled', 'spice_console', 'no remote consoles'],
  ['compute-feature-enabled', 'serial_console', 'no interactive serial console'],
  ['compute-feature-enabled', 'attach_encrypted_volume', 'no volume encryption'],
  ['compute-feature-enabled', 'swap_volume', 'no volume swap (PUT os-volume_attachments before 2.85)'],
  ['compute-feature-enabled', 'disk_config', 'no OS-DCF:diskConfig extension'],
  ['compute-feature-enabled', 'enable_instance_password', 'no admin passwords injected'],
  ['compute-feature-enabled', 'unified_limits', 'quotas are Nova-style quota sets'],
  ['identity-feature-enabled', 'trust', 'no trusts'],
  ['identity-feature-enabled', 'application_credentials', 'no application credentials'],
  ['identity-feature-enabled', 'access_rules', 'no application credentials'],
  ['identity-feature-enabled', 'security_compliance', 'no password-rule (PCI-DSS) options'],
  ['identity-feature-enabled', 'project_tags', 'no project tags'],
  ['identity-feature-enabled', 'domain_specific_drivers', 'one identity backend'],
  ['identity-feature-enabled', 'external_idp', 'no federation'],
  ['image-feature-enabled', 'import_image', 'no interoperable image import (upload only)'],
  ['image-feature-enabled', 'os_glance_reserved', 'no os_glance_* import properties'],
  ['image-feature-enabled', 'manage_locations', 'no image locations'],
  ['network-feature-enabled', 'ipv6', 'IPv4 subnets only'],
  ['network-feature-enabled', 'ipv6_subnet_attributes', 'IPv4 subnets only'],
  ['network-feature-enabled', 'port_admin_state_change', 'port admin state is not enforced on hosts'],
  ['service_available', 'swift', 'no object storage'],
  ['service_available', 'horizon', 'no dashboard'],
  ['validation', 'run_validation', 'Tempest does not SSH into guests here'],
]

/** Writes `<dir>/.stestr.conf` and `<dir>/etc/tempest.conf`; returns the config file's path. */
export function writeTempestWorkspace(dir: string, t: TempestTarget): string {
  const tempestDir = '/usr/lib/python3/dist-packages/tempest'
  mkdirSync(path.join(dir, 'etc'), { recursive: true })
  mkdirSync(path.join(dir, 'logs'), { recursive: true })
  mkdirSync(path.join(dir, 'lock'), { recursive: true })
  writeFileSync(path.join(dir, '.stestr.conf'), `[DEFAULT]\ntest_path=${tempestDir}/test_discover\ntop_dir=${tempestDir}\ngroup_regex=([^\\.]*\\.)*\n`)
  const sections: Record<string, Record<string, string>> = {
    DEFAULT: { log_dir: path.join(dir, 'logs'), log_file: 'tempest.log', use_stderr: 'false' },
    oslo_concurrency: { lock_path: path.join(dir, 'lock') },
    auth: {
      // Tempest makes its own projects and users; its "admin" is an admin of a fresh project, a cloud admin only with the controller's bootstrap.anyProjectAdmin.
      use_dynamic_credentials: 'true',
      admin_username: t.admin.user,
      admin_password: t.admin.password,
      admin_project_name: t.admin.project,
      admin_domain_name: t.admin.domain,
      default_credentials_domain_name: 'Default',
      create_isolated_networks: 'false',
    },
    identity: {
      uri_v3: t.authUrl,
      auth_version: 'v3',
      region: t.region,
      v3_endpoint_type: 'public',
      ...(t.caFile ? { ca_certificates_file: t.caFile } : {}),
    },
    'identity-feature-enabled': { api_v2: 'false', api_v3: 'true' },
    compute: {
      image_ref: t.imageRef,
      image_ref_alt: t.imageRefAlt,
      flavor_ref: t.flavorRef,
      flavor_ref_alt: t.flavorRefAlt,
      fixed_network_name: t.networkName,
      min_microversion: '2.1',
      max_microversion: t.computeMaxMicroversion,
      build_timeout: '120',
      endpoint_type: 'publicURL',
      region: t.region,
    },
    'compute-feature-enabled': { console_output: 'true', config_drive: 'true', metadata_service: 'true', volume_multiattach: 'true' },
    image: { region: t.region, endpoint_type: 'publicURL', container_formats: 'bare', disk_formats: 'raw,qcow2' },
    'image-feature-enabled': { api_v2: 'true', api_v1: 'false' },
    network: {
      region: t.region,
      endpoint_type: 'publicURL',
      project_networks_reachable: 'false',
      ...(t.publicNetworkId ? { public_network_id: t.publicNetworkId } : {}),
    },
    'network-feature-enabled': { api_extensions: t.networkExtensions.join(',') || 'None' },
    volume: { catalog_type: 'volumev3', endpoint_type: 'publicURL', region: t.region, volume_size: '1', min_microversion: '3.0', max_microversion: '3.0', build_timeout: '120' },
    'volume-feature-enabled': { api_v3: 'true', snapshot: 'true', clone: 'true', api_extensions: EXTENSIONS.map(([alias]) => alias).join(',') },
    service_available: { nova: 'true', glance: 'true', neutron: 'true', cinder: 'true' },
    validation: {},
  }
  for (const [section, option] of FEATURES_OFF) (sections[section] ??= {})[option] = 'false'
  const text = Object.entries(sections)
    .map(([name, opts]) => `[${name}]\n${Object.entries(opts).map(([k, v]) => `${k} = ${v}`).join('\n')}\n`)
    .join('\n')
  const file = path.join(dir, 'etc', 'tempest.conf')
  writeFileSync(file, text, { mode: 0o600 })
  return file
}

export interface TempestResult {
  passed: number
  skipped: number
  failed: number
  /** Test ids that failed. */
  failures: string[]
  output: string
}

/**
 * Runs `tempest run` in the workspace with a regex (and an exclude list: one
 * regex per line, `#` comments, the reason after the regex). Resolves with
 * the counts whatever the outcome; rejects only when Tempest could not run.
 */
export function runTempest(dir: string, configFile: string, regex: string, opts: { excludeList?: string; concurrency?: number; timeoutMs?: number } = {}): Promise<TempestResult> {
  const args = ['run', '--config-file', configFile, '--regex', regex, '--concurrency', String(opts.concurrency ?? 2)]
  if (opts.excludeList) args.push('--exclude-list', opts.excludeList)
  return new Promise((resolve, reject) => {
    execFile('tempest', args, { cwd: dir, maxBuffer: 64 << 20, timeout: opts.timeoutMs ?? 3_600_000, env: { ...process.env, HOME: dir } }, (err, stdout, stderr) => {
      const output = `${stdout}\n${stderr}`
      const count = (what: string) => Number(new RegExp(`- ${what}: (\\d+)`).exec(output)?.[1] ?? NaN)
      const passed = count('Passed')
      if (Number.isNaN(passed)) return reject(new Error(`tempest did not run (${err?.message ?? 'no totals'}):\n${output.slice(-4000)}`))
      const failures = [...output.matchAll(/^\{\d+\} (.+?) \[[\d.]+s\] \.\.\. FAILED$/gm)].map((m) => m[1]!)
      resolve({ passed, skipped: count('Skipped'), failed: count('Failed'), failures, output })
    })
  })
}
