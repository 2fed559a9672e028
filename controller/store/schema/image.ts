/** Image tables. */

export interface ImageTable {
  id: string
  name: string
  status: string
  visibility: string
  owner: string
  owner_domain_id: string
  disk_format: string
  container_format: string
  checksum: string
  os_hash_value: string
  size: number
  virtual_size: number
  min_disk: number
  min_ram: number
  protected: number
  created_at: string
  updated_at: string
}

export interface ImageTagTable {
  image_id: string
  tag: string
}

export interface ImagePropertyTable {
  image_id: string
  key: string
  value: string
}

export interface ImageMemberTable {
  image_id: string
  member_id: string
  status: string
  created_at: string
  updated_at: string
}

export interface ImageTables {
  images: ImageTable
  image_tags: ImageTagTable
  image_properties: ImagePropertyTable
  image_members: ImageMemberTable
}
