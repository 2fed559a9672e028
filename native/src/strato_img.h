/*
 * strato_img: sparse files and qcow2 images, in plain C.
 *
 * No Node types in here: the same sources build the Node-API addon, the
 * standalone self-test binary and the fuzz harness.
 *
 * Contract:
 *  - Every function that can fail takes an si_err* and returns <0 (or NULL)
 *    on failure, with err->code set to one of SI_E_* and err->msg to one
 *    human-readable line saying what and why.
 *  - Every offset, size and count read from a file is bounds-checked before
 *    use; a malformed file gives SI_E_CORRUPT or SI_E_UNSUPPORTED, never a
 *    crash, a hang or unbounded memory.
 *  - Reading an image never opens a file other than the image itself, its
 *    backing chain (explicit format required) and, only with
 *    SI_OPEN_ALLOW_DATA_FILE, its external data file.
 */
#ifndef STRATO_IMG_H
#define STRATO_IMG_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum si_errcode {
  SI_OK = 0,
  SI_E_INVALID = 1,      /* bad argument from the caller */
  SI_E_NOTFOUND = 2,     /* a file does not exist */
  SI_E_CORRUPT = 3,      /* the image is malformed */
  SI_E_UNSUPPORTED = 4,  /* a valid feature we refuse or do not implement */
  SI_E_IO = 5,           /* a system call failed */
  SI_E_NOMEM = 6,
  SI_E_CANCELLED = 7,
  SI_E_EXISTS = 8,
  SI_E_PERM = 9,
  SI_E_PRECONDITION = 10 /* e.g. shrink over allocated data */
};

typedef struct si_err {
  int code;
  char msg[512];
} si_err;

