/**
 * Command-line parsing, argparse-style: the command is the longest run of
 * leading words that names a registered command; options may come anywhere
 * after it (global `--os-*` options anywhere at all), as `--opt value` or
 * `--opt=value`; `--` ends the options.
 */
import { UsageError } from './errors.js'
import { Args, type Command, type OptionSpec, type Registry } from './registry.js'
import { closest } from './suggest.js'

const s = (flag: string, dest: string, metavar: string, help: string): OptionSpec => ({ flags: [flag], dest, kind: 'string', metavar, help })

/** Options every command accepts: credentials (`OS_*` overrides) and a few switches. */
export const GLOBAL_OPTIONS: OptionSpec[] = [
  s('--os-auth-url', 'os_auth_url', '<auth-url>', 'Where the Strato API listens: grpcs://host:port (TLS) or grpc://host:port (plaintext, loopback) (Env: OS_AUTH_URL)'),
  s('--os-cacert', 'os_cacert', '<ca-bundle-file>', 'CA certificate bundle the API\'s TLS certificate must chain to (Env: OS_CACERT)'),
  s('--os-username', 'os_username', '<auth-username>', 'User name (Env: OS_USERNAME)'),
  s('--os-user-id', 'os_user_id', '<auth-user-id>', 'User id (Env: OS_USER_ID)'),
  s('--os-password', 'os_password', '<auth-password>', 'Password (Env: OS_PASSWORD)'),
  s('--os-user-domain-name', 'os_user_domain_name', '<auth-user-domain-name>', "Domain of the user (Env: OS_USER_DOMAIN_NAME)"),
  s('--os-user-domain-id', 'os_user_domain_id', '<auth-user-domain-id>', 'Domain id of the user (Env: OS_USER_DOMAIN_ID)'),
  s('--os-project-name', 'os_project_name', '<auth-project-name>', 'Project to scope to (Env: OS_PROJECT_NAME)'),
  s('--os-project-id', 'os_project_id', '<auth-project-id>', 'Project id to scope to (Env: OS_PROJECT_ID)'),
  s('--os-project-domain-name', 'os_project_domain_name', '<auth-project-domain-name>', 'Domain of the project (Env: OS_PROJECT_DOMAIN_NAME)'),
  s('--os-project-domain-id', 'os_project_domain_id', '<auth-project-domain-id>', 'Domain id of the project (Env: OS_PROJECT_DOMAIN_ID)'),
  s('--os-domain-name', 'os_domain_name', '<auth-domain-name>', 'Domain to scope to, instead of a project (Env: OS_DOMAIN_NAME)'),
  s('--os-domain-id', 'os_domain_id', '<auth-domain-id>', 'Domain id to scope to (Env: OS_DOMAIN_ID)'),
  s('--os-token', 'os_token', '<auth-token>', 'An existing token; no password needed (Env: OS_TOKEN)'),
  s('--os-region-name', 'os_region_name', '<auth-region-name>', 'Region (accepted for compatibility; Strato has one) (Env: OS_REGION_NAME)'),
  s('--os-interface', 'os_interface', '<interface>', 'Endpoint interface (accepted for compatibility) (Env: OS_INTERFACE)'),
  s('--os-identity-api-version', 'os_identity_api_version', '<version>', 'Identity API version (accepted for compatibility)'),
  { flags: ['--help', '-h'], dest: 'help', kind: 'flag', help: 'Show help and exit' },
  { flags: ['--debug'], dest: 'debug', kind: 'flag', help: 'Show the full error (with its cause) on failure' },
]

const FORMAT_OPTIONS_COMMON: OptionSpec[] = [
  { flags: ['--format', '-f'], dest: 'format', kind: 'string', metavar: '<format>', help: 'Output format: table (default), json, yaml, value' },
  { flags: ['--column', '-c'], dest: 'column', kind: 'list', metavar: '<column>', help: 'Show only this column (repeat for more)' },
  { flags: ['--noindent'], dest: 'noindent', kind: 'flag', help: 'Do not indent JSON' },
  { flags: ['--max-width'], dest: 'max_width', kind: 'string', metavar: '<integer>', help: 'Maximum table width (accepted, ignored)' },
  { flags: ['--fit-width'], dest: 'fit_width', kind: 'flag', help: 'Fit the table to the terminal (accepted, ignored)' },
  { flags: ['--print-empty'], dest: 'print_empty', kind: 'flag', help: 'Print an empty table when there is no data' },
]

