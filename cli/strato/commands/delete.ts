/** Deleting several things at once, as openstackclient does: try each, report each failure, fail if any failed. */
import { StratoError } from '../../../proto/errors.js'
import type { Context } from '../context.js'
import { CliError } from '../errors.js'

export async function deleteEach(ctx: Context, noun: string, plural: string, refs: string[], del: (ref: string) => Promise<void>): Promise<void> {
  const failures: string[] = []
  for (const ref of refs) {
    try {
      await del(ref)
    } catch (err) {
      if (!(err instanceof StratoError) && !(err instanceof CliError)) throw err
      failures.push(`Failed to delete ${noun} with name or ID '${ref}': ${err.message}`)
    }
  }
  if (failures.length === 0) return
  // One failure: one line. Several: one line each, then the count (the last line is the error).
  for (const f of failures.slice(0, -1)) ctx.io.stderr(f + '\n')
  const last = failures[failures.length - 1]!
  throw new CliError(refs.length === 1 ? last : `${last}\n${failures.length} of ${refs.length} ${plural} failed to delete.`)
}
