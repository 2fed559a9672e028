/**
 * Readers of request-body fields that the REST adapters share (Nova's and
 * Cinder's JSON schemas word their refusals alike): each returns undefined
 * for an absent or null field and answers a wrong one with InvalidArgument
 * naming the field and what it must be.
 */
import { InvalidArgument } from '../../proto/errors.js'

/** A JSON object (not null, not an array). */
export const obj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)

/** An optional string field. */
export function str(b: Record<string, unknown>, key: string): string | undefined {
  const v = b[key]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'string') throw new InvalidArgument(`Invalid input for field/attribute ${key}: it must be a string`, { field: key })
  return v
}

/** An optional integer given as a number or a string of digits, at least `min` when one is given. */
export function int(v: unknown, key: string, min?: number): number | undefined {
  if (v === undefined || v === null) return undefined
  if (((typeof v === 'number' && Number.isInteger(v)) || (typeof v === 'string' && /^\d+$/.test(v))) && (min === undefined || Number(v) >= min)) return Number(v)
  throw new InvalidArgument(`Invalid input for field/attribute ${key}: it must be an integer${min === undefined ? '' : ` ≥ ${min}`}, got ${JSON.stringify(v)}`, { field: key })
}

/** An optional boolean: JSON booleans or oslo's strings ("True", "off", "1", "y" …, any case). */
export function bool(v: unknown, key: string): boolean | undefined {
  if (v === undefined || v === null) return undefined
  if (typeof v === 'boolean') return v
  const t = typeof v === 'string' ? v.toLowerCase() : ''
  if (['true', '1', 't', 'on', 'y', 'yes'].includes(t)) return true
  if (['false', '0', 'f', 'off', 'n', 'no'].includes(t)) return false
  throw new InvalidArgument(`${key} must be a boolean, got ${JSON.stringify(v)}`, { field: key })
}

/** An object of string values (metadata, extra specs) named `field`; optional unless an object is passed. */
export function stringMap(v: Record<string, unknown>, field: string): Record<string, string>
export function stringMap(v: unknown, field: string): Record<string, string> | undefined
export function stringMap(v: unknown, field: string): Record<string, string> | undefined {
  if (v === undefined || v === null) return undefined
  if (!obj(v)) throw new InvalidArgument(`${field} must be an object of strings`, { field })
  const bad = Object.entries(v).find(([, x]) => typeof x !== 'string')
  if (bad) throw new InvalidArgument(`${field}.${bad[0]} must be a string`, { field: `${field}.${bad[0]}` })
  return v as Record<string, string>
}

/** The schemas allow no other keys (additionalProperties false): the first stranger is named. */
export function onlyKeys(body: Record<string, unknown>, allowed: readonly string[]): void {
  const other = Object.keys(body).find((k) => !allowed.includes(k))
  if (other) throw new InvalidArgument(`Additional properties are not allowed ('${other}' was unexpected)`, { field: other })
}
