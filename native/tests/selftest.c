/* Standalone self-test of libstratoimg (no Node, no qemu-img): round trips
 * through create/write/read/convert/compare/check/resize/commit for several
 * cluster sizes, versions and compression types. Exit 0 when all pass.
 * Usage: selftest [workdir] */
#define _GNU_SOURCE
#include "../src/strato_img.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

static int failures, checks;
#define CHECK(cond, ...) do { checks++; if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); } } while (0)
#define OK(call) do { si_err e_ = {0, ""}; si_err *e = &e_; int r_ = (call); CHECK(r_ >= 0, "%s: %s", #call, e_.msg); } while (0)

static char dir[512];
static const char *P(const char *name) {
  static char buf[8][1024];
  static int i;
  i = (i + 1) % 8;
  snprintf(buf[i], sizeof buf[i], "%s/%s", dir, name);
  return buf[i];
}

static uint32_t rnd = 12345;
static uint32_t next(void) { rnd ^= rnd << 13; rnd ^= rnd >> 17; rnd ^= rnd << 5; return rnd; }

static void fill(uint8_t *b, size_t n, int kind) {
  for (size_t i = 0; i < n; i++) b[i] = kind == 0 ? (uint8_t)next() : kind == 1 ? (uint8_t)("strato qcow2 "[i % 13]) : 0;
}

static void roundtrip(uint32_t cs, int version, int compress, int ctype) {
  const uint64_t size = 5 * 1024 * 1024 + 3 * 512;
  uint8_t *ref = calloc(1, size), *got = malloc(size);
  si_create_opts co;
  si_create_opts_init(&co);
  co.size = size;
  co.cluster_size = cs;
  co.version = version;
  co.compression_type = ctype;
  OK(si_create(P("rt.qcow2"), SI_FMT_QCOW2, &co, e));
  si_err err = {0, ""};
  si_image *img = si_open(P("rt.qcow2"), SI_FMT_QCOW2, SI_OPEN_RDWR, &err);
  CHECK(img, "open rw: %s", err.msg);
  if (!img) { free(ref); free(got); return; }
  for (int k = 0; k < 40; k++) {
    uint64_t off = next() % (size - 70000), len = 1 + next() % 70000;
    fill(ref + off, len, k % 3);
    OK(si_write(img, ref + off, len, off, e));
  }
  uint64_t zl = 5ULL * cs <= size ? 3ULL * cs : cs, zo = 5ULL * cs <= size ? 2ULL * cs : cs;
  OK(si_write_zeroes(img, zl, zo, e));
  memset(ref + zo, 0, zl);
  OK(si_close(img, e));
  /* read back */
  img = si_open(P("rt.qcow2"), SI_FMT_PROBE, 0, &err);
  CHECK(img && si_format(img) == SI_FMT_QCOW2, "reopen: %s", err.msg);
  if (img) {
    OK(si_read(img, got, size, 0, e));
    CHECK(!memcmp(ref, got, size), "read back differs (cs=%u v%d)", cs, version);
    si_close(img, NULL);
  }
  si_check_result cr;
  OK(si_check(P("rt.qcow2"), 0, &cr, e));
  CHECK(cr.corruptions == 0 && cr.leaks == 0, "check after writes: %lld corruptions %lld leaks (cs=%u)",
        (long long)cr.corruptions, (long long)cr.leaks, cs);
  si_check_free(&cr);
  /* convert to raw and (compressed) qcow2, compare */
  si_convert_opts o;
  si_convert_opts_init(&o);
  o.dst_fmt = SI_FMT_RAW;
  OK(si_convert(P("rt.qcow2"), P("rt.raw"), &o, NULL, e));
  si_convert_opts_init(&o);
  o.dst_fmt = SI_FMT_QCOW2;
  o.compress = compress;
  o.create.compression_type = ctype;
  o.create.cluster_size = cs;
  o.create.version = version;
  OK(si_convert(P("rt.raw"), P("rt2.qcow2"), &o, NULL, e));
  uint64_t diff = 0;
  si_err ce = {0, ""};
  int c = si_compare(P("rt.qcow2"), SI_FMT_QCOW2, P("rt2.qcow2"), SI_FMT_QCOW2, 1, &diff, NULL, &ce);
  CHECK(c == 0, "compare after convert: %d at %llu %s", c, (unsigned long long)diff, ce.msg);
  OK(si_check(P("rt2.qcow2"), 0, &cr, e));
  CHECK(cr.corruptions == 0 && cr.leaks == 0, "check converted image");
  CHECK(!compress || cr.compressed_clusters > 0, "compressed clusters present");
  si_check_free(&cr);
  free(ref);
  free(got);
}

