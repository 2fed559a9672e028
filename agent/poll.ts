/**
 * Waiting for work another process does (a QEMU job, a libvirt block job):
 * one poll loop with a deadline for the agent, so every wait ends the same
 * way — the work's own errors as the check throws them, or Unavailable
 * naming what has not finished, how far it got, and where it goes on.
 */
import { Unavailable } from '../proto/errors.js'

/** What a check of {@link pollUntil} returns while the work goes on: how far it got ("1024 of 4096 bytes"), for the error. */
export class Pending {
  constructor(readonly progress = '') {}
}

export interface PollOptions {
  /** How long to wait, from the first check (a last check runs after it passed). */
  deadlineMs: number
  /** The pause between two checks. */
  pauseMs: number
  /** What is waited for, as the error names it: "the copy of disk vdb of guest …". */
  what: string
  /** Where the work goes on when the wait gives up: "QEMU", "its export's daemon (pid 42)". */
  where: string
}

/**
 * Checks until `check` returns anything but a {@link Pending} (the work is
 * done), and returns that; whatever `check` throws ends the wait with that error.
 * @throws Unavailable when the deadline passed first: "<what> has not finished (<progress>); it goes on in <where>".
 */
export async function pollUntil<T>(check: () => Promise<T | Pending>, o: PollOptions): Promise<T> {
  const deadline = Date.now() + o.deadlineMs
  for (;;) {
    const seen = await check()
    if (!(seen instanceof Pending)) return seen
    if (Date.now() > deadline) throw new Unavailable(`${o.what} has not finished${seen.progress ? ` (${seen.progress})` : ''}; it goes on in ${o.where}`)
    await new Promise((r) => setTimeout(r, o.pauseMs))
  }
}
