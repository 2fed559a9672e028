/**
 * Formatters, as openstackclient's (cliff's): `table` (prettytable borders),
 * `json`, `yaml`, `value`, `shell` (show only) and `csv` (lists only), with
 * `-c COLUMN` to pick columns.
 */
import { UsageError } from './errors.js'
import type { Args, Output } from './registry.js'

export const SHOW_FORMATS = ['json', 'shell', 'table', 'value', 'yaml'] as const
export const LIST_FORMATS = ['csv', 'json', 'table', 'value', 'yaml'] as const

/**
 * A dict-valued field (properties, extra specs): shown as openstackclient's
 * format_dict does (`a='1', b='2'`, keys sorted), and as an object in json/yaml.
 */
export class Dict {
  constructor(readonly entries: Record<string, unknown>) {}
  toString(): string {
    return Object.keys(this.entries)
      .sort()
      .map((k) => `${k}='${display(this.entries[k])}'`)
      .join(', ')
  }
}

/**
 * Lists by key (a server's addresses by network): `a=1, 2; b=3` as
 * openstackclient's DictListColumn prints it (keys sorted), an object of
 * arrays in json/yaml.
 */
export class DictList {
  constructor(readonly entries: Record<string, string[]>) {}
  toString(): string {
    return Object.keys(this.entries)
      .sort()
      .map((k) => `${k}=${this.entries[k]!.join(', ')}`)
      .join('; ')
  }
}

/**
 * A column with two faces, as cliff's FormattableColumn: `human` in tables,
 * `-f value` and `-f shell`; `machine` in json and yaml (a router's routes:
 * `destination='…', gateway='…'` lines, and a list of objects).
 */
export class Column {
  constructor(readonly human: string, readonly machine: unknown) {}
  toString(): string {
    return this.human
  }
}

