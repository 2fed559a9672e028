/** Every noun's commands. Adding a noun: write `commands/<noun>.ts` exporting a Command[], and list it here. */
import type { Command } from '../registry.js'
import { catalogCommands } from './catalog.js'
import { domainCommands } from './domain.js'
import { projectCommands } from './project.js'
import { roleCommands } from './role.js'
import { tokenCommands } from './token.js'
import { userCommands } from './user.js'

export const apiCommands: Command[] = [
  ...domainCommands,
  ...projectCommands,
  ...userCommands,
  ...roleCommands,
  ...tokenCommands,
  ...catalogCommands,
]
