#include "internal.h"
#include <zlib.h>
#include <zstd.h>

/* Per-thread contexts: creating them per cluster costs more than compressing. */
static __thread z_stream *t_def;
static __thread int t_def_level = -100;
static __thread z_stream *t_inf;
static __thread ZSTD_CCtx *t_zc;
static __thread ZSTD_DCtx *t_zd;

size_t si_compress_cluster(int type, int level, const uint8_t *in, size_t in_len, uint8_t *out,
                           size_t out_cap) {
  if (type == 1) {
    if (!t_zc && !(t_zc = ZSTD_createCCtx())) return 0;
    size_t n = ZSTD_compressCCtx(t_zc, out, out_cap, in, in_len, level ? level : 1);
    if (ZSTD_isError(n) || n >= out_cap) return 0;
    return n;
  }
  int lv = level ? level : 1;
  if (t_def && t_def_level != lv) { deflateEnd(t_def); free(t_def); t_def = NULL; }
  if (!t_def) {
    t_def = calloc(1, sizeof *t_def);
    if (!t_def) return 0;
    /* qemu inflates with windowBits -12: never use a larger window. */
    if (deflateInit2(t_def, lv, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) != Z_OK) {
      free(t_def); t_def = NULL; return 0;
    }
    t_def_level = lv;
  } else {
    deflateReset(t_def);
  }
  t_def->next_in = (Bytef *)in;
  t_def->avail_in = (uInt)in_len;
  t_def->next_out = out;
  t_def->avail_out = (uInt)out_cap;
  int r = deflate(t_def, Z_FINISH);
  if (r != Z_STREAM_END) return 0;
  size_t n = out_cap - t_def->avail_out;
  return n >= out_cap ? 0 : n;
}

int si_decompress_cluster(int type, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len,
                          si_err *e) {
  if (type == 1) {
    if (!t_zd && !(t_zd = ZSTD_createDCtx())) return si_set_err(e, SI_E_NOMEM, "zstd context");
    ZSTD_DCtx_reset(t_zd, ZSTD_reset_session_only);
    ZSTD_inBuffer ib = {in, in_len, 0};
    ZSTD_outBuffer ob = {out, out_len, 0};
    while (ob.pos < ob.size) {
      size_t r = ZSTD_decompressStream(t_zd, &ob, &ib);
      if (ZSTD_isError(r))
        return si_set_err(e, SI_E_CORRUPT, "zstd-compressed cluster is corrupt: %s", ZSTD_getErrorName(r));
      if (ib.pos == ib.size && ob.pos < ob.size && r != 0) break;
      if (r == 0 && ob.pos < ob.size) break;
    }
    if (ob.pos != ob.size) return si_set_err(e, SI_E_CORRUPT, "zstd-compressed cluster is truncated");
    return 0;
  }
  if (!t_inf) {
    t_inf = calloc(1, sizeof *t_inf);
    if (!t_inf) return si_set_err(e, SI_E_NOMEM, "zlib context");
    /* A 32 KiB window also reads 4 KiB-window streams. */
    if (inflateInit2(t_inf, -15) != Z_OK) { free(t_inf); t_inf = NULL; return si_set_err(e, SI_E_NOMEM, "zlib init"); }
  } else {
    inflateReset(t_inf);
  }
  t_inf->next_in = (Bytef *)in;
  t_inf->avail_in = (uInt)in_len;
  t_inf->next_out = out;
  t_inf->avail_out = (uInt)out_len;
  int r = inflate(t_inf, Z_FINISH);
  if ((r == Z_STREAM_END || r == Z_BUF_ERROR || r == Z_OK) && t_inf->avail_out == 0) return 0;
  return si_set_err(e, SI_E_CORRUPT, "zlib-compressed cluster is corrupt or truncated");
}

void si_compress_thread_cleanup(void) {
  if (t_def) { deflateEnd(t_def); free(t_def); t_def = NULL; t_def_level = -100; }
  if (t_inf) { inflateEnd(t_inf); free(t_inf); t_inf = NULL; }
  if (t_zc) { ZSTD_freeCCtx(t_zc); t_zc = NULL; }
  if (t_zd) { ZSTD_freeDCtx(t_zd); t_zd = NULL; }
}