/** Python's json.dumps() of a value (its `, ` and `: ` separators), as openstackclient's JSON columns print. */
export function pyJson(v: unknown): string {
  if (v === null || v === undefined) return 'null'
  if (Array.isArray(v)) return `[${v.map(pyJson).join(', ')}]`
  if (typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${pyJson(x)}`).join(', ')}}`
  return JSON.stringify(v)
}

/** How a value looks in a table, `-f value` or `-f shell`: Python's str() of it, as cliff prints. */
export function display(v: unknown): string {
  if (v === null || v === undefined) return 'None'
  if (typeof v === 'boolean') return v ? 'True' : 'False'
  if (v instanceof Date) return v.toISOString()
  if (v instanceof Dict || v instanceof DictList || v instanceof Column) return v.toString()
  if (Array.isArray(v)) return v.map(display).join(', ')
  if (typeof v === 'object') return JSON.stringify(v)
  return String(v)
}

/** A value for json/yaml: Dates as strings, the rest as is. */
function plain(v: unknown): unknown {
  if (v === undefined) return null
  if (v instanceof Date) return v.toISOString()
  if (v instanceof Dict) return Object.fromEntries(Object.entries(v.entries).map(([k, x]) => [k, plain(x)]))
  if (v instanceof DictList) return { ...v.entries }
  if (v instanceof Column) return plain(v.machine)
  if (Array.isArray(v)) return v.map(plain)
  return v
}

/** A prettytable-style table, left aligned; cells may hold several lines. */
export function table(headers: string[], rows: unknown[][]): string {
  const cells = rows.map((r) => headers.map((_, i) => display(r[i]).split('\n')))
  const head = headers.map((h) => [h])
  const widths = headers.map((_, i) => Math.max(...[head[i]!, ...cells.map((r) => r[i]!)].map((lines) => Math.max(...lines.map((l) => l.length)))))
  const rule = '+' + widths.map((w) => '-'.repeat(w + 2)).join('+') + '+'
  const line = (row: string[][]): string[] => {
    const height = Math.max(...row.map((c) => c.length))
    const out: string[] = []
    for (let k = 0; k < height; k++) out.push('| ' + row.map((c, i) => (c[k] ?? '').padEnd(widths[i]!)).join(' | ') + ' |')
    return out
  }
  return [rule, ...line(head), rule, ...cells.flatMap(line), rule].join('\n') + '\n'
}

function yamlScalar(v: unknown): string {
  if (v === null || v === undefined) return 'null'
  if (typeof v === 'boolean' || typeof v === 'number') return String(v)
  const s = String(v)
  const plainOk =
    s !== '' &&
    !/^[\s\-?:,[\]{}#&*!|>'"%@`]/.test(s) &&
    !/[:#]\s|\s$|:$|\n/.test(s) &&
    !/^(true|false|yes|no|on|off|null|~|y|n)$/i.test(s) &&
    !/^[-+]?(\d[\d_]*(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/.test(s)
  if (plainOk) return s
  return `'${s.replaceAll("'", "''")}'`
}

/** PyYAML's safe_dump(default_flow_style=False) for flat objects and lists of them (keys sorted). */
function yaml(v: unknown, indent = ''): string {
  if (Array.isArray(v)) {
    if (v.length === 0) return `${indent}[]\n`
    return v
      .map((item) => {
        if (item && typeof item === 'object' && !Array.isArray(item)) {
          const body = yaml(item, indent + '  ')
          return indent + '- ' + body.slice(indent.length + 2)
        }
        return `${indent}- ${yamlScalar(item)}\n`
      })
      .join('')
  }
  if (v && typeof v === 'object') {
    const entries = Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    if (entries.length === 0) return `${indent}{}\n`
    return entries
      .map(([k, x]) => {
        if (Array.isArray(x)) return x.length === 0 ? `${indent}${yamlScalar(k)}: []\n` : `${indent}${yamlScalar(k)}:\n${yaml(x, indent)}`
        if (x && typeof x === 'object') return Object.keys(x).length === 0 ? `${indent}${yamlScalar(k)}: {}\n` : `${indent}${yamlScalar(k)}:\n${yaml(x, indent + '  ')}`
        return `${indent}${yamlScalar(k)}: ${yamlScalar(x)}\n`
      })
      .join('')
  }
  return `${indent}${yamlScalar(v)}\n`
}

function csvField(v: unknown, quote: string): string {
  const numeric = typeof v === 'number' || typeof v === 'boolean'
  const s = display(v)
  const needs = /[",\n\r]/.test(s)
  const q = quote === 'all' || (quote === 'nonnumeric' && !numeric) || (quote === 'minimal' && needs)
  if (quote === 'none') return s.replaceAll(/([",])/g, '\\$1')
  return q ? `"${s.replaceAll('"', '""')}"` : s
}

/** Picks the `-c` columns (in the order given), refusing unknown ones with the list of known ones. */
function pick(columns: string[], wanted: string[]): number[] {
  if (wanted.length === 0) return columns.map((_, i) => i)
  const bad = wanted.filter((w) => !columns.includes(w))
  if (bad.length) throw new UsageError(`no column named ${bad.map((b) => `'${b}'`).join(', ')}; the columns are: ${columns.join(', ')}`)
  return wanted.map((w) => columns.indexOf(w))
}

/** Renders a command's output as asked by its formatting options. */
export function render(out: Output, args: Args): string {
  if (out.kind === 'none') return ''
  const format = args.str('format') ?? 'table'
  if (out.kind === 'show') {
    if (!(SHOW_FORMATS as readonly string[]).includes(format)) {
      throw new UsageError(`-f/--format: invalid choice '${format}' (choose from ${SHOW_FORMATS.map((f) => `'${f}'`).join(', ')})`)
    }
    const fields = Object.keys(out.data).sort()
    const idx = pick(fields, args.list('column'))
    const names = idx.map((i) => fields[i]!)
    const values = names.map((n) => out.data[n])
    switch (format) {
      case 'table':
        return table(['Field', 'Value'], names.map((n, i) => [n, values[i]]))
      case 'json':
        return JSON.stringify(Object.fromEntries(names.map((n, i) => [n, plain(values[i])])), null, args.flag('noindent') ? undefined : 2) + '\n'
      case 'yaml':
        return yaml(Object.fromEntries(names.map((n, i) => [n, plain(values[i])])))
      case 'value':
        return values.map((v) => display(v) + '\n').join('')
      default: {
        const prefix = args.str('prefix') ?? ''
        return names.map((n, i) => `${prefix}${n.replaceAll(/[^A-Za-z0-9_]/g, '_')}="${display(values[i]).replaceAll('"', '\\"')}"\n`).join('')
      }
    }
  }
  if (!(LIST_FORMATS as readonly string[]).includes(format)) {
    throw new UsageError(`-f/--format: invalid choice '${format}' (choose from ${LIST_FORMATS.map((f) => `'${f}'`).join(', ')})`)
  }
  let rows = out.rows
  const sortBy = args.list('sort_column').filter((c) => out.columns.includes(c))
  if (sortBy.length) {
    const keys = sortBy.map((c) => out.columns.indexOf(c))
    const dir = args.flag('sort_descending') ? -1 : 1
    rows = [...rows].sort((a, b) => {
      for (const k of keys) {
        const x = display(a[k])
        const y = display(b[k])
        if (x !== y) return (x < y ? -1 : 1) * dir
      }
      return 0
    })
  }
  const idx = pick(out.columns, args.list('column'))
  const columns = idx.map((i) => out.columns[i]!)
  const picked = rows.map((r) => idx.map((i) => r[i]))
  switch (format) {
    case 'table':
      return picked.length === 0 && !args.flag('print_empty') ? '' : table(columns, picked)
    case 'json':
      return JSON.stringify(picked.map((r) => Object.fromEntries(columns.map((c, i) => [c, plain(r[i])]))), null, args.flag('noindent') ? undefined : 2) + '\n'
    case 'yaml':
      return yaml(picked.map((r) => Object.fromEntries(columns.map((c, i) => [c, plain(r[i])]))))
    case 'value':
      return picked.map((r) => r.map(display).join(' ') + '\n').join('')
    default: {
      const quote = args.str('quote') ?? 'nonnumeric'
      if (!['all', 'minimal', 'none', 'nonnumeric'].includes(quote)) throw new UsageError(`--quote: invalid choice '${quote}' (choose from 'all', 'minimal', 'none', 'nonnumeric')`)
      const line = (r: unknown[]) => r.map((v) => csvField(v, quote)).join(',') + '\n'
      return line(columns) + picked.map(line).join('')
    }
  }
}