/** Formatting options of show/create commands (`-f shell` included). */
export const SHOW_OPTIONS: OptionSpec[] = [
  ...FORMAT_OPTIONS_COMMON,
  { flags: ['--prefix'], dest: 'prefix', kind: 'string', metavar: '<prefix>', help: 'Prefix for variable names with -f shell' },
]

/** Formatting options of list commands (`-f csv` included). */
export const LIST_OPTIONS: OptionSpec[] = [
  ...FORMAT_OPTIONS_COMMON,
  { flags: ['--quote'], dest: 'quote', kind: 'string', metavar: '<quote-mode>', help: 'Quoting for -f csv: all, minimal, none, nonnumeric (default)' },
  { flags: ['--sort-column'], dest: 'sort_column', kind: 'list', metavar: '<sort-column>', help: 'Sort by this column (repeatable)' },
  { flags: ['--sort-ascending'], dest: 'sort_descending', kind: 'flag', value: false, help: 'Sort ascending (default)' },
  { flags: ['--sort-descending'], dest: 'sort_descending', kind: 'flag', value: true, help: 'Sort descending' },
]

export function optionsOf(cmd: Command): OptionSpec[] {
  const fmt = cmd.output === 'show' ? SHOW_OPTIONS : cmd.output === 'list' ? LIST_OPTIONS : []
  return [...(cmd.options ?? []), ...fmt]
}

export interface Parsed {
  /** The matched command, or undefined with the words typed (for help and suggestions). */
  command: Command | undefined
  words: string[]
  args: Args
  global: Args
}

function findOption(specs: OptionSpec[], flag: string): OptionSpec | undefined {
  return specs.find((o) => o.flags.includes(flag))
}

/** Parses argv (without `node strato`). Throws UsageError for malformed input once the command is known. */
export function parse(argv: string[], registry: Registry): Parsed {
  const globalOpts: Record<string, string | string[] | boolean> = {}
  // 1. Find the command: leading words, skipping global options and their values.
  const words: string[] = []
  const rest: string[] = []
  let i = 0
  let matched: Command | undefined
  for (; i < argv.length; i++) {
    const a = argv[i]!
    if (a.startsWith('-') && a !== '-') {
      const [flag] = a.split('=', 1) as [string]
      const g = findOption(GLOBAL_OPTIONS, flag)
      if (g) {
        i = take(g, a, argv, i, globalOpts)
        continue
      }
      if (words.length === 0) {
        throw new UsageError(`strato: '${flag}' is not a global option; the command comes first and its options after it, e.g. 'strato domain list -f json'. See 'strato --help'.`)
      }
      break
    }
    const next = [...words, a]
    if (registry.isPrefix(next)) {
      words.push(a)
      matched = registry.get(next.join(' ')) ?? matched
      continue
    }
    if (!matched) {
      // Unknown command: keep up to three typed words for "did you mean".
      for (; i < argv.length && words.length < 3; i++) if (!argv[i]!.startsWith('-')) words.push(argv[i]!)
    }
    break
  }
  // Words after the longest full match belong to positionals: rewind to it.
  if (matched) {
    const n = matched.name.split(' ').length
    rest.push(...words.slice(n))
    words.length = n
  }
  rest.push(...argv.slice(i))
  if (!matched) {
    // Still collect globals (like --help) from the rest so `strato domain --help` works.
    for (const a of rest) if (a === '--help' || a === '-h') globalOpts.help = true
    return { command: undefined, words, args: new Args({}, {}), global: new Args({}, globalOpts) }
  }

  // 2. Parse the rest against the command's options (plus the global ones).
  const specs = optionsOf(matched)
  const opts: Record<string, string | string[] | boolean> = {}
  const pos: string[] = []
  let onlyPositionals = false
  for (let j = 0; j < rest.length; j++) {
    const a = rest[j]!
    if (onlyPositionals || !a.startsWith('-') || a === '-') {
      pos.push(a)
      continue
    }
    if (a === '--') {
      onlyPositionals = true
      continue
    }
    const [flag] = a.split('=', 1) as [string]
    const short = !a.startsWith('--') && a.length > 2 ? a.slice(0, 2) : undefined
    const spec = findOption(specs, flag) ?? (short ? findOption(specs, short) : undefined)
    if (spec) {
      if (short && !findOption(specs, flag)) takeShort(spec, a, opts)
      else j = take(spec, a, rest, j, opts, matched)
      continue
    }
    const g = findOption(GLOBAL_OPTIONS, flag)
    if (g) {
      j = take(g, a, rest, j, globalOpts, matched)
      continue
    }
    const all = [...specs, ...GLOBAL_OPTIONS].flatMap((o) => o.flags.filter((f) => f.startsWith('--')))
    const near = closest(flag, all)
    throw new UsageError(`strato ${matched.name}: unrecognized option '${flag}'.${near.length ? ` Did you mean ${near.map((n) => `'${n}'`).join(' or ')}?` : ''} See 'strato help ${matched.name}'.`)
  }
  if (globalOpts.help) return { command: matched, words, args: new Args({}, opts), global: new Args({}, globalOpts) }

  // 3. Positionals.
  const positionals: Record<string, string | string[]> = {}
  const pspecs = matched.positionals ?? []
  let k = 0
  for (const p of pspecs) {
    if (p.variadic) {
      const vals = pos.slice(k)
      k = pos.length
      if (vals.length === 0 && !p.optional) throw new UsageError(`strato ${matched.name}: missing <${p.name}>. Usage: ${usage(matched)}`)
      positionals[p.name] = vals
      continue
    }
    const v = pos[k++]
    if (v === undefined) {
      if (p.optional) continue
      throw new UsageError(`strato ${matched.name}: missing <${p.name}>. Usage: ${usage(matched)}`)
    }
    positionals[p.name] = v
  }
  if (k < pos.length) {
    throw new UsageError(`strato ${matched.name}: unexpected argument '${pos[k]}'. Usage: ${usage(matched)}`)
  }
  return { command: matched, words, args: new Args(positionals, opts), global: new Args({}, globalOpts) }
}

