#!/usr/bin/env node
/** strato-controller: runs until SIGINT/SIGTERM, then stops cleanly. */
import { loadConfig } from './config.js'
import { Controller } from './server.js'

// The data dir holds every user's password hash, user data and private images: files are the controller's alone.
process.umask(0o077)
const controller = new Controller(loadConfig())
let stopping = false
const stop = (signal: string) => {
  if (stopping) {
    controller.log.warn({ signal }, 'second signal: exiting now')
    process.exit(1)
  }
  stopping = true
  controller.log.info({ signal }, 'signal received')
  controller.stop().then(() => process.exit(0), (err) => {
    controller.log.error({ err }, 'unclean stop')
    process.exit(1)
  })
}
process.on('SIGINT', () => stop('SIGINT'))
process.on('SIGTERM', () => stop('SIGTERM'))
controller.start().catch((err: Error) => {
  controller.log.fatal({ err }, `controller failed to start: ${err.message}`)
  process.exit(1)
})
