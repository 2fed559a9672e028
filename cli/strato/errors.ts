/**
 * Errors the CLI itself raises. Errors from the API arrive as the closed
 * Strato error set (proto/errors.ts) via `fromGrpcError`; `main.ts` prints
 * either kind as one line on stderr and picks the exit code.
 */

/** The command line is wrong (unknown command, bad option, missing argument): exit 2, like argparse. */
export class UsageError extends Error {
  override readonly name = 'UsageError'
  readonly exitCode = 2
}

/** The CLI cannot do what was asked (missing credentials, unreachable server, ambiguous name): exit 1. */
export class CliError extends Error {
  override readonly name = 'CliError'
  readonly exitCode = 1
}
