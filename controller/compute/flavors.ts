/**
 * Flavors (Nova semantics): an explicit or generated id, unique name, sizes
 * validated; immutable once created except description and extra specs;
 * private flavors are visible to admins and the projects given access.
 */
import { randomUUID } from 'node:crypto'
import { AlreadyExists, FailedPrecondition, InvalidArgument, NotFound } from '../../proto/errors.js'
import { isUniqueViolation, unlessDuplicate, type Db } from '../store/db.js'
import { checkName, checkText, DESCRIPTION_MAX, exactlyOne } from '../identity/validate.js'
import { compiledOnce, jsonArray, jsonRows } from '../store/engine.js'
import type { FlavorTable } from '../store/schema.js'

export interface Flavor {
  id: string
  name: string
  vcpus: number
  ram: number
  disk: number
  ephemeral: number
  swap: number
  isPublic: boolean
  description: string
  extraSpecs: Record<string, string>
  rxtxFactor: number
}

/** Who is looking: admins see every flavor, others public ones and those shared with their project. */
export interface FlavorViewer {
  isAdmin: boolean
  projectId: string | undefined
}

const MAX_INT = 2 ** 31 - 1

function checkSize(field: string, value: number | undefined, min: number): number {
  const v = value ?? 0
  if (!Number.isInteger(v) || v < min || v > MAX_INT) throw new InvalidArgument(`${field} must be an integer from ${min} to ${MAX_INT}, got ${v}`, { field })
  return v
}

function checkSpecs(specs: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(specs ?? {})) {
    if (!/^[\w.:-]{1,255}$/.test(k)) throw new InvalidArgument(`extra spec key '${k}' must be 1-255 characters of letters, digits, _ . : -`, { field: `extra_specs.${k}` })
    if (v.length > 255) throw new InvalidArgument(`extra spec '${k}' is longer than 255 characters`, { field: `extra_specs.${k}` })
    out[k] = v
  }
  return out
}

export class FlavorCatalog {
  /** find's statement, compiled once. */
  private readonly byIdOrName

  constructor(private readonly db: Db) {
    this.byIdOrName = compiledOnce(db, ['ref', 'projectId'], (p) => this.rows({ isAdmin: false, projectId: p.projectId }).where((eb) => eb.or([eb('id', '=', p.ref), eb('name', '=', p.ref)])))
  }

  async create(req: { id?: string; name?: string; vcpus?: number; ram?: number; disk?: number; ephemeral?: number; swap?: number; isPublic?: boolean; description?: string; extraSpecs?: Record<string, string> }): Promise<Flavor> {
    let id = (req.id ?? '').trim()
    if (id === '' || id === 'auto') id = randomUUID()
    if (!/^[\w. -]{1,255}$/.test(id) || id.trim() !== id) throw new InvalidArgument(`flavor id '${id}' must be 1-255 characters of letters, digits, _ . - and inner spaces`, { field: 'id' })
    const row = {
      id,
      name: checkName('name', req.name, 255),
      vcpus: checkSize('vcpus', req.vcpus, 1),
      ram: checkSize('ram', req.ram, 1),
      disk: checkSize('disk', req.disk, 0),
      ephemeral: checkSize('ephemeral', req.ephemeral, 0),
      swap: checkSize('swap', req.swap, 0),
      is_public: req.isPublic === false ? 0 : 1,
      description: checkText('description', req.description, 65535),
      created_at: new Date().toISOString(),
    }
    const specs = checkSpecs(req.extraSpecs)
    try {
      await this.db.transaction().execute(async (trx) => {
        await trx.insertInto('flavors').values(row).execute()
        for (const [key, value] of Object.entries(specs)) await trx.insertInto('flavor_extra_specs').values({ flavor_id: id, key, value }).execute()
      })
    } catch (err) {
      if (!isUniqueViolation(err)) throw err
      const byId = await this.db.selectFrom('flavors').select('id').where('id', '=', id).executeTakeFirst()
      throw new AlreadyExists(byId ? `a flavor with id '${id}' already exists` : `a flavor named '${row.name}' already exists`, { cause: err })
    }
    return this.get({ id }, { isAdmin: true, projectId: undefined })
  }

  async get(ref: { id?: string; name?: string }, viewer: FlavorViewer): Promise<Flavor> {
    const by = exactlyOne({ id: ref.id, name: ref.name }, 'flavor')
    const row = await this.rows(viewer)
      .where(by === 'id' ? 'id' : 'name', '=', (by === 'id' ? ref.id : ref.name)!)
      .executeTakeFirst()
    // A private flavor the caller may not use is reported as absent, as Nova does.
    if (!row || !visible(row, viewer)) throw new NotFound(`flavor ${by === 'id' ? ref.id : `'${ref.name}'`} not found`)
    return toFlavor(row)
  }

  /**
   * The flavor a server create's flavorRef names: the one with that id if the
   * viewer may use it, else the one with that name — one statement (a create
   * reads its flavor once, and on PostgreSQL each statement is a round trip).
   */
  async find(ref: string, viewer: FlavorViewer): Promise<Flavor> {
    const rows = await this.byIdOrName({ ref, projectId: viewer.projectId ?? '' })
    const row = [rows.find((r) => r.id === ref), rows.find((r) => r.name === ref)].find((r) => r && visible(r, viewer))
    if (!row) throw new NotFound(`flavor '${ref}' not found (by id or name)`)
    return toFlavor(row)
  }