static void chain_and_commit(void) {
  si_create_opts co;
  si_create_opts_init(&co);
  co.size = 2 * 1024 * 1024;
  OK(si_create(P("base.qcow2"), SI_FMT_QCOW2, &co, e));
  si_create_opts_init(&co);
  co.backing_file = "base.qcow2";
  co.backing_format = "qcow2";
  co.cluster_size = 4096;
  OK(si_create(P("top.qcow2"), SI_FMT_QCOW2, &co, e));
  si_err err = {0, ""};
  si_image *b = si_open(P("base.qcow2"), SI_FMT_QCOW2, SI_OPEN_RDWR, &err);
  OK(si_write(b, "base-data", 9, 1000, e));
  si_close(b, &err);
  si_image *t = si_open(P("top.qcow2"), SI_FMT_QCOW2, SI_OPEN_RDWR, &err);
  CHECK(t, "open top: %s", err.msg);
  if (!t) return;
  CHECK(si_size(t) == 2 * 1024 * 1024, "overlay takes the backing size");
  OK(si_write(t, "TOP", 3, 1002, e));
  char buf[9];
  OK(si_read(t, buf, 9, 1000, e));
  CHECK(!memcmp(buf, "baTOPdata", 9), "overlay read merges layers: %.9s", buf);
  OK(si_close(t, e));
  OK(si_resize(P("top.qcow2"), SI_FMT_QCOW2, 4 * 1024 * 1024, 0, e));
  OK(si_commit(P("top.qcow2"), SI_FMT_QCOW2, 0, NULL, e));
  b = si_open(P("base.qcow2"), SI_FMT_QCOW2, 0, &err);
  if (b) {
    OK(si_read(b, buf, 9, 1000, e));
    CHECK(!memcmp(buf, "baTOPdata", 9), "commit wrote into base");
    CHECK(si_size(b) == 4 * 1024 * 1024, "commit grew the base");
    si_close(b, NULL);
  }
  si_check_result cr;
  OK(si_check(P("top.qcow2"), 0, &cr, e));
  CHECK(cr.corruptions == 0 && cr.leaks == 0 && cr.allocated_clusters == 0, "top emptied and clean");
  si_check_free(&cr);
  OK(si_check(P("base.qcow2"), 0, &cr, e));
  CHECK(cr.corruptions == 0 && cr.leaks == 0, "base clean after commit");
  si_check_free(&cr);
}

static void inspect_cases(void) {
  uint8_t buf[4096] = {0};
  si_inspect_result r;
  si_inspect_buf(buf, sizeof buf, sizeof buf, &r);
  CHECK(!strcmp(r.format, "raw") && r.safe, "zeros are raw and safe");
  memcpy(buf, "QFI\xfb\0\0\0\3", 8);
  buf[23] = 16;
  buf[8 + 7] = 0x80; /* backing file offset */
  si_inspect_buf(buf, sizeof buf, sizeof buf, &r);
  CHECK(!strcmp(r.format, "qcow2") && !r.safe && strstr(r.reasons, "backing"), "qcow2 with backing is unsafe: %s", r.reasons);
  /* issue 13: the shared header rules make the inspector refuse what the engine cannot open */
  buf[8 + 7] = 0;
  si_inspect_buf(buf, 100, 100, &r);
  CHECK(!r.safe && strstr(r.reasons, "qcow2 header too short: 100 bytes, need 104"), "short qcow2 is unsafe: %s", r.reasons);
  buf[103] = 104; /* header_length */
  memcpy(buf + 36, "\x7f\xff\xff\xff", 4); /* l1_size */
  si_inspect_buf(buf, sizeof buf, sizeof buf, &r);
  CHECK(!r.safe && strstr(r.reasons, "L1 table too large: 2147483647 entries"), "huge L1 is unsafe: %s", r.reasons);
}

