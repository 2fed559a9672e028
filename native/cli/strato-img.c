/*
 * strato-img, the command: a native front for the data path.
 *
 * A short command's time is mostly start-up, and Node's is ~0.1 s here
 * (`node -e 0`) where qemu-img's whole process is ~0.03 s. So the command on
 * PATH is this small executable: `convert` — what every image upload and
 * every host's image cache does — runs here (except `-c` with zlib, which
 * is faster through Node's own zlib; see convert()), on the engine linked in
 * (libstratoimg.a, the same C the Node addon wraps), with no interpreter in
 * between. Everything else, and every `convert` whose arguments are not
 * plainly valid, is handed to the Node CLI (dist/cli/strato-img.js) by
 * execv: one parser owns the error messages for bad arguments, and the two
 * paths cannot disagree about what a command means.
 *
 * The fast path accepts exactly what the Node CLI's convert accepts when it
 * succeeds (the same flags, -o keys, size syntax and probing rule), and on
 * an engine error prints the engine's message the way the Node CLI does
 * (`strato-img: <message>`, exit 1). test/integration/native/cli-front.test.ts
 * runs both on the same argument vectors and compares them.
 *
 * Env: STRATO_IMG_JS names the Node CLI (default: ../../dist/cli/strato-img.js
 * next to this executable, symlinks resolved); STRATO_IMG_FRONT=node sends
 * every command to it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../src/strato_img.h"

#define MAX_OPTS 32

/* Hands the whole command line to the Node CLI; never returns. */
static void to_node(int argc, char **argv) {
  char js[PATH_MAX];
  const char *env = getenv("STRATO_IMG_JS");
  if (env && *env) {
    snprintf(js, sizeof js, "%s", env);
  } else {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0) {
      fprintf(stderr, "strato-img: cannot find its own executable: %s\n", strerror(errno));
      exit(1);
    }
    self[n] = 0;
    /* <root>/native/build/strato-img -> <root>/dist/cli/strato-img.js */
    char *dir = dirname(dirname(dirname(self)));
    snprintf(js, sizeof js, "%s/dist/cli/strato-img.js", dir);
  }
  char **args = calloc((size_t)argc + 2, sizeof *args);
  if (!args) exit(1);
  args[0] = "node";
  args[1] = js;
  for (int i = 1; i < argc; i++) args[i + 1] = argv[i];
  /* As the Node CLI's #! line: the CA bundle costs start-up and is never used. */
  unsetenv("NODE_EXTRA_CA_CERTS");
  execvp("node", args);
  fprintf(stderr, "strato-img: cannot run node for '%s': %s\n", js, strerror(errno));
  exit(1);
}

/* qemu size syntax, as parseSize in cli/strato-img.ts: digits, an optional
 * fraction, an optional b/k/K/M/G/T/P/E suffix (powers of 1024). */
static int parse_size(const char *s, uint64_t *out) {
  while (*s == ' ' || *s == '\t' || *s == '\n') s++;
  const char *p = s;
  double v = 0;
  if (*p < '0' || *p > '9') return -1;
  while (*p >= '0' && *p <= '9') p++;
  if (*p == '.') {
    p++;
    if (*p < '0' || *p > '9') return -1;
    while (*p >= '0' && *p <= '9') p++;
  }
  char *end;
  errno = 0;
  v = strtod(s, &end);
  if (errno || end != p) return -1;
  double mult = 1;
  switch (*p) {
    case 0: case 'b': break;
    case 'k': case 'K': mult = 1024.0; break;
    case 'M': mult = 1024.0 * 1024; break;
    case 'G': mult = 1024.0 * 1024 * 1024; break;
    case 'T': mult = 1024.0 * 1024 * 1024 * 1024; break;
    case 'P': mult = 1024.0 * 1024 * 1024 * 1024 * 1024; break;
    case 'E': mult = 1024.0 * 1024 * 1024 * 1024 * 1024 * 1024; break;
    default: return -1;
  }
  if (*p) p++;
  while (*p == ' ' || *p == '\t' || *p == '\n') p++;
  if (*p) return -1;
  double n = v * mult + 0.5;
  if (n >= 9007199254740991.0) return -1; /* Number.isSafeInteger */
  *out = (uint64_t)n;
  return 0;
}

