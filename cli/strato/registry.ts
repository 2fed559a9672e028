/**
 * The command registry: every `strato` command is a plain object naming its
 * words (`domain create`), its options and positionals, the kind of output it
 * produces, and an async `run`. A noun is one file under `commands/` exporting
 * an array of commands; `commands/index.ts` lists the files.
 */
import type { Context } from './context.js'

/** One option of a command (or a global one). */
export interface OptionSpec {
  /** Spellings, long first: `['--column', '-c']`. */
  flags: string[]
  /** Where the parsed value lands in `Args`. Several flags may share one (`--enable`/`--disable` → `enabled`). */
  dest: string
  /** `string` takes a value, `list` takes a value and may repeat, `flag` takes none. */
  kind: 'string' | 'list' | 'flag'
  /** For `flag`: the value stored (default true). `--disable` stores false; `--public` may store 'public'. */
  value?: boolean | string
  /** Shown in help: `--domain <domain>`. */
  metavar?: string
  help: string
}

export interface PositionalSpec {
  /** Shown in help as `<name>`; also the key in `Args`. */
  name: string
  help: string
  /** Takes one or more values (`domain delete <domain> [<domain> ...]`). */
  variadic?: boolean
  optional?: boolean
}

/** What a command hands to the formatter. */
export type Output =
  /** A show/create: one object, printed as a Field/Value table (fields sorted, as openstackclient does). */
  | { kind: 'show'; data: Record<string, unknown> }
  /** A list: columns in order, rows of values. */
  | { kind: 'list'; columns: string[]; rows: unknown[][] }
  /** Nothing to print (set, delete, add, remove). */
  | { kind: 'none' }

export interface Command {
  /** The words that invoke it, space separated: `role assignment list`. */
  name: string
  /** One line for `strato --help`. */
  summary: string
  /** Extra paragraphs for `strato help <command>`. */
  description?: string
  options?: OptionSpec[]
  positionals?: PositionalSpec[]
  /** Decides which formatting options the command accepts. */
  output: Output['kind']
  run(ctx: Context, args: Args): Promise<Output>
}

/** Parsed arguments of one command, with typed accessors. */
export class Args {
  constructor(
    readonly positionals: Record<string, string | string[]>,
    readonly options: Record<string, string | string[] | boolean>,
  ) {}

  /** A string option, or undefined when not given. */
  str(dest: string): string | undefined {
    const v = this.options[dest]
    return typeof v === 'string' ? v : undefined
  }

  /** A tri-state flag pair such as `--enable/--disable`: undefined when neither was given. */
  bool(dest: string): boolean | undefined {
    const v = this.options[dest]
    return typeof v === 'boolean' ? v : undefined
  }

  flag(dest: string): boolean {
    return this.options[dest] === true
  }

  list(dest: string): string[] {
    const v = this.options[dest]
    return Array.isArray(v) ? v : typeof v === 'string' ? [v] : []
  }

  /** A required positional (the parser guarantees presence). */
  pos(name: string): string {
    const v = this.positionals[name]
    return Array.isArray(v) ? (v[0] ?? '') : (v ?? '')
  }

  posList(name: string): string[] {
    const v = this.positionals[name]
    return Array.isArray(v) ? v : v === undefined ? [] : [v]
  }
}

export class Registry {
  private readonly byName = new Map<string, Command>()

  constructor(commands: Command[]) {
    for (const c of commands) {
      if (this.byName.has(c.name)) throw new Error(`command '${c.name}' registered twice`)
      this.byName.set(c.name, c)
    }
  }

  get(name: string): Command | undefined {
    return this.byName.get(name)
  }

  all(): Command[] {
    return [...this.byName.values()].sort((a, b) => a.name.localeCompare(b.name))
  }

  /** True when some command starts with these words. */
  isPrefix(words: string[]): boolean {
    const p = words.join(' ')
    return this.all().some((c) => c.name === p || c.name.startsWith(p + ' '))
  }

  /** Commands under a prefix (`domain` → domain create, domain list, …). */
  under(words: string[]): Command[] {
    const p = words.join(' ')
    return this.all().filter((c) => c.name.startsWith(p + ' '))
  }

  /** The words that may follow a prefix (for completion). */
  nextWords(words: string[]): string[] {
    const n = words.length
    const out = new Set<string>()
    for (const c of this.all()) {
      const w = c.name.split(' ')
      if (w.length > n && w.slice(0, n).join(' ') === words.join(' ')) out.add(w[n]!)
    }
    return [...out].sort()
  }
}
