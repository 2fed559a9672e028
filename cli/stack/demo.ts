/**
 * What DevStack leaves behind so a first user can boot right away, done the
 * way DevStack does it — through the API as admin, each made only when
 * missing:
 *   - the public image `cirros-0.3.4-x86_64-disk`: the demo guest built from
 *     Debian packages (cli/stack/guest/: DHCP or the config drive, SSH as
 *     `cirros`, a ready line on the serial console, power-off on ACPI), when
 *     setup could build it; otherwise the boot-sector image below, with a
 *     warning;
 *   - the public image `strato-boot-sector` (a 512-byte boot sector that
 *     prints a line on the serial console and powers off on ACPI; what fast
 *     tests boot);
 *   - flavors `m1.nano` (id 42: 1 vCPU, 64 MiB, 1 GiB; fits the boot sector)
 *     and `m1.micro` (id 84: 1 vCPU, 128 MiB, 1 GiB; fits the demo guest,
 *     whose kernel needs ≥ 80 MiB), as DevStack's.
 * Nothing is downloaded here.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { readFileSync } from 'node:fs'
import { credentials, Metadata, type ChannelCredentials, type Client, type ServiceError } from '@grpc/grpc-js'
import type { Logger } from 'pino'
import { TokensClient, type IssueTokenResponse } from '../../proto/gen/strato/identity/v1/identity.js'
import { ImagesClient, type Image, type ListImagesResponse } from '../../proto/gen/strato/image/v1/image.js'
import { FlavorsClient, type Flavor, type ListFlavorsResponse } from '../../proto/gen/strato/compute/v1/compute.js'
import { bootDiskImage } from './boot-sector.js'
import { cachedGuestImage, GUEST_MIN_RAM_MIB } from './guest/build.js'

/** The seed's demo image: the demo guest (or, when it could not be built, the boot sector). */
export const DEMO_IMAGE = 'cirros-0.3.4-x86_64-disk'
/** The boot-sector image, always there: it boots in about a second, on m1.nano. */
export const BOOT_SECTOR_IMAGE = 'strato-boot-sector'
export const DEMO_FLAVOR = { id: '42', name: 'm1.nano', vcpus: 1, ram: 64, disk: 1 }
/** The flavor the demo guest fits. */
export const GUEST_FLAVOR = { id: '84', name: 'm1.micro', vcpus: 1, ram: 128, disk: 1 }
/** What the boot-sector image prints on its console. */
export const DEMO_LINE = 'Strato demo guest: booted from a boot sector. Hello!'

type Unary<Req, Res> = (req: Req, md: Metadata, cb: (err: ServiceError | null, res: Res) => void) => unknown

function unary<Req, Res>(fn: Unary<Req, Res>, c: Client, req: Req, token?: string): Promise<Res> {
  const md = new Metadata()
  if (token) md.set('x-auth-token', token)
  return new Promise((resolve, reject) => fn.call(c, req, md, (err, res) => (err ? reject(err) : resolve(res))))
}

/** How to reach the API an openrc names: TLS verified against its OS_CACERT when OS_AUTH_URL says grpcs://, else plaintext. */
export function openrcCredentials(openrc: Record<string, string>): ChannelCredentials {
  if (!(openrc.OS_AUTH_URL ?? '').startsWith('grpcs://')) return credentials.createInsecure()
  return credentials.createSsl(openrc.OS_CACERT ? readFileSync(openrc.OS_CACERT) : null)
}

/** A project-scoped token for the credentials of an openrc (the admin's, as bootstrap wrote it). */
export async function openrcToken(address: string, openrc: Record<string, string>): Promise<string> {
  const tokens = new TokensClient(address, openrcCredentials(openrc))
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

async function uploadImage(images: ImagesClient, token: string, name: string, file: string, minRam: number): Promise<Image> {
  const data = await readFile(file)
  const image = await unary<object, Image>(images.createImage, images, { name, diskFormat: 'qcow2', containerFormat: 'bare', visibility: 'public', minRam }, token)
  return new Promise<Image>((resolve, reject) => {
    const md = new Metadata()
    md.set('x-auth-token', token)
    const st = images.uploadImage(md, (err: ServiceError | null, res: Image) => (err ? reject(err) : resolve(res)))
    st.write({ imageId: image.id, size: data.length, data })
    st.end()
  })
}

export async function registerDemo(address: string, openrc: Record<string, string>, log: Logger): Promise<void> {
  const creds = openrcCredentials(openrc)
  const images = new ImagesClient(address, creds)
  const flavors = new FlavorsClient(address, creds)
  const scratch = await mkdtemp(path.join(tmpdir(), 'strato-demo-'))
  try {
    const token = await openrcToken(address, openrc)
    const active = async (name: string) => ((await unary<object, ListImagesResponse>(images.listImages, images, { name }, token)).images ?? []).some((i) => i.name === name && i.status === 'active')
    let bootSector: string | undefined
    const bootSectorFile = async () => (bootSector ??= await bootDiskImage({ line: DEMO_LINE, path: path.join(scratch, 'boot-sector.qcow2'), sizeMiB: 16 }))

    if (!(await active(BOOT_SECTOR_IMAGE))) {
      const image = await uploadImage(images, token, BOOT_SECTOR_IMAGE, await bootSectorFile(), 0)
      log.info({ image: image.id, imageName: BOOT_SECTOR_IMAGE }, 'registered the boot-sector image (it prints one line on the serial console)')
    }
    if (!(await active(DEMO_IMAGE))) {
      const guest = await cachedGuestImage()
      if (guest !== undefined) {
        const image = await uploadImage(images, token, DEMO_IMAGE, guest, GUEST_MIN_RAM_MIB)
        log.info({ image: image.id, imageName: DEMO_IMAGE, flavor: GUEST_FLAVOR.name }, `registered the demo guest (Linux: ssh cirros@<its address>; boot it on ${GUEST_FLAVOR.name})`)
      } else {
        const image = await uploadImage(images, token, DEMO_IMAGE, await bootSectorFile(), 0)
        log.warn({ image: image.id, imageName: DEMO_IMAGE }, 'the demo guest image is not built (see the setup warning above; bash cli/stack/setup.sh builds it): registered the boot-sector image in its place')
      }
    }

    const known = await unary<object, ListFlavorsResponse>(flavors.listFlavors, flavors, { isPublic: 'all' }, token)
    for (const flavor of [DEMO_FLAVOR, GUEST_FLAVOR]) {
      if ((known.flavors ?? []).some((f: Flavor) => f.name === flavor.name || f.id === flavor.id)) continue
      await unary<object, Flavor>(flavors.createFlavor, flavors, { ...flavor, isPublic: true }, token)
      log.info({ flavor }, `registered flavor ${flavor.name}`)
    }
  } finally {
    images.close()
    flavors.close()
    await rm(scratch, { recursive: true, force: true })
  }
}
