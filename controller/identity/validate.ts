/** Id generation and the input checks shared by the identity catalogs. */
import { randomUUID } from 'node:crypto'
import { InvalidArgument } from '../../proto/errors.js'

/** A Keystone-style id: 32 lowercase hex characters. */
export function newId(): string {
  return randomUUID().replaceAll('-', '')
}

/** Returns the trimmed name, or throws InvalidArgument naming the field. */
export function checkName(field: string, value: string | undefined, max: number): string {
  const name = (value ?? '').trim()
  if (name === '') throw new InvalidArgument(`${field} must not be empty`, { field })
  if (name.length > max) throw new InvalidArgument(`${field} is ${name.length} characters long; the limit is ${max}`, { field })
  if (/[\u0000-\u001f\u007f]/.test(name)) throw new InvalidArgument(`${field} must not contain control characters`, { field })
  return name
}

export function checkText(field: string, value: string | undefined, max: number): string {
  const text = value ?? ''
  if (text.length > max) throw new InvalidArgument(`${field} is ${text.length} characters long; the limit is ${max}`, { field })
  return text
}

export function checkPassword(field: string, value: string | undefined): string {
  const pw = value ?? ''
  if (pw.length === 0) throw new InvalidArgument(`${field} must not be empty`, { field })
  if (pw.length > 4096) throw new InvalidArgument(`${field} is longer than 4096 characters`, { field })
  return pw
}

export function checkEmail(field: string, value: string | undefined): string {
  const email = (value ?? '').trim()
  if (email !== '' && !/^[^\s@]+@[^\s@]+$/.test(email)) throw new InvalidArgument(`${field} '${email}' is not an e-mail address`, { field })
  return checkText(field, email, 255)
}

/** Exactly one of the given fields must be set. */
export function exactlyOne(fields: Record<string, unknown>, what: string): string {
  const set = Object.entries(fields).filter(([, v]) => v !== undefined && v !== null && v !== '')
  if (set.length !== 1) {
    throw new InvalidArgument(`${what}: give exactly one of ${Object.keys(fields).join(', ')} (got ${set.length === 0 ? 'none' : set.map(([k]) => k).join(' and ')})`, {
      field: Object.keys(fields).join('|'),
    })
  }
  return set[0]![0]
}

export const NAME_MAX = { domain: 64, project: 64, user: 255, role: 255 } as const
export const DESCRIPTION_MAX = 4096
