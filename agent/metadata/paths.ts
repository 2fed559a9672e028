/**
 * The paths of Nova's metadata API (`nova/api/metadata/base.py` and
 * `handler.py`), for one server: pure, no I/O. The OpenStack tree serves the
 * config drive's files (agent/disk/config-drive.ts, the same code); the
 * EC2-compatible tree is Nova's `get_ec2_metadata`, printed as Nova's
 * `ec2_md_print` does (a dict lists its keys, sorted; a sub-dict as `key/`).
 *
 * Content types are Nova's: application/json for meta_data.json,
 * vendor_data.json and vendor_data2.json, text/plain for everything else
 * (network_data.json too, as Nova serves it). Only GET and HEAD are answered
 * (Nova's one writable path, `password`, is not served): anything else is 405.
 */
import path from 'node:path'
import { configDriveFiles, metaData } from '../disk/config-drive.js'
import type { InstanceMetadata } from '../../proto/instance-metadata.js'

/** Nova's EC2 versions (`VERSIONS`); `latest` is the last. */
export const EC2_VERSIONS = ['1.0', '2007-01-19', '2007-03-01', '2007-08-29', '2007-10-10', '2007-12-15', '2008-02-01', '2008-09-01', '2009-04-04'] as const

const FOLSOM = '2012-08-10'
const GRIZZLY = '2013-04-04'
const HAVANA = '2013-10-17'
const LIBERTY = '2015-10-15'
const NEWTON_ONE = '2016-06-30'
const NEWTON_TWO = '2016-10-06'
/** Nova's `OPENSTACK_VERSIONS` (FOLSOM … EPOXY); `latest` is the last. */
export const OPENSTACK_VERSIONS = [FOLSOM, GRIZZLY, HAVANA, LIBERTY, NEWTON_ONE, NEWTON_TWO, '2017-02-22', '2018-08-27', '2020-10-14', '2025-04-04'] as const

export const TEXT = 'text/plain; charset=UTF-8'
export const JSON_TYPE = 'application/json'

export interface MetadataResponse {
  status: number
  contentType: string
  body: Buffer
  headers?: Record<string, string>
}

const text = (body: string | Buffer, status = 200): MetadataResponse => ({ status, contentType: TEXT, body: typeof body === 'string' ? Buffer.from(body) : body })
export const notFound = (): MetadataResponse => text('404 Not Found\n\nThe resource could not be found.\n', 404)
export const methodNotAllowed = (): MetadataResponse => ({ ...text('405 Method Not Allowed\n\nThe metadata service answers GET and HEAD only.\n', 405), headers: { allow: 'GET, HEAD' } })

/**
 * A request's path as Nova sees it: the query dropped, percent-decoded,
 * normalized (`..`, `//`), without a trailing slash. Undefined when it does
 * not decode.
 */
export function normalizePath(url: string): string | undefined {
  let p = url.split('?')[0] ?? ''
  try {
    p = decodeURIComponent(p)
  } catch {
    return undefined
  }
  p = path.posix.normalize(`/${p}`)
  return p.length > 1 ? p.replace(/\/+$/, '') : '/'
}

/** What `/` answers, before any instance is looked up (Nova's handler does the same). */
export function rootListing(): MetadataResponse {
  return text([...EC2_VERSIONS, 'latest'].join('\n'))
}

/**
 * The EC2 instance id: Nova's `i-%08x` is a per-cloud counter; Strato has
 * only uuids, so it takes the uuid's first 32 bits (8 hex digits), stable
 * for the server's life. `ami-%08x` comes from the image id the same way.
 */
export function ec2Id(prefix: 'i' | 'ami', uuid: string): string {
  return `${prefix}-${uuid.replaceAll('-', '').slice(0, 8).toLowerCase().padStart(8, '0')}`
}

type Ec2Value = string | string[] | Buffer | Ec2Tree
interface Ec2Tree {
  [key: string]: Ec2Value
}

/** One server's documents, made once per cache fill; `lookup` answers a path. */
export class InstanceDocuments {
  private readonly files: Map<string, Buffer>

  /** `address` is the request's source (EC2 local-ipv4 when the server has no fixed IPv4). */
  constructor(readonly meta: InstanceMetadata, private readonly address: string) {
    this.files = configDriveFiles(meta)
  }

  /** Answers a normalized path (see {@link normalizePath}); `today` hides future OpenStack versions, as Nova does. */
  lookup(p: string, today: Date = new Date()): MetadataResponse {
    if (p === '/') return rootListing()
    let tokens = p.split('/').slice(1)
    if (tokens[0] === 'openstack') return this.openstack(tokens.slice(1), today)
    if (tokens[0] === 'ec2') tokens = tokens.slice(1)
    if (tokens.length === 0) return rootListing()
    return this.ec2(tokens)
  }