/* The sink (uploads) and source (downloads), with and without O_DIRECT:
 * unaligned pieces of mixed data, a tail, zero blocks left as holes. */
static void sink_and_source(int direct) {
  const size_t size = 9 * 1024 * 1024 + 4097;
  uint8_t *ref = malloc(size);
  for (size_t off = 0; off < size; off += 100 * 1024) {
    size_t n = size - off < 100 * 1024 ? size - off : 100 * 1024;
    fill(ref + off, n, (int)((off / (100 * 1024)) % 3));
  }
  memset(ref + 2 * 1024 * 1024, 0, 3 * 1024 * 1024); /* whole zero blocks in there */
  si_sink *s = NULL;
  OK(si_sink_open(P("sink.raw"), direct, &s, e));
  if (!s) { free(ref); return; }
  size_t steps[] = {1, 4095, 65537, 777, 3 * 1024 * 1024 + 5};
  for (size_t off = 0, i = 0; off < size; i++) {
    size_t n = steps[i % 5] < size - off ? steps[i % 5] : size - off;
    OK(si_sink_write(s, ref + off, n, e));
    off += n;
  }
  OK(si_sink_finish(s, e));
  CHECK(si_sink_size(s) == size, "sink size %llu", (unsigned long long)si_sink_size(s));
  si_sink_close(s);
  uint64_t apparent = 0, allocated = 0;
  OK(si_file_sizes(P("sink.raw"), &apparent, &allocated, e));
  CHECK(apparent == size, "sink file size");
  CHECK(allocated <= size - 3 * 1024 * 1024 + 128 * 1024, "zero blocks are holes (%llu allocated)", (unsigned long long)allocated);
  si_source *src = NULL;
  OK(si_source_open(P("sink.raw"), direct, &src, e));
  if (!src) { free(ref); return; }
  size_t align = si_source_align(src), cap = 1024 * 1024, got = 0, total = 0;
  CHECK(direct || align == 1, "no alignment without O_DIRECT");
  uint8_t *buf = NULL;
  if (posix_memalign((void **)&buf, 4096, cap) != 0) { si_source_close(src); free(ref); return; }
  for (;;) {
    OK(si_source_read(src, buf, cap, &got, e));
    if (!got) break;
    CHECK(total + got <= size && !memcmp(buf, ref + total, got), "source data at %zu", total);
    total += got;
  }
  CHECK(total == size, "source read %zu of %zu", total, size);
  if (align > 1) {
    si_err e = {0, ""};
    CHECK(si_source_read(src, buf + 1, cap - 4096, &got, &e) < 0 && e.code == SI_E_INVALID, "an unaligned direct read is refused");
  }
  si_source_close(src);
  free(buf);
  free(ref);
}

int main(int argc, char **argv) {
  if (argc == 5 && !strcmp(argv[1], "convert")) {
    /* selftest convert SRC DST raw|qcow2|qcow2c: a driver for profiling */
    si_convert_opts o;
    si_convert_opts_init(&o);
    o.dst_fmt = strncmp(argv[4], "qcow2", 5) ? SI_FMT_RAW : SI_FMT_QCOW2;
    o.compress = !strcmp(argv[4], "qcow2c");
    si_err e = {0, ""};
    if (si_convert(argv[2], argv[3], &o, NULL, &e) < 0) { fprintf(stderr, "%s\n", e.msg); return 1; }
    return 0;
  }
  if (argc > 1) snprintf(dir, sizeof dir, "%s", argv[1]);
  else {
    char tmpl[] = "/tmp/strato-selftest-XXXXXX";
    if (!mkdtemp(tmpl)) return 2;
    snprintf(dir, sizeof dir, "%s", tmpl);
  }
  uint32_t sizes[] = {512, 4096, 65536, 2 * 1024 * 1024};
  for (int i = 0; i < 4; i++) {
    roundtrip(sizes[i], 3, 0, 0);
    roundtrip(sizes[i], 3, 1, i & 1);
  }
  roundtrip(65536, 2, 1, 0);
  chain_and_commit();
  inspect_cases();
  sink_and_source(1);
  sink_and_source(0);
  if (argc <= 1) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  }
  printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