/* Stable names shared with native/index.ts (proto/errors.ts codes). */
const char *si_err_class(int code);
/* Finer kind, for the CLI: "corrupt", "unsupported", "io", "cancelled", ... */
const char *si_err_kind(int code);
int si_set_err(si_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Progress and cancellation, shared by long operations. */
typedef struct si_progress {
  void (*cb)(void *opaque, uint64_t done, uint64_t total);
  void *opaque;
  volatile int *cancel; /* non-zero: stop as soon as possible */
} si_progress;

/* ---------------------------------------------------------------- sparse */
typedef struct si_extent {
  uint64_t offset, length;
  int data; /* 1 data, 0 hole */
} si_extent;

/* Calls cb for each data/hole extent of [0, file size). */
int si_sparse_extents(const char *path, int (*cb)(void *opaque, const si_extent *x), void *opaque,
                      si_err *e);
int si_punch_hole(const char *path, uint64_t offset, uint64_t length, si_err *e);
/* Copies src to a new/truncated dst, never writing zero runs (>= 4 KiB). */
int si_sparse_copy(const char *src, const char *dst, si_progress *p, si_err *e);
int si_file_sizes(const char *path, uint64_t *apparent, uint64_t *allocated, si_err *e);
/* True when the whole buffer is zero. */
int si_is_zero(const void *buf, size_t len);

/* ---------------------------------------------------------------- sink */
/* A new file written front to back (an upload): staged in an aligned buffer,
 * written with O_DIRECT when `direct` and the filesystem allows it (else
 * through the page cache), all-zero 64 KiB blocks left as holes. finish()
 * writes the tail, sets the size and fdatasyncs; only then is the data
 * durable. One thread at a time per sink. */
typedef struct si_sink si_sink;
int si_sink_open(const char *path, int direct, si_sink **out, si_err *e);
int si_sink_write(si_sink *s, const void *buf, size_t len, si_err *e);
int si_sink_finish(si_sink *s, si_err *e);
uint64_t si_sink_size(const si_sink *s);
/* 1 while writes bypass the page cache. */
int si_sink_direct(const si_sink *s);
/* Closes the file (the caller removes it if unwanted) and frees the sink. */
void si_sink_close(si_sink *s);

/* A file read front to back, with O_DIRECT when `direct` and the filesystem
 * allows it. While direct, buffers and lengths must be multiples of
 * si_source_align() (1 otherwise). read() fills up to len bytes; fewer (or
 * 0) only at the end of the file. One thread at a time per source. */
typedef struct si_source si_source;
int si_source_open(const char *path, int direct, si_source **out, si_err *e);
size_t si_source_align(const si_source *s);
int si_source_read(si_source *s, void *buf, size_t len, size_t *got, si_err *e);
void si_source_close(si_source *s);

/* ---------------------------------------------------------------- images */
enum si_format { SI_FMT_PROBE = -1, SI_FMT_RAW = 0, SI_FMT_QCOW2 = 1 };

#define SI_OPEN_RDWR 1
#define SI_OPEN_ALLOW_DATA_FILE 2
#define SI_OPEN_NO_BACKING 4
#define SI_OPEN_CHECK 8 /* allow corrupt/dirty images (check and repair) */

typedef struct si_image si_image;

si_image *si_open(const char *path, int fmt, int flags, si_err *e);
/* Flushes metadata when writable. Always frees. */
int si_close(si_image *img, si_err *e);
int si_flush(si_image *img, si_err *e);
uint64_t si_size(const si_image *img);
int si_format(const si_image *img);
si_image *si_backing(const si_image *img);

int si_read(si_image *img, void *buf, uint64_t len, uint64_t off, si_err *e);
int si_write(si_image *img, const void *buf, uint64_t len, uint64_t off, si_err *e);
/* Makes [off, off+len) read as zeros (zero flag, unmap, or written zeros). */
int si_write_zeroes(si_image *img, uint64_t len, uint64_t off, si_err *e);

enum si_bs {
  SI_BS_DATA = 1,     /* allocated data in this layer */
  SI_BS_ZERO = 2,     /* reads as zeros, decided by this layer */
  SI_BS_UNALLOC = 3,  /* not in this layer: backing file (or zeros if none) */
  SI_BS_COMPRESSED = 4
};
/* Status of [off, off+*pnum), *pnum <= len, in this layer only. */
int si_block_status(si_image *img, uint64_t off, uint64_t len, uint64_t *pnum, int *kind,
                    uint64_t *host_off, si_err *e);

typedef struct si_info {
  int format;
  uint64_t virtual_size, actual_size, file_size;
  uint32_t cluster_size;
  int version, refcount_bits, compression_type; /* 0 zlib 1 zstd */
  int corrupt, dirty, lazy_refcounts, extended_l2, has_data_file;
  uint64_t incompatible, compatible, autoclear;
  uint32_t nb_snapshots;
  char backing_file[1024];
  char backing_format[64];
  char data_file[1024];
} si_info;
int si_get_info(si_image *img, si_info *info, si_err *e);

typedef struct si_create_opts {
  uint64_t size; /* 0 with a backing file: take the backing size */
  uint32_t cluster_size; /* 0: 64 KiB */
  int version; /* 0: 3 */
  int compression_type; /* 0 zlib, 1 zstd */
  int refcount_order; /* -1: 4 */
  const char *backing_file, *backing_format;
  int prealloc_metadata;
} si_create_opts;
void si_create_opts_init(si_create_opts *o);
int si_create(const char *path, int fmt, const si_create_opts *o, si_err *e);

typedef struct si_convert_opts {
  int src_fmt, dst_fmt;
  si_create_opts create; /* target options (qcow2) */
  int compress;          /* -c */
  int threads;           /* 0: number of CPUs */
  uint64_t min_sparse;   /* zero run to skip; 0 = write everything. default 4096 */
  int level;             /* compression level, 0 default */
  int allow_data_file;
} si_convert_opts;
void si_convert_opts_init(si_convert_opts *o);
int si_convert(const char *src, const char *dst, const si_convert_opts *o, si_progress *p, si_err *e);

/* 0 identical, 1 differ (first offset in *diff_off). */
int si_compare(const char *a, int fa, const char *b, int fb, int strict, uint64_t *diff_off,
               si_progress *p, si_err *e);

typedef struct si_map_entry {
  uint64_t start, length, offset;
  int depth, present, zero, data, has_offset;
} si_map_entry;
int si_map(const char *path, int fmt, int (*cb)(void *opaque, const si_map_entry *m), void *opaque,
           si_err *e);

int si_resize(const char *path, int fmt, uint64_t new_size, int shrink, si_err *e);
int si_rebase_unsafe(const char *path, const char *backing, const char *backing_fmt, si_err *e);
/* Writes the top layer into its backing file; empties the top unless keep. */
int si_commit(const char *path, int fmt, int keep, si_progress *p, si_err *e);

typedef struct si_check_result {
  int64_t corruptions, leaks, check_errors;
  int64_t corruptions_fixed, leaks_fixed;
  uint64_t image_end_offset, total_clusters, allocated_clusters, fragmented_clusters,
      compressed_clusters;
  int repaired; /* a repair ran and the image was checked again */
  char *log;    /* stderr-style diagnostics, malloc'ed; free with si_check_free */
  size_t log_len, log_cap;
} si_check_result;
#define SI_REPAIR_LEAKS 1
#define SI_REPAIR_ALL 3
int si_check(const char *path, int repair, si_check_result *r, si_err *e);
void si_check_free(si_check_result *r);

/* ---------------------------------------------------------------- inspect */
typedef struct si_inspect_result {
  char format[16];      /* raw qcow2 vmdk vhd vhdx vdi iso qed qcow */
  uint64_t virtual_size;
  int safe;
  char reasons[1024];   /* "; "-separated reasons when unsafe */
} si_inspect_result;
int si_inspect(const char *path, si_inspect_result *r, si_err *e);
int si_inspect_buf(const uint8_t *buf, size_t len, uint64_t file_size, si_inspect_result *r);

#ifdef __cplusplus
}
#endif
#endif
