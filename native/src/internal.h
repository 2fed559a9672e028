/* Internal declarations shared by the strato_img sources. */
#ifndef STRATO_IMG_INTERNAL_H
#define STRATO_IMG_INTERNAL_H
#define _GNU_SOURCE
#include "strato_img.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

#define SI_MAX_CHAIN 256

static inline uint64_t be64(const uint8_t *p) {
  return ((uint64_t)p[0] << 56) | ((uint64_t)p[1] << 48) | ((uint64_t)p[2] << 40) |
         ((uint64_t)p[3] << 32) | ((uint64_t)p[4] << 24) | ((uint64_t)p[5] << 16) |
         ((uint64_t)p[6] << 8) | p[7];
}
static inline uint32_t be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint16_t be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline void put64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--) { p[i] = (uint8_t)v; v >>= 8; }
}
static inline void put32(uint8_t *p, uint32_t v) {
  p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = (uint8_t)v;
}
static inline void put16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = (uint8_t)v; }
static inline uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32); }

/* Full pread/pwrite; a read past EOF zero-fills the remainder. */
int si_pread_full(int fd, void *buf, size_t len, uint64_t off, si_err *e, const char *what);
int si_pread_exact(int fd, void *buf, size_t len, uint64_t off, si_err *e, const char *what);
int si_pwrite_full(int fd, const void *buf, size_t len, uint64_t off, si_err *e, const char *what);
int si_errno_err(si_err *e, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void *si_malloc(size_t n, si_err *e);
void *si_calloc(size_t n, si_err *e);
int si_ncpus(void);

/* Compression (compress.c). Returns compressed length, 0 when it does not fit. */
size_t si_compress_cluster(int type, int level, const uint8_t *in, size_t in_len, uint8_t *out,
                           size_t out_cap);
/* Frees this thread's compression contexts (call before a worker thread exits). */
void si_compress_thread_cleanup(void);
int si_decompress_cluster(int type, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len,
                          si_err *e);

/* qcow2 (qcow2.c) */
typedef struct qcow2_state qcow2_state;

struct si_image {
  int fmt;
  int fd;
  int flags;
  int writable;
  char *path;
  uint64_t size;
  si_image *backing;
  qcow2_state *q;
};

int qcow2_probe(const uint8_t *buf, size_t len);
int qcow2_open(si_image *img, si_err *e);
void qcow2_free(si_image *img);
int qcow2_flush(si_image *img, si_err *e);
int qcow2_block_status(si_image *img, uint64_t off, uint64_t len, uint64_t *pnum, int *kind,
                       uint64_t *host, si_err *e);
/* Reads one layer's allocated range; kind from block status. */
int qcow2_read_compressed(si_image *img, uint64_t off, uint8_t *cluster_buf, si_err *e);
int qcow2_data_fd(si_image *img);
int qcow2_write(si_image *img, const void *buf, uint64_t len, uint64_t off, si_err *e);
int qcow2_write_zeroes(si_image *img, uint64_t len, uint64_t off, si_err *e);
int qcow2_get_info(si_image *img, si_info *info, si_err *e);
uint32_t qcow2_cluster_size(si_image *img);
/* Fast path for convert: store prepared clusters in guest order. */
int qcow2_store_cluster(si_image *img, uint64_t guest_off, const uint8_t *data, size_t clen,
                        int compressed, uint64_t *host, si_err *e);
int qcow2_set_zero_cluster(si_image *img, uint64_t guest_off, si_err *e);
int qcow2_resize(si_image *img, uint64_t new_size, int shrink, si_err *e);
int qcow2_set_backing(si_image *img, const char *backing, const char *fmt, si_err *e);
int qcow2_make_empty(si_image *img, si_err *e);
int qcow2_create_file(const char *path, const si_create_opts *o, uint64_t size, si_err *e);
int qcow2_compression_type(si_image *img);
int si_image_set_backing_path(const char *overlay_path, const char *backing, char *out, size_t cap);

/* check.c uses the raw state */
qcow2_state *qcow2_state_of(si_image *img);

#endif