  async list(filter: { isPublic?: string; minRam?: number; minDisk?: number }, viewer: FlavorViewer): Promise<Flavor[]> {
    const mode = filter.isPublic || 'public'
    if (!['public', 'private', 'all'].includes(mode)) throw new InvalidArgument(`is_public must be public, private or all, got '${mode}'`, { field: 'is_public' })
    let q = this.rows(viewer).orderBy('ram').orderBy('id')
    if (filter.minRam) q = q.where('ram', '>=', filter.minRam)
    if (filter.minDisk) q = q.where('disk', '>=', filter.minDisk)
    if (mode === 'private') q = q.where('is_public', '=', 0)
    if (mode === 'public' && viewer.isAdmin) q = q.where('is_public', '=', 1)
    return (await q.execute()).filter((r) => visible(r, viewer)).map(toFlavor)
  }

  async update(id: string | undefined, patch: { description?: string; setExtraSpecs?: Record<string, string>; unsetExtraSpecs?: string[] }): Promise<Flavor> {
    const cur = await this.get({ id }, { isAdmin: true, projectId: undefined })
    const specs = checkSpecs(patch.setExtraSpecs)
    await this.db.transaction().execute(async (trx) => {
      if (patch.description !== undefined) {
        await trx.updateTable('flavors').set({ description: checkText('description', patch.description, 65535) }).where('id', '=', cur.id).execute()
      }
      for (const [key, value] of Object.entries(specs)) {
        await trx.insertInto('flavor_extra_specs').values({ flavor_id: cur.id, key, value }).onConflict((oc) => oc.columns(['flavor_id', 'key']).doUpdateSet({ value })).execute()
      }
      for (const key of patch.unsetExtraSpecs ?? []) {
        if (!(key in cur.extraSpecs) && !(key in specs)) throw new NotFound(`flavor '${cur.name}' has no extra spec '${key}'`)
        await trx.deleteFrom('flavor_extra_specs').where('flavor_id', '=', cur.id).where('key', '=', key).execute()
      }
    })
    return this.get({ id: cur.id }, { isAdmin: true, projectId: undefined })
  }

  async delete(id: string | undefined): Promise<void> {
    const cur = await this.get({ id }, { isAdmin: true, projectId: undefined })
    await this.db.deleteFrom('flavors').where('id', '=', cur.id).execute()
  }

  async addAccess(flavorId: string | undefined, projectId: string | undefined): Promise<void> {
    const f = await this.get({ id: flavorId }, { isAdmin: true, projectId: undefined })
    if (f.isPublic) throw new FailedPrecondition(`flavor '${f.name}' is public; access lists apply to private flavors only`)
    const p = await this.db.selectFrom('projects').select('id').where('id', '=', projectId ?? '').executeTakeFirst()
    if (!p) throw new NotFound(`project ${projectId} not found`)
    await unlessDuplicate(
      () => this.db.insertInto('flavor_projects').values({ flavor_id: f.id, project_id: p.id }).execute(),
      () => new AlreadyExists(`project ${p.id} already has access to flavor '${f.name}'`),
    )
  }

  async removeAccess(flavorId: string | undefined, projectId: string | undefined): Promise<void> {
    const f = await this.get({ id: flavorId }, { isAdmin: true, projectId: undefined })
    const res = await this.db.deleteFrom('flavor_projects').where('flavor_id', '=', f.id).where('project_id', '=', projectId ?? '').executeTakeFirst()
    if (Number(res.numDeletedRows) === 0) throw new NotFound(`project ${projectId} has no access to flavor '${f.name}'`)
  }

  async listAccess(flavorId: string | undefined): Promise<Array<{ flavorId: string; projectId: string }>> {
    const f = await this.get({ id: flavorId }, { isAdmin: true, projectId: undefined })
    if (f.isPublic) throw new FailedPrecondition(`flavor '${f.name}' is public: every project may use it`)
    const rows = await this.db.selectFrom('flavor_projects').select('project_id').where('flavor_id', '=', f.id).orderBy('project_id').execute()
    return rows.map((r) => ({ flavorId: f.id, projectId: r.project_id }))
  }

  /** Flavors with their extra specs and whether the viewer's project was given access: one statement. */
  private rows(viewer: FlavorViewer) {
    return this.db
      .selectFrom('flavors')
      .selectAll('flavors')
      .select((eb) => [
        jsonArray(this.db, eb.selectFrom('flavor_extra_specs').select(['key', 'value']).whereRef('flavor_extra_specs.flavor_id', '=', 'flavors.id')).as('extra_specs'),
        eb.exists(eb.selectFrom('flavor_projects').select('flavor_id').whereRef('flavor_projects.flavor_id', '=', 'flavors.id').where('project_id', '=', viewer.projectId ?? '')).as('shared'),
      ])
  }
}

type FlavorRow = FlavorTable & { extra_specs: Array<{ key: string; value: string }> | string; shared: unknown }

/** Admins see every flavor; others public ones and the private ones shared with their project. */
function visible(row: FlavorRow, viewer: FlavorViewer): boolean {
  return Boolean(row.is_public || viewer.isAdmin || (viewer.projectId && row.shared))
}

function toFlavor(r: FlavorRow): Flavor {
  return {
    id: r.id,
    name: r.name,
    vcpus: r.vcpus,
    ram: r.ram,
    disk: r.disk,
    ephemeral: r.ephemeral,
    swap: r.swap,
    isPublic: r.is_public !== 0,
    description: r.description,
    extraSpecs: Object.fromEntries(jsonRows(r.extra_specs).map((s) => [s.key, s.value])),
    rxtxFactor: 1,
  }
}

export { DESCRIPTION_MAX }