static int parse_fmt(const char *s) {
  if (!strcmp(s, "raw")) return SI_FMT_RAW;
  if (!strcmp(s, "qcow2")) return SI_FMT_QCOW2;
  return -2;
}

/* One -o group into the create options; 0 when every key is valid. */
static int apply_opts(char *group, si_create_opts *c, const char **backing_fmt) {
  for (char *save = NULL, *kv = strtok_r(group, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(kv, '=');
    const char *v = eq ? eq + 1 : "";
    if (eq) *eq = 0;
    uint64_t n;
    if (!strcmp(kv, "cluster_size")) {
      if (parse_size(v, &n) < 0 || n > UINT32_MAX) return -1;
      c->cluster_size = (uint32_t)n;
    } else if (!strcmp(kv, "compression_type")) {
      if (!strcmp(v, "zlib")) c->compression_type = 0;
      else if (!strcmp(v, "zstd")) c->compression_type = 1;
      else return -1;
    } else if (!strcmp(kv, "compat")) {
      if (!strcmp(v, "0.10") || !strcmp(v, "v2")) c->version = 2;
      else if (!strcmp(v, "1.1") || !strcmp(v, "v3")) c->version = 3;
      else return -1;
    } else if (!strcmp(kv, "refcount_bits")) {
      char *end;
      long bits = strtol(v, &end, 10);
      if (!*v || *end) return -1;
      int order = 0;
      while ((1L << order) < bits && order < 7) order++;
      if ((1L << order) != bits) return -1; /* the Node CLI lets the engine say why */
      c->refcount_order = order;
    } else if (!strcmp(kv, "backing_file")) {
      c->backing_file = v;
    } else if (!strcmp(kv, "backing_fmt")) {
      if (parse_fmt(v) < 0) return -1;
      *backing_fmt = v;
    } else if (!strcmp(kv, "size")) {
      if (parse_size(v, &n) < 0) return -1;
      c->size = n;
    } else if (!strcmp(kv, "preallocation")) {
      if (strcmp(v, "off")) return -1;
    } else if (!strcmp(kv, "lazy_refcounts")) {
      if (!strcmp(v, "on")) return -1;
    } else {
      return -1;
    }
  }
  return 0;
}

static void progress_cb(void *opaque, uint64_t done, uint64_t total) {
  (void)opaque;
  double pct = total ? 100.0 * (double)done / (double)total : 100.0;
  printf("    (%.2f/100%%)\r", pct);
  fflush(stdout);
}

/*
 * convert, when its arguments are plainly valid: returns the exit code, or -1
 * to hand the command to the Node CLI (which explains what is wrong).
 */
static int convert(int argc, char **argv) {
  const char *f = NULL, *O = NULL, *B = NULL, *F = NULL, *S = NULL, *m = NULL;
  char *groups[MAX_OPTS];
  int ngroups = 0, compress = 0, progress = 0, quiet = 0;
  const char *args[3];
  int nargs = 0;
  for (int i = 2; i < argc; i++) {
    char *a = argv[i];
    if (!strcmp(a, "--")) {
      for (i++; i < argc; i++) {
        if (nargs == 2) return -1;
        args[nargs++] = argv[i];
      }
      break;
    }
    if (!strncmp(a, "--", 2)) {
      /* --output is accepted (and ignored) by the Node CLI's convert. */
      if (!strncmp(a, "--output=", 9)) continue;
      if (!strcmp(a, "--output") && i + 1 < argc) { i++; continue; }
      return -1;
    }
    if (a[0] == '-' && a[1]) {
      for (int j = 1; a[j]; j++) {
        char ch = a[j];
        if (strchr("fOoBFSm", ch)) {
          char *v = a[j + 1] ? a + j + 1 : (i + 1 < argc ? argv[++i] : NULL);
          if (!v) return -1;
          switch (ch) {
            case 'f': f = v; break;
            case 'O': O = v; break;
            case 'B': B = v; break;
            case 'F': F = v; break;
            case 'S': S = v; break;
            case 'm': m = v; break;
            case 'o':
              if (ngroups == MAX_OPTS) return -1;
              groups[ngroups++] = v;
              break;
          }
          break;
        }
        switch (ch) {
          case 'c': compress = 1; break;
          case 'p': progress = 1; break;
          case 'q': quiet = 1; break;
          case 'W': case 'U': break;
          default: return -1;
        }
      }
      continue;
    }
    if (nargs == 2) return -1; /* "Only one source image is supported" */
    args[nargs++] = a;
  }
  if (nargs != 2) return -1;

  si_convert_opts o;
  si_convert_opts_init(&o);
  const char *backing_fmt = NULL;
  for (int k = 0; k < ngroups; k++) {
    /* Values point into the copy: it lives as long as the command. */
    char *keep = strdup(groups[k]);
    if (!keep || apply_opts(keep, &o.create, &backing_fmt) < 0) return -1;
  }
  o.src_fmt = SI_FMT_PROBE;
  if (f && (o.src_fmt = parse_fmt(f)) < 0) return -1;
  o.dst_fmt = SI_FMT_RAW;
  if (O && (o.dst_fmt = parse_fmt(O)) < 0) return -1;
  o.compress = compress;
  /* zlib compression is faster in Node: the addon's deflate calls bind to the
   * zlib Node carries (Chromium's, with SIMD), which Debian's libz, linked
   * here, is not — measured on a 1 GiB image, -c: 2.5-2.9 s here against
   * 1.9 s through Node, start-up included. Those converts go to Node. */
  if (compress && o.create.compression_type == 0) return -1;
  if (B) {
    o.create.backing_file = B;
    if (F) {
      if (parse_fmt(F) < 0) return -1;
      backing_fmt = F;
    }
    if (!backing_fmt) return -1;
  } else if (o.create.backing_file && !backing_fmt) {
    /* -o backing_file without a format: let the Node CLI and the engine decide. */
    return -1;
  }
  o.create.backing_format = backing_fmt;
  if (S && parse_size(S, &o.min_sparse) < 0) return -1;
  if (m) {
    char *end;
    long n = strtol(m, &end, 10);
    if (!*m || *end || n < 0 || n > 1024) return -1;
    o.threads = (int)n;
  }

  si_err e;
  memset(&e, 0, sizeof e);
  /* Without -f the Node CLI probes qcow2 vs raw and refuses other formats by
   * name; so does this path (the Node CLI says which format it saw). */
  if (o.src_fmt == SI_FMT_PROBE) {
    si_inspect_result r;
    if (si_inspect(args[0], &r, &e) < 0) {
      fprintf(stderr, "strato-img: %s\n", e.msg[0] ? e.msg : "operation failed");
      return 1;
    }
    if (strcmp(r.format, "raw") && strcmp(r.format, "qcow2")) return -1;
  }

  si_progress p;
  memset(&p, 0, sizeof p);
  int show = progress && !quiet;
  if (show) p.cb = progress_cb;
  if (si_convert(args[0], args[1], &o, show ? &p : NULL, &e) < 0) {
    fprintf(stderr, "strato-img: %s\n", e.msg[0] ? e.msg : "operation failed");
    return 1;
  }
  if (show) printf("    (100.00/100%%)\n");
  return 0;
}

int main(int argc, char **argv) {
  const char *front = getenv("STRATO_IMG_FRONT");
  if (argc >= 2 && !(front && !strcmp(front, "node")) && !strcmp(argv[1], "convert")) {
    int rc = convert(argc, argv);
    if (rc >= 0) return rc;
  }
  to_node(argc, argv);
  return 1;
}
