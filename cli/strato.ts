#!/usr/bin/env node
/** `strato`: the OpenStack-shaped command-line client for Strato. All of it is in cli/strato/. */
import { run } from './strato/main.js'

const code = await run(process.argv.slice(2), process.env, {
  stdout: (s) => void process.stdout.write(s),
  stderr: (s) => void process.stderr.write(s),
  stderrIsTTY: process.stderr.isTTY === true,
})
process.exitCode = code
