/** `strato server image create` — openstackclient's `server image create` (Nova's createImage). */
import { setTimeout as sleep } from 'node:timers/promises'
import { ServersClient } from '../../../proto/gen/strato/compute/v1/servers.js'
import { ImagesClient, type Image } from '../../../proto/gen/strato/image/v1/image.js'
import type { Context } from '../context.js'
import { CliError } from '../errors.js'
import { flag, opt } from '../identity.js'
import type { Command } from '../registry.js'
import { findServer, keyValues, maybe } from '../resources.js'
import { imageFields } from './image.js'
import { listOpt } from './network.js'

/**
 * Polls the snapshot's image until it is active, as openstackclient's
 * `--wait` does; a snapshot that failed deletes its image, and the server's
 * fault says why.
 */
async function waitImage(ctx: Context, imageId: string, serverId: string): Promise<Image> {
  for (let n = 0; ; n++) {
    const image = await maybe(ctx.call(ImagesClient, 'getImage', { id: imageId }))
    if (image?.status === 'active') return image
    if (!image) {
      const s = await maybe(ctx.call(ServersClient, 'getServer', { id: serverId }))
      throw new CliError(`Error creating server snapshot: image ${imageId} is gone${s?.fault?.message ? `: ${s.fault.message}` : ''}`)
    }
    await sleep(Math.min(2000, 100 * 2 ** n))
  }
}

export const serverImageCommands: Command[] = [
  {
    name: 'server image create',
    summary: 'Create a new server disk image from an existing server',
    description:
      "The image (qcow2, private to the server's project) holds the server's root disk flattened into one file; a running server is paused only while its disk is copied. " +
      'It inherits the properties of the image the server booted from, plus image_type=snapshot, instance_uuid, base_image_ref, user_id and the --property values. ' +
      'Allowed while the server is ACTIVE or SHUTOFF with no task in progress. With --wait, returns once the image is active (or fails with the server\'s fault).',
    output: 'show',
    positionals: [{ name: 'server', help: 'Server to back up (name or ID)' }],
    options: [
      opt('--name', 'name', '<image-name>', 'Name of new disk image (default: server name)'),
      listOpt('--property', 'property', '<key=value>', 'Set a property on the new image, over those it inherits (repeat option to set multiple values)'),
      flag('--compress', 'compress', "Compress the image's data (qcow2 compressed clusters): smaller, slower to make and to boot from (Strato's own option)"),
      flag('--wait', 'wait', 'Wait for operation to complete'),
    ],
    async run(ctx, a) {
      const c = 'server image create'
      const metadata = keyValues(c, '--property', a.list('property'))
      const s = await findServer(ctx, a.pos('server'))
      const r = await ctx.call(ServersClient, 'createServerImage', { id: s.id ?? '', name: a.str('name') ?? s.name ?? '', metadata, compress: a.flag('compress') })
      const image = a.flag('wait') ? await waitImage(ctx, r.imageId ?? '', s.id ?? '') : await ctx.call(ImagesClient, 'getImage', { id: r.imageId ?? '' })
      return { kind: 'show', data: imageFields(image) }
    },
  },
]