  private openstack(tokens: string[], today: Date): MetadataResponse {
    if (tokens.length === 0) {
      const day = today.toISOString().slice(0, 10)
      return text([...OPENSTACK_VERSIONS.filter((v) => v <= day), 'latest'].join('\n'))
    }
    const [asked, ...rest] = tokens
    const version = asked === 'latest' ? OPENSTACK_VERSIONS[OPENSTACK_VERSIONS.length - 1]! : asked!
    if (!(OPENSTACK_VERSIONS as readonly string[]).includes(version)) return notFound()
    const since = (v: string) => version >= v
    if (rest.length === 0) {
      const names = ['meta_data.json']
      if (this.files.has('openstack/latest/user_data')) names.push('user_data')
      if (since(HAVANA)) names.push('vendor_data.json')
      if (since(LIBERTY)) names.push('network_data.json')
      if (since(NEWTON_TWO)) names.push('vendor_data2.json')
      return text(names.join('\n'))
    }
    const name = rest.join('/')
    switch (name) {
      case 'meta_data.json': {
        const md = metaData(this.meta)
        if (!since(GRIZZLY)) delete md.random_seed
        if (!since(LIBERTY)) delete md.project_id
        if (!since(NEWTON_ONE)) delete md.devices
        return { status: 200, contentType: JSON_TYPE, body: Buffer.from(JSON.stringify(md)) }
      }
      case 'user_data':
      case 'network_data.json': {
        const file = this.files.get(`openstack/latest/${name}`)
        return file ? text(file) : notFound()
      }
      case 'vendor_data.json':
      case 'vendor_data2.json':
        if (!since(name === 'vendor_data.json' ? HAVANA : NEWTON_TWO)) return notFound()
        return { status: 200, contentType: JSON_TYPE, body: this.files.get(`openstack/latest/${name}`)! }
      default:
        return notFound()
    }
  }

  private ec2(tokens: string[]): MetadataResponse {
    const [asked, ...rest] = tokens
    const version = asked === 'latest' ? EC2_VERSIONS[EC2_VERSIONS.length - 1]! : asked!
    if (!(EC2_VERSIONS as readonly string[]).includes(version)) return notFound()
    let node: Ec2Value = this.ec2Tree(version)
    for (const t of rest) {
      if (typeof node === 'string' || Array.isArray(node) || Buffer.isBuffer(node) || t === '_name' || !Object.hasOwn(node, t)) return notFound()
      node = node[t]!
    }
    return text(ec2Print(node))
  }

  /** Nova's `get_ec2_metadata(version)`. */
  private ec2Tree(version: string): Ec2Tree {
    const since = (v: string) => EC2_VERSIONS.indexOf(version as (typeof EC2_VERSIONS)[number]) >= EC2_VERSIONS.indexOf(v as (typeof EC2_VERSIONS)[number])
    const m = this.meta
    const fixed = m.nics.flatMap((n) => n.ips).filter((ip) => ip.ipVersion === 4).map((ip) => ip.address)
    const md: Ec2Tree = {
      'ami-id': ec2Id('ami', m.imageId),
      'ami-launch-index': '0',
      'ami-manifest-path': 'FIXME',
      'instance-id': ec2Id('i', m.instanceUuid),
      hostname: m.hostname,
      'local-ipv4': fixed[0] ?? this.address,
      'reservation-id': m.reservationId,
      'security-groups': m.securityGroups,
    }
    if (m.keyName && m.publicKey) md['public-keys'] = { 0: { _name: `0=${m.keyName}`, 'openssh-key': m.publicKey } }
    if (since('2007-01-19')) {
      md['local-hostname'] = m.hostname
      md['public-hostname'] = m.hostname
      md['public-ipv4'] = m.floatingIps[0] ?? ''
    }
    if (since('2007-08-29')) md['instance-type'] = m.flavorName
    if (since('2007-12-15')) md['block-device-mapping'] = { ami: 'vda', root: '/dev/vda' }
    if (since('2008-02-01')) md.placement = { 'availability-zone': m.availabilityZone }
    if (since('2008-09-01')) md['instance-action'] = 'none'
    const tree: Ec2Tree = { 'meta-data': md }
    const userData = this.files.get('openstack/latest/user_data')
    if (userData) tree['user-data'] = userData
    return tree
  }
}

/** Nova's `ec2_md_print`. */
function ec2Print(v: Ec2Value): string | Buffer {
  if (typeof v === 'string' || Buffer.isBuffer(v)) return v
  if (Array.isArray(v)) return v.join('\n')
  return Object.keys(v)
    .filter((k) => k !== '_name')
    .sort()
    .map((k) => {
      const child = v[k]!
      if (typeof child === 'string' || Array.isArray(child) || Buffer.isBuffer(child)) return k
      return typeof child._name === 'string' ? child._name : `${k}/`
    })
    .join('\n')
}
