/**
 * What DevStack leaves behind so a first user can boot right away, done the
 * way DevStack does it — through the API as admin: the public image
 * `cirros-0.3.4-x86_64-disk` (a 512-byte boot sector that prints a line on the
 * serial console and powers off on ACPI; nothing is downloaded) and flavor
 * `m1.nano` (id 42: 1 vCPU, 64 MiB, 1 GiB). Each is made only when missing.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { credentials, Metadata, type Client, type ServiceError } from '@grpc/grpc-js'
import type { Logger } from 'pino'
import { TokensClient, type IssueTokenResponse } from '../../proto/gen/strato/identity/v1/identity.js'
import { ImagesClient, type Image, type ListImagesResponse } from '../../proto/gen/strato/image/v1/image.js'
import { FlavorsClient, type Flavor, type ListFlavorsResponse } from '../../proto/gen/strato/compute/v1/compute.js'
import { bootDiskImage } from './boot-sector.js'

export const DEMO_IMAGE = 'cirros-0.3.4-x86_64-disk'
export const DEMO_FLAVOR = { id: '42', name: 'm1.nano', vcpus: 1, ram: 64, disk: 1 }
/** What the demo guest prints on its console. */
export const DEMO_LINE = 'Strato demo guest: booted from cirros-0.3.4-x86_64-disk. Hello!'

type Unary<Req, Res> = (req: Req, md: Metadata, cb: (err: ServiceError | null, res: Res) => void) => unknown

function unary<Req, Res>(fn: Unary<Req, Res>, c: Client, req: Req, token?: string): Promise<Res> {
  const md = new Metadata()
  if (token) md.set('x-auth-token', token)
  return new Promise((resolve, reject) => fn.call(c, req, md, (err, res) => (err ? reject(err) : resolve(res))))
}

/** A project-scoped token for the credentials of an openrc (the admin's, as bootstrap wrote it). */
export async function openrcToken(address: string, openrc: Record<string, string>): Promise<string> {
  const tokens = new TokensClient(address, credentials.createInsecure())
  try {
    const { token = '' } = await unary<object, IssueTokenResponse>(tokens.issueToken, tokens, {
      identity: { methods: ['password'], password: { user: { name: openrc.OS_USERNAME, domain: { name: openrc.OS_USER_DOMAIN_NAME ?? 'Default' }, password: openrc.OS_PASSWORD } } },
      scope: { project: { name: openrc.OS_PROJECT_NAME, domain: { name: openrc.OS_PROJECT_DOMAIN_NAME ?? 'Default' } } },
    })
    return token
  } finally {
    tokens.close()
  }
}

export async function registerDemo(address: string, openrc: Record<string, string>, log: Logger): Promise<void> {
  const creds = credentials.createInsecure()
  const images = new ImagesClient(address, creds)
  const flavors = new FlavorsClient(address, creds)
  try {
    const token = await openrcToken(address, openrc)

    const listed = await unary<object, ListImagesResponse>(images.listImages, images, { name: DEMO_IMAGE }, token)
    if (!(listed.images ?? []).some((i) => i.name === DEMO_IMAGE && i.status === 'active')) {
      const scratch = await mkdtemp(path.join(tmpdir(), 'strato-demo-'))
      try {
        const file = await bootDiskImage({ line: DEMO_LINE, path: path.join(scratch, 'disk.qcow2'), sizeMiB: 16 })
        const data = await readFile(file)
        const image = await unary<object, Image>(images.createImage, images, { name: DEMO_IMAGE, diskFormat: 'qcow2', containerFormat: 'bare', visibility: 'public' }, token)
        await new Promise<Image>((resolve, reject) => {
          const md = new Metadata()
          md.set('x-auth-token', token)
          const st = images.uploadImage(md, (err: ServiceError | null, res: Image) => (err ? reject(err) : resolve(res)))
          st.write({ imageId: image.id, size: data.length, data })
          st.end()
        })
        log.info({ image: image.id, imageName: DEMO_IMAGE }, 'registered the demo image (a boot sector that prints one line on the serial console)')
      } finally {
        await rm(scratch, { recursive: true, force: true })
      }
    }

    const known = await unary<object, ListFlavorsResponse>(flavors.listFlavors, flavors, { isPublic: 'all' }, token)
    if (!(known.flavors ?? []).some((f: Flavor) => f.name === DEMO_FLAVOR.name || f.id === DEMO_FLAVOR.id)) {
      await unary<object, Flavor>(flavors.createFlavor, flavors, { ...DEMO_FLAVOR, isPublic: true }, token)
      log.info({ flavor: DEMO_FLAVOR }, 'registered flavor m1.nano')
    }
  } finally {
    images.close()
    flavors.close()
  }
}
