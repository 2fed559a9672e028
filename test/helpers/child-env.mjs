// Loaded into every test process (package.json, tap.node-arg), after tap's own hooks. Plain JavaScript:
// worker threads (the libvirt driver's) inherit the test's --import flags, and tsx's hooks are not yet
// active in a new thread when its preloads run ("Unknown file extension .ts").
// tap runs each test file with @tapjs/processinfo, which re-injects itself through NODE_OPTIONS
// into every process the test starts (process-on-spawn rewrites each spawn's env): each Node child
// (controllers, agents, every `strato` CLI run, tsc, npm start and the stack's daemons) then loads an
// off-thread module loader that reads every module it imports and writes a record of itself on exit,
// ~0.3 CPU-s a process, for coverage and `tap --changed`, which npm test does not use (coverage is
// disabled in package.json). Children start as they do outside the tests: the test process itself
// keeps tap's hooks; its children get the NODE_OPTIONS the test was started with, less tap's.
const state = globalThis[Symbol.for('process-on-spawn@*:singletonId')]
if (state) state.listeners = []
const kept = (process.env.NODE_OPTIONS ?? '').split(/\s+/).filter((o) => o !== '' && !o.includes('@tapjs/processinfo'))
if (kept.length > 0) process.env.NODE_OPTIONS = kept.join(' ')
else delete process.env.NODE_OPTIONS
for (const k of Object.keys(process.env)) if (k.startsWith('_TAPJS_PROCESSINFO_')) delete process.env[k]
