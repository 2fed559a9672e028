/**
 * Volume types (Cinder): a name and extra specs that choose a backend
 * (`volume_backend_name`) and features (`multiattach` = `<is> True`).
 * `__DEFAULT__` exists from the migration on (as Cinder's) and is the type of
 * a volume created without one; it cannot be deleted, nor can a type in use.
 * Private types are visible to admins only (type access lists come later).
 */
import { randomUUID } from 'node:crypto'
import { Conflict, FailedPrecondition, InvalidArgument, NotFound } from '../../proto/errors.js'
import { isUuid } from '../../proto/ids.js'
import type { Db } from '../store/db.js'
import { unlessDuplicate } from '../store/db.js'
import type { VolumeTypeTable } from '../store/schema.js'
import type { Trx } from '../quota/quota.js'
import { checkName, checkText } from '../identity/validate.js'
import { checkMetadata } from '../compute/server-create-plan.js'
import { json, now, type ServerCaller } from '../compute/server-model.js'
import { updatedMap } from './model.js'
import { DEFAULT_VOLUME_TYPE_ID } from '../store/migrations/0013_volumes.js'

export const DEFAULT_VOLUME_TYPE = '__DEFAULT__'
export { DEFAULT_VOLUME_TYPE_ID }

export interface VolumeTypeView {
  id: string
  name: string
  description: string
  isPublic: boolean
  extraSpecs: Record<string, string>
}

/** Cinder's boolean extra-spec form: `<is> True`. */
export function specIsTrue(v: string | undefined): boolean {
  return /^\s*(<is>\s*)?true\s*$/i.test(v ?? '')
}

export class VolumeTypeCatalog {
  constructor(private readonly db: Db) {}

  async create(req: { name?: string; description?: string; isPublic?: boolean; extraSpecs?: Record<string, string> }): Promise<VolumeTypeView> {
    const name = checkName('name', req.name, 255)
    const ts = now()
    const row: VolumeTypeTable = {
      id: randomUUID(), name, description: checkText('description', req.description, 255), is_public: req.isPublic === false ? 0 : 1,
      extra_specs: JSON.stringify(checkMetadata(req.extraSpecs)), created_at: ts, updated_at: ts,
    }
    await unlessDuplicate(() => this.db.insertInto('volume_types').values(row).execute(), () => new Conflict(`a volume type named '${name}' exists already`, { field: 'name' }))
    return view(row)
  }

  async get(ref: string | undefined, caller: ServerCaller): Promise<VolumeTypeView> {
    return view(await this.find(this.db, ref, caller))
  }

  async list(isPublic: string | undefined, caller: ServerCaller): Promise<VolumeTypeView[]> {
    const which = isPublic || 'public'
    if (!['public', 'private', 'all'].includes(which)) throw new InvalidArgument(`is_public must be public, private or all, got '${which}'`, { field: 'is_public' })
    let q = this.db.selectFrom('volume_types').selectAll().orderBy('name')
    if (!caller.isAdmin || which === 'public') q = q.where('is_public', '=', 1)
    else if (which === 'private') q = q.where('is_public', '=', 0)
    return (await q.execute()).map(view)
  }

  async update(req: { id?: string; name?: string; description?: string; isPublic?: boolean; setExtraSpecs?: Record<string, string>; unsetExtraSpecs?: string[] }, caller: ServerCaller): Promise<VolumeTypeView> {
    const row = await this.find(this.db, req.id, caller)
    if (row.id === DEFAULT_VOLUME_TYPE_ID && req.name !== undefined && req.name !== row.name) throw new FailedPrecondition(`the default volume type ${DEFAULT_VOLUME_TYPE} cannot be renamed`, { field: 'name' })
    const next: VolumeTypeTable = {
      ...row,
      ...(req.name !== undefined ? { name: checkName('name', req.name, 255) } : {}),
      ...(req.description !== undefined ? { description: checkText('description', req.description, 255) } : {}),
      ...(req.isPublic !== undefined ? { is_public: req.isPublic ? 1 : 0 } : {}),
      extra_specs: updatedMap(row.extra_specs, req.setExtraSpecs, req.unsetExtraSpecs),
      updated_at: now(),
    }
    await unlessDuplicate(() => this.db.updateTable('volume_types').set(next).where('id', '=', row.id).execute(), () => new Conflict(`a volume type named '${next.name}' exists already`, { field: 'name' }))
    return view(next)
  }

  async delete(ref: string | undefined, caller: ServerCaller): Promise<void> {
    const row = await this.find(this.db, ref, caller)
    if (row.id === DEFAULT_VOLUME_TYPE_ID) throw new FailedPrecondition(`the default volume type ${DEFAULT_VOLUME_TYPE} cannot be deleted`)
    await this.db.transaction().execute(async (trx) => {
      const used = await trx.selectFrom('volumes').select('id').where('volume_type_id', '=', row.id).limit(1).executeTakeFirst()
      if (used) throw new FailedPrecondition(`volume type ${row.name} is in use by volume ${used.id}; delete or retype its volumes first`)
      await trx.deleteFrom('volume_types').where('id', '=', row.id).execute()
    })
  }

  /** The type a create names (by name or id), or the default one; inside the creating transaction. */
  async resolve(trx: Trx, ref: string | undefined, caller: ServerCaller): Promise<VolumeTypeView> {
    return view(await this.find(trx, ref || DEFAULT_VOLUME_TYPE_ID, caller, 'volume_type'))
  }

  /** The type of a volume by id (every volume has one). */
  async byId(trx: Trx, id: string): Promise<VolumeTypeView | undefined> {
    const row = await trx.selectFrom('volume_types').selectAll().where('id', '=', id).executeTakeFirst()
    return row ? view(row) : undefined
  }

  private async find(db: Trx, ref: string | undefined, caller: ServerCaller, field = 'id'): Promise<VolumeTypeTable> {
    if (!ref) throw new InvalidArgument('a volume type id or name is required', { field })
    let q = db.selectFrom('volume_types').selectAll()
    q = isUuid(ref) ? q.where((eb) => eb.or([eb('id', '=', ref), eb('name', '=', ref)])) : q.where('name', '=', ref)
    if (!caller.isAdmin) q = q.where('is_public', '=', 1)
    const row = await q.executeTakeFirst()
    if (!row) throw new NotFound(`volume type '${ref}' not found`, { field })
    return row
  }
}

function view(r: VolumeTypeTable): VolumeTypeView {
  return { id: r.id, name: r.name, description: r.description, isPublic: r.is_public === 1, extraSpecs: json<Record<string, string>>(r.extra_specs, {}) }
}

/** The name of volume type `id` (per-type quotas are named by it). */
export async function typeNameOf(trx: Trx, id: string): Promise<string> {
  return (await trx.selectFrom('volume_types').select('name').where('id', '=', id).executeTakeFirstOrThrow()).name
}
