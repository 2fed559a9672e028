/**
 * Undo what half-happened (after Incus `shared/revert`), on the controller's
 * side. A copy of `agent/revert.ts`: the two daemons share wire vocabulary
 * through proto/ only, and neither imports the other, so each keeps its own
 * (90 lines, no dependencies; test/unit/controller/revert.test.ts runs the
 * agent's cases against this one).
 *
 * A multi-step operation adds an undo step right after each step succeeds.
 * If a later step fails, `fail()` runs the undo steps in reverse order; if the
 * whole operation succeeds, `success()` drops them. `withReverter()` wires the
 * two together around an async function.
 *
 * ```ts
 * await withReverter(async (revert) => {
 *   const placed = await scheduler.schedule(spec)
 *   revert.add(`release ${uuid}`, () => scheduler.release(uuid))
 *   await record(placed) // if this throws, the allocation is released again
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

export interface WithReverterOptions {
  /** Told about undo steps that failed; the original error is rethrown regardless. */
  onUndoFailure?: (failures: UndoFailure[], cause: unknown) => void
}

/**
 * Runs `operation` with a fresh Reverter. On success the undo steps are dropped;
 * on failure they run in reverse and the operation's own error is rethrown.
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
    if (failures.length > 0) options.onUndoFailure?.(failures, error)
    throw error
  }
}