function take(spec: OptionSpec, a: string, argv: string[], i: number, into: Record<string, string | string[] | boolean>, cmd?: Command): number {
  const eq = a.indexOf('=')
  if (spec.kind === 'flag') {
    if (eq >= 0) throw new UsageError(`${cmd ? `strato ${cmd.name}: ` : ''}option '${a.slice(0, eq)}' takes no value`)
    into[spec.dest] = spec.value ?? true
    return i
  }
  let value: string
  if (eq >= 0 && a.startsWith('--')) value = a.slice(eq + 1)
  else {
    const v = argv[i + 1]
    if (v === undefined) throw new UsageError(`${cmd ? `strato ${cmd.name}: ` : 'strato: '}option '${a}' needs a value ${spec.metavar ?? ''}`.trimEnd())
    value = v
    i++
  }
  store(spec, value, into)
  return i
}

/** `-cid` / `-fjson`: a short option with its value attached. */
function takeShort(spec: OptionSpec, a: string, into: Record<string, string | string[] | boolean>): void {
  if (spec.kind === 'flag') throw new UsageError(`unrecognized option '${a}'`)
  store(spec, a.slice(2), into)
}

function store(spec: OptionSpec, value: string, into: Record<string, string | string[] | boolean>): void {
  if (spec.kind === 'list') {
    const cur = into[spec.dest]
    into[spec.dest] = [...(Array.isArray(cur) ? cur : []), value]
  } else into[spec.dest] = value
}

/** `strato domain create [--description <description>] [--enable | --disable] <domain-name>` */
export function usage(cmd: Command): string {
  const parts = [`strato ${cmd.name}`]
  const seen = new Set<string>()
  for (const o of cmd.options ?? []) {
    if (seen.has(o.dest)) continue
    const group = (cmd.options ?? []).filter((x) => x.dest === o.dest)
    seen.add(o.dest)
    const one = (x: OptionSpec) => (x.kind === 'flag' ? x.flags[0]! : `${x.flags[0]} ${x.metavar ?? '<value>'}`)
    parts.push(`[${group.map(one).join(' | ')}]`)
  }
  for (const p of cmd.positionals ?? []) {
    const one = p.variadic ? `<${p.name}> [<${p.name}> ...]` : `<${p.name}>`
    parts.push(p.optional ? `[${one}]` : one)
  }
  return parts.join(' ')
}
