/** `strato --help`, `strato help <command>`, noun help (`strato domain`), and the bash completion script. */
import { GLOBAL_OPTIONS, LIST_OPTIONS, SHOW_OPTIONS, optionsOf, usage } from './args.js'
import type { Command, OptionSpec, Registry } from './registry.js'

function columns(rows: Array<[string, string]>, indent = '  ', max = 34): string {
  const width = Math.min(max, Math.max(0, ...rows.map(([l]) => l.length)))
  return rows
    .map(([l, r]) => (l.length > width ? `${indent}${l}\n${indent}${' '.repeat(width + 2)}${r}` : `${indent}${l.padEnd(width)}  ${r}`))
    .join('\n')
}

const optionRows = (opts: OptionSpec[]): Array<[string, string]> =>
  opts.map((o) => [[...o.flags].sort((a, b) => a.length - b.length).map((f) => (o.kind === 'flag' ? f : `${f} ${o.metavar ?? '<value>'}`)).join(', '), o.help])

export function globalHelp(registry: Registry): string {
  const cmds = registry.all().map((c): [string, string] => [c.name, c.summary])
  return `usage: strato [--os-auth-url <auth-url>] [--os-username <name>] [...] <command> [<args>] [--help]

Command-line client for Strato, shaped like the OpenStack client (openstack):
the same nouns, verbs, options and output, over Strato's gRPC API.

Credentials come from the OS_* environment variables, as for openstack; on a
Strato host, load the ones 'npm start' wrote with:  . admin-openrc

Global options (override the matching OS_* variable):
${columns(optionRows(GLOBAL_OPTIONS))}

Commands:
${columns(cmds)}

See 'strato help <command>' or 'strato <command> --help' for a command's options,
e.g. 'strato help domain create'. Bash completion: source <(strato complete)
`
}

export function commandHelp(cmd: Command): string {
  const parts = [`usage: ${usage(cmd)}`, '', cmd.summary]
  if (cmd.description) parts.push('', cmd.description)
  const pos = cmd.positionals ?? []
  if (pos.length) parts.push('', 'positional arguments:', columns(pos.map((p) => [`<${p.name}>`, p.help])))
  if (cmd.options?.length) parts.push('', 'options:', columns(optionRows(cmd.options)))
  const fmt = cmd.output === 'show' ? SHOW_OPTIONS : cmd.output === 'list' ? LIST_OPTIONS : []
  if (fmt.length) {
    const formats = cmd.output === 'show' ? 'json, shell, table, value, yaml' : 'csv, json, table, value, yaml'
    parts.push('', `output formatters (-f ${formats}):`, columns(optionRows(fmt)))
  }
  parts.push('', "Global --os-* options (see 'strato --help') are accepted too.")
  return parts.join('\n') + '\n'
}

/** Help for a noun or partial command: its commands. */
export function prefixHelp(registry: Registry, words: string[]): string {
  const cmds = registry.under(words).map((c): [string, string] => [c.name, c.summary])
  return `Commands under 'strato ${words.join(' ')}':\n${columns(cmds)}\n\nSee 'strato help <command>' for a command's options.\n`
}

/** A bash completion script, like `openstack complete`: commands word by word, then each command's options. */
export function completionScript(registry: Registry): string {
  const q = (s: string) => `'${s.replaceAll("'", "'\\''")}'`
  const prefixes = new Map<string, string[]>()
  const opts: Array<[string, string]> = []
  for (const c of registry.all()) {
    const w = c.name.split(' ')
    for (let n = 0; n < w.length; n++) prefixes.set(w.slice(0, n).join(' '), registry.nextWords(w.slice(0, n)))
    const flags = [...optionsOf(c), ...GLOBAL_OPTIONS].flatMap((o) => o.flags.filter((f) => f.startsWith('--')))
    opts.push([c.name, [...new Set(flags)].join(' ')])
  }
  const globals = GLOBAL_OPTIONS.flatMap((o) => o.flags.filter((f) => f.startsWith('--'))).join(' ')
  return `# bash completion for strato; load it with:  source <(strato complete)
_strato()
{
  local cur="\${COMP_WORDS[COMP_CWORD]}" cmd="" w i
  local -A next=(
${[...prefixes].map(([k, v]) => `    [${q(k || '_')}]=${q(v.join(' '))}`).join('\n')}
  )
  local -A opts=(
${opts.map(([k, v]) => `    [${q(k)}]=${q(v)}`).join('\n')}
  )
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    [[ "$w" == -* ]] && continue
    if [[ " \${next[\${cmd:-_}]} " == *" $w "* ]]; then cmd="\${cmd:+$cmd }$w"; fi
  done
  if [[ "$cur" == -* ]]; then
    COMPREPLY=( $(compgen -W "\${opts[$cmd]:-${globals}}" -- "$cur") )
  elif [[ -n "\${next[\${cmd:-_}]+x}" ]]; then
    COMPREPLY=( $(compgen -W "\${next[\${cmd:-_}]}" -- "$cur") )
  else
    COMPREPLY=()
  fi
  return 0
}
complete -o default -F _strato strato
`
}
