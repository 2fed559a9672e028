import type tap from 'tap'

/** The type of `t` inside `t.test(name, async (t) => …)`, for helpers that take a test. */
export type TestContext = Parameters<Parameters<typeof tap.test>[0]>[0]
