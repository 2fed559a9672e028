/**
 * Undo what half-happened (after Incus `shared/revert`): one Reverter for both
 * daemons (the agent's builds and NIC plugging, the controller's claims), kept
 * in proto/ beside the other code both share, since neither imports the other.
 *
 * A multi-step operation adds an undo step right after each step succeeds.
 * If a later step fails, `fail()` runs the undo steps in reverse order; if the
 * whole operation succeeds, `success()` drops them. `withReverter()` wires the
 * two together around an async function.
 *
 * ```ts
 * await withReverter(async (revert) => {
 *   const domain = await host.define(xml)
 *   revert.add('undefine domain', () => domain.undefine())
 *   await domain.create() // if this throws, the domain is undefined again
 * })
 * ```
 */

/** One undo step; it should be idempotent and must not depend on later steps. */
export type UndoFn = () => void | Promise<void>

/** An undo step that itself failed while reverting. */
export interface UndoFailure {
  description: string
  error: unknown
}

export class Reverter {
  private steps: { description: string; undo: UndoFn }[] = []
  private finished = false

  /** Registers `undo`, to run if the operation fails. `description` names it in failure reports. */
  add(description: string, undo: UndoFn): void {
    if (this.finished) throw new Error('Reverter already finished')
    this.steps.push({ description, undo })
  }

  /** Number of pending undo steps. */
  get size(): number {
    return this.steps.length
  }

  /** The operation succeeded: forget every undo step. */
  success(): void {
    this.steps = []
    this.finished = true
  }

  /**
   * The operation failed: run every undo step, last added first. Never throws;
   * an undo step that fails does not stop the others, and its error is returned.
   */
  async fail(): Promise<UndoFailure[]> {
    const steps = this.steps.reverse()
    this.steps = []
    this.finished = true
    const failures: UndoFailure[] = []
    for (const step of steps) {
      try {
        await step.undo()
      } catch (error) {
        failures.push({ description: step.description, error })
      }
    }
    return failures
  }
}

/** Where failed undo steps are logged (a pino Logger fits). */
export interface UndoLog {
  warn(fields: Record<string, unknown>, message: string): void
}

/** The log of last resort: a process warning on stderr, so no failed undo step goes unseen. */
const processWarnings: UndoLog = {
  warn(fields, message) {
    const { err, ...rest } = fields
    process.emitWarning(`${message}: ${err instanceof Error ? err.message : String(err)}`, { code: 'STRATO_UNDO_FAILED', detail: JSON.stringify(rest) })
  },
}

export interface WithReverterOptions {
  /**
   * Logs each undo step that fails, with `context`, the step and its error
   * (the other steps still run, and the operation's error is rethrown).
   * @default process warnings on stderr, unless `onUndoFailure` is given
   */
  log?: UndoLog
  /** Fields every such log line carries (instance, host, …). */
  context?: Record<string, unknown>
  /** Told about undo steps that failed; the original error is rethrown regardless. */
  onUndoFailure?: (failures: UndoFailure[], cause: unknown) => void
}

/**
 * Runs `operation` with a fresh Reverter. On success the undo steps are dropped;
 * on failure they run in reverse and the operation's own error is rethrown.
 * An undo step that fails is logged (never dropped) and the others still run.
 */
export async function withReverter<T>(
  operation: (revert: Reverter) => Promise<T>,
  options: WithReverterOptions = {},
): Promise<T> {
  const revert = new Reverter()
  try {
    const result = await operation(revert)
    revert.success()
    return result
  } catch (error) {
    const failures = await revert.fail()
    if (failures.length > 0) {
      const log = options.log ?? (options.onUndoFailure ? undefined : processWarnings)
      for (const f of failures) {
        log?.warn({ ...options.context, undo: f.description, err: f.error, cause: error instanceof Error ? error.message : String(error) }, `undo step failed: ${f.description}`)
      }
      options.onUndoFailure?.(failures, error)
    }
    throw error
  }
}
