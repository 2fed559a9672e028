/* qcow2 state, shared by qcow2.c and check.c only. */
#ifndef STRATO_QCOW2_INT_H
#define STRATO_QCOW2_INT_H
#include "internal.h"

#define QCOW_MAGIC 0x514649fbu
#define L1E_OFFSET_MASK 0x00fffffffffffe00ULL
#define L1E_RESERVED_MASK 0x7f000000000001ffULL
#define L2E_OFFSET_MASK 0x00fffffffffffe00ULL
#define L2E_STD_RESERVED_MASK 0x3f000000000001feULL
#define REFT_OFFSET_MASK 0xfffffffffffffe00ULL
#define OFLAG_COPIED (1ULL << 63)
#define OFLAG_COMPRESSED (1ULL << 62)
#define OFLAG_ZERO 1ULL

#define INCOMPAT_DIRTY 1ULL
#define INCOMPAT_CORRUPT 2ULL
#define INCOMPAT_DATA_FILE 4ULL
#define INCOMPAT_COMPRESSION 8ULL
#define INCOMPAT_EXTL2 16ULL
#define INCOMPAT_KNOWN 31ULL

#define EXT_BACKING_FMT 0xe2792acau
#define EXT_FEATURES 0x6803f857u
#define EXT_BITMAPS 0x23852875u
#define EXT_CRYPTO 0x0537be77u
#define EXT_DATA_FILE 0x44415441u

#define MAX_L1_BYTES (32u << 20)
#define MAX_RT_BYTES (8u << 20)

struct qext { uint32_t type, len; uint8_t *data; };
struct l2slot { int64_t idx; uint64_t *t; int dirty; };

struct qcow2_state {
  uint32_t version, cluster_bits, refcount_order, header_length;
  uint64_t cs;
  uint32_t l2_entries;
  uint64_t l1_offset;
  uint32_t l1_size;
  uint64_t *l1;
  int l1_dirty;
  uint64_t rt_offset;
  uint32_t rt_clusters;
  uint64_t *rt; /* loaded for writing and checking */
  uint32_t crypt_method;
  uint64_t incompat, compat, autoclear;
  int compression_type;
  uint32_t nb_snapshots;
  uint64_t snapshots_offset;
  int has_backing, has_backing_fmt, has_data_file;
  char backing[1024];
  char backing_fmt[64];
  char data_file[1024];
  int data_fd;
  struct qext *exts;
  int n_exts;
  char feature_names[3][64][47];
  struct l2slot *slots;
  int nslots;
  pthread_mutex_t lock;
  uint64_t file_size;
  /* writer state */
  uint64_t *rc;
  uint64_t rc_cap, rc_len;
  uint64_t rc_dirty_lo, rc_dirty_hi;
  int rt_dirty, header_dirty;
  uint64_t alloc_end; /* clusters */
  uint64_t comp_cur;  /* next free byte in the compressed area, 0 none */
  uint64_t min_file_end;
};

/* Reads len bytes at off of the image file: 0, or -1 when they are not all there. */
typedef int (*qcow2_read_fn)(void *ctx, uint64_t off, size_t len, uint8_t *out);
/* The one place for the qcow2 header rules, shared by the engine's open and the
 * inspector: parses the header, its extensions and features into q (zeroed, with
 * q->file_size set) and checks that every table the header points to lies inside
 * the file and inside qemu's limits (qcow2_do_open). flags: SI_OPEN_CHECK relaxes
 * what check reports itself (no refcount table, snapshot entries). The message
 * says what and why, without the file name. */
int qcow2_parse_header(qcow2_state *q, uint64_t *vsize, qcow2_read_fn rd, void *ctx, int flags, si_err *e);
/* Frees what qcow2_parse_header allocated (header extensions). */
void qcow2_header_free(qcow2_state *q);
uint64_t qcow2_rc_entry(const uint8_t *block, uint32_t order, uint64_t i);
int qcow2_load_refcounts(si_image *img, int strict, si_err *e);
int qcow2_read_l2(si_image *img, uint64_t l2off, uint64_t *out, si_err *e);
void qcow2_compressed_range(qcow2_state *q, uint64_t e, uint64_t *off, uint64_t *len);
int qcow2_rc_set(qcow2_state *q, uint64_t cl, uint64_t v, si_err *e);
int qcow2_rewrite_all_refcounts(si_image *img, si_err *e);
int qcow2_write_header(si_image *img, si_err *e);
#endif
