/** Every noun's commands. Adding a noun: write `commands/<noun>.ts` exporting a Command[], and list it here. */
import type { Command } from '../registry.js'
import { catalogCommands } from './catalog.js'
import { domainCommands } from './domain.js'
import { flavorCommands } from './flavor.js'
import { hostCommands } from './host.js'
import { imageCommands } from './image.js'
import { keypairCommands } from './keypair.js'
import { networkCommands } from './network.js'
import { portCommands } from './port.js'
import { projectCommands } from './project.js'
import { quotaCommands } from './quota.js'
import { roleCommands } from './role.js'
import { routerCommands } from './router.js'
import { securityGroupCommands } from './security-group.js'
import { serverCommands } from './server.js'
import { serverGroupCommands } from './server-group.js'
import { serverImageCommands } from './server-image.js'
import { tokenCommands } from './token.js'
import { userCommands } from './user.js'
import { volumeCommands } from './volume.js'

export const apiCommands: Command[] = [
  ...domainCommands,
  ...projectCommands,
  ...userCommands,
  ...roleCommands,
  ...tokenCommands,
  ...catalogCommands,
  ...imageCommands,
  ...flavorCommands,
  ...keypairCommands,
  ...networkCommands,
  ...securityGroupCommands,
  ...portCommands,
  ...routerCommands,
  ...quotaCommands,
  ...serverCommands,
  ...serverGroupCommands,
  ...serverImageCommands,
  ...hostCommands,
  ...volumeCommands,
]
