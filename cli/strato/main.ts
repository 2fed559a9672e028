/**
 * `run(argv, env, io)`: the whole CLI as a function, so tests can drive it in
 * process. `cli/strato.ts` calls it with the real process's argv, env and
 * streams. Every failure becomes one line on stderr and a non-zero exit code.
 */
import { StratoError, Unauthenticated } from '../../proto/errors.js'
import { parse } from './args.js'
import { apiCommands } from './commands/index.js'
import { Context, type Io } from './context.js'
import { CliError, UsageError } from './errors.js'
import { commandHelp, completionScript, globalHelp, prefixHelp } from './help.js'
import { render, LIST_FORMATS, SHOW_FORMATS } from './output.js'
import { Registry, type Command } from './registry.js'
import { suggestCommands } from './suggest.js'

export type { Io }

function builtins(registry: () => Registry): Command[] {
  return [
    {
      name: 'help',
      summary: "Print help for a command ('strato help domain create')",
      output: 'none',
      positionals: [{ name: 'command', help: 'Command words', variadic: true, optional: true }],
      async run(ctx, a) {
        const words = a.posList('command')
        const r = registry()
        const cmd = r.get(words.join(' '))
        if (cmd) ctx.io.stdout(commandHelp(cmd))
        else if (words.length === 0) ctx.io.stdout(globalHelp(r))
        else if (r.isPrefix(words)) ctx.io.stdout(prefixHelp(r, words))
        else throw unknownCommand(words, r)
        return { kind: 'none' }
      },
    },
    {
      name: 'complete',
      summary: "Print a bash completion script ('source <(strato complete)')",
      output: 'none',
      async run(ctx) {
        ctx.io.stdout(completionScript(registry()))
        return { kind: 'none' }
      },
    },
  ]
}

export function makeRegistry(): Registry {
  const reg: Registry = new Registry([...apiCommands, ...builtins(() => reg)])
  return reg
}

function unknownCommand(words: string[], registry: Registry): UsageError {
  const near = suggestCommands(words, registry.all().map((c) => c.name))
  const typed = words.join(' ')
  const hint = near.length ? ` Did you mean ${near.map((n) => `'strato ${n}'`).join(', or ')}?` : ''
  return new UsageError(`strato: '${typed}' is not a strato command.${hint} See 'strato --help' for the list of commands.`)
}

/** Checks -f before running, so `strato domain create x -f bogus` changes nothing. */
function checkFormat(cmd: Command, format: string | undefined): void {
  if (format === undefined || cmd.output === 'none') return
  const allowed: readonly string[] = cmd.output === 'show' ? SHOW_FORMATS : LIST_FORMATS
  if (!allowed.includes(format)) {
    throw new UsageError(`strato ${cmd.name}: -f/--format: invalid choice '${format}' (choose from ${allowed.map((f) => `'${f}'`).join(', ')})`)
  }
}

/** Adds what to do next to errors whose remedy is on the user's side. */
function hintFor(err: StratoError, ctx: Context | undefined): string {
  if (err instanceof Unauthenticated && /^authentication failed/.test(err.message)) {
    return `. Check OS_USERNAME, OS_PASSWORD and OS_USER_DOMAIN_NAME (for the cloud admin: '. admin-openrc').`
  }
  if (err instanceof Unauthenticated && ctx?.creds.token && /token/.test(err.message)) return '. Unset OS_TOKEN to log in with OS_USERNAME/OS_PASSWORD.'
  return ''
}

/** Runs one strato invocation; resolves to the exit code. Never throws. */
export async function run(argv: string[], env: Record<string, string | undefined>, io: Io): Promise<number> {
  const registry = makeRegistry()
  let ctx: Context | undefined
  let debug = argv.includes('--debug')
  try {
    const parsed = parse(argv, registry)
    debug = parsed.global.flag('debug')
    const cmd = parsed.command
    if (!cmd) {
      const words = parsed.words
      if (words.length === 0) {
        io.stdout(globalHelp(registry))
        return 0
      }
      if (registry.isPrefix(words)) {
        if (parsed.global.flag('help')) {
          io.stdout(prefixHelp(registry, words))
          return 0
        }
        const verbs = registry.nextWords(words)
        throw new UsageError(`strato: '${words.join(' ')}' needs a subcommand: ${verbs.join(', ')}. See 'strato help ${words.join(' ')}'.`)
      }
      throw unknownCommand(words, registry)
    }
    if (parsed.global.flag('help')) {
      io.stdout(commandHelp(cmd))
      return 0
    }
    checkFormat(cmd, parsed.args.str('format'))
    ctx = new Context(env, parsed.global, io)
    const out = await cmd.run(ctx, parsed.args)
    io.stdout(render(out, parsed.args))
    return 0
  } catch (err) {
    if (debug && err instanceof Error) io.stderr(`${err.stack ?? err.message}${err.cause ? `\ncaused by: ${String((err.cause as Error).stack ?? err.cause)}` : ''}\n`)
    if (err instanceof UsageError || err instanceof CliError) {
      io.stderr(err.message + '\n')
      return err.exitCode
    }
    if (err instanceof StratoError) {
      io.stderr(`${err.message}${hintFor(err, ctx)}\n`)
      return 1
    }
    const message = err instanceof Error ? err.message : String(err)
    io.stderr(`strato: unexpected error: ${message} (run again with --debug for details)\n`)
    return 1
  } finally {
    ctx?.close()
  }
}
