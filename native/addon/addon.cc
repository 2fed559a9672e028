// Node-API layer over libstratoimg: every operation runs on a worker thread
// and resolves a promise; long ones report progress and can be cancelled.
// Errors reject with an Error carrying `code` (proto/errors.ts ErrorCode) and
// `kind` (finer reason); native/index.ts turns them into Strato errors.
#include <napi.h>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>
#include <cstring>
#include "../src/strato_img.h"
#include "errors.h"

Napi::Function InitImageSink(Napi::Env env);    // direct.cc
Napi::Function InitImageSource(Napi::Env env);  // direct.cc

namespace {

struct Prog {
  uint64_t done, total;
};

class CancelToken : public Napi::ObjectWrap<CancelToken> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "CancelToken", {InstanceMethod("cancel", &CancelToken::Cancel),
                                            InstanceAccessor("cancelled", &CancelToken::Cancelled, nullptr)});
  }
  CancelToken(const Napi::CallbackInfo &info) : Napi::ObjectWrap<CancelToken>(info), flag(std::make_shared<int>(0)) {}
  Napi::Value Cancel(const Napi::CallbackInfo &info) {
    __atomic_store_n(flag.get(), 1, __ATOMIC_SEQ_CST);
    return info.Env().Undefined();
  }
  Napi::Value Cancelled(const Napi::CallbackInfo &info) { return Napi::Boolean::New(info.Env(), *flag != 0); }
  std::shared_ptr<int> flag;
};

Napi::FunctionReference *g_cancel_ctor = nullptr;

using RunFn = std::function<int(si_err *, si_progress *)>;
using ResultFn = std::function<Napi::Value(Napi::Env)>;

class Job : public Napi::AsyncProgressWorker<Prog> {
 public:
  Job(Napi::Env env, RunFn run, ResultFn result, Napi::Value onProgress, std::shared_ptr<int> cancel)
      : Napi::AsyncProgressWorker<Prog>(env, "strato-img"), deferred(Napi::Promise::Deferred::New(env)),
        run_(std::move(run)), result_(std::move(result)), cancel_(std::move(cancel)) {
    if (onProgress.IsFunction()) progress_cb = Napi::Persistent(onProgress.As<Napi::Function>());
    memset(&err_, 0, sizeof err_);
  }
  Napi::Promise::Deferred deferred;

  void Execute(const ExecutionProgress &progress) override {
    si_progress p;
    memset(&p, 0, sizeof p);
    p.cancel = cancel_ ? cancel_.get() : nullptr;
    const ExecutionProgress *ep = &progress;
    if (!progress_cb.IsEmpty()) {
      p.opaque = (void *)ep;
      p.cb = [](void *o, uint64_t done, uint64_t total) {
        Prog pr{done, total};
        static_cast<const ExecutionProgress *>(o)->Send(&pr, 1);
      };
    }
    rc_ = run_(&err_, &p);
  }
  void OnProgress(const Prog *data, size_t count) override {
    if (progress_cb.IsEmpty() || !count) return;
    Napi::Env env = Env();
    progress_cb.Call({Napi::Number::New(env, (double)data[count - 1].done),
                      Napi::Number::New(env, (double)data[count - 1].total)});
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (rc_ < 0) {
      if (!err_.code) { err_.code = SI_E_IO; strcpy(err_.msg, "operation failed"); }
      deferred.Reject(MakeError(env, err_).Value());
      return;
    }
    deferred.Resolve(result_ ? result_(env) : env.Undefined());
  }
  void OnError(const Napi::Error &e) override { deferred.Reject(e.Value()); }

 private:
  RunFn run_;
  ResultFn result_;
  std::shared_ptr<int> cancel_;
  Napi::FunctionReference progress_cb;
  si_err err_;
  int rc_ = 0;
};

Napi::Value Queue(Napi::Env env, RunFn run, ResultFn result, Napi::Value onProgress = Napi::Value(),
                  Napi::Value cancel = Napi::Value()) {
  std::shared_ptr<int> flag;
  if (!cancel.IsEmpty() && cancel.IsObject() && g_cancel_ctor &&
      cancel.As<Napi::Object>().InstanceOf(g_cancel_ctor->Value())) {
    flag = CancelToken::Unwrap(cancel.As<Napi::Object>())->flag;
  }
  Job *job = new Job(env, std::move(run), std::move(result), onProgress, flag);
  Napi::Promise p = job->deferred.Promise();
  job->Queue();
  return p;
}

std::string Str(const Napi::Value &v) { return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string(); }
bool Has(const Napi::Object &o, const char *k) {
  return o.Has(k) && !o.Get(k).IsUndefined() && !o.Get(k).IsNull();
}
double Num(const Napi::Object &o, const char *k, double d) { return Has(o, k) ? o.Get(k).ToNumber().DoubleValue() : d; }
bool Bool(const Napi::Object &o, const char *k) { return Has(o, k) && o.Get(k).ToBoolean().Value(); }
int Fmt(const Napi::Value &v) {
  std::string s = Str(v);
  if (s == "raw") return SI_FMT_RAW;
  if (s == "qcow2") return SI_FMT_QCOW2;
  return SI_FMT_PROBE;
}
Napi::Object Opts(const Napi::CallbackInfo &info, size_t i) {
  return info.Length() > i && info[i].IsObject() ? info[i].As<Napi::Object>() : Napi::Object::New(info.Env());
}

struct CreateArgs {
  std::string backing, backing_fmt;
  si_create_opts o;
};
void ReadCreate(const Napi::Object &o, CreateArgs &c) {
  si_create_opts_init(&c.o);
  c.o.size = (uint64_t)Num(o, "size", 0);
  c.o.cluster_size = (uint32_t)Num(o, "clusterSize", 0);
  c.o.version = (int)Num(o, "version", 0);
  c.o.compression_type = Str(o.Get("compressionType")) == "zstd" ? 1 : 0;
  if (Has(o, "refcountBits")) {
    int bits = (int)Num(o, "refcountBits", 16), order = 0;
    while ((1 << order) < bits && order < 7) order++;
    c.o.refcount_order = (1 << order) == bits ? order : 99;
  }
  c.o.prealloc_metadata = Str(o.Get("preallocation")) == "metadata";
  if (Has(o, "backingFile")) {
    c.backing = Str(o.Get("backingFile"));
    c.backing_fmt = Str(o.Get("backingFormat"));
  }
}
void Apply(CreateArgs &c) {
  c.o.backing_file = c.backing.empty() ? nullptr : c.backing.c_str();
  c.o.backing_format = c.backing_fmt.empty() ? nullptr : c.backing_fmt.c_str();
}

Napi::Object InfoObj(Napi::Env env, const si_info &i) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("format", i.format == SI_FMT_QCOW2 ? "qcow2" : "raw");
  o.Set("virtualSize", (double)i.virtual_size);
  o.Set("actualSize", (double)i.actual_size);
  o.Set("fileSize", (double)i.file_size);
  if (i.format == SI_FMT_QCOW2) {
    o.Set("clusterSize", i.cluster_size);
    o.Set("version", i.version);
    o.Set("refcountBits", i.refcount_bits);
    o.Set("compressionType", i.compression_type ? "zstd" : "zlib");
    o.Set("corrupt", i.corrupt != 0);
    o.Set("dirty", i.dirty != 0);
    o.Set("lazyRefcounts", i.lazy_refcounts != 0);
    o.Set("extendedL2", i.extended_l2 != 0);
    o.Set("snapshots", i.nb_snapshots);
    o.Set("incompatibleFeatures", (double)i.incompatible);
    if (i.backing_file[0]) o.Set("backingFile", i.backing_file);
    if (i.backing_format[0]) o.Set("backingFormat", i.backing_format);
    if (i.data_file[0]) o.Set("dataFile", i.data_file);
  }
  return o;
}

Napi::Value Info(const Napi::CallbackInfo &info) {
  std::string path = Str(info[0]);
  int fmt = Fmt(info[1]);
  Napi::Object o = Opts(info, 2);
  int flags = (Bool(o, "allowDataFile") ? SI_OPEN_ALLOW_DATA_FILE : 0) | (Bool(o, "noBacking") ? SI_OPEN_NO_BACKING : 0);
  bool chain = Bool(o, "backingChain");
  auto res = std::make_shared<std::vector<si_info>>();
  auto paths = std::make_shared<std::vector<std::string>>();
  return Queue(
      info.Env(),
      [=](si_err *e, si_progress *) {
        si_image *img = si_open(path.c_str(), fmt, flags | (chain ? 0 : SI_OPEN_NO_BACKING), e);
        if (!img) return -1;
        for (si_image *l = img; l; l = chain ? si_backing(l) : nullptr) {
          si_info i;
          if (si_get_info(l, &i, e) < 0) { si_close(img, nullptr); return -1; }
          res->push_back(i);
        }
        si_close(img, nullptr);
        return 0;
      },
      [=](Napi::Env env) -> Napi::Value {
        Napi::Array a = Napi::Array::New(env, res->size());
        for (size_t k = 0; k < res->size(); k++) a.Set((uint32_t)k, InfoObj(env, (*res)[k]));
        return a;
      });
}

Napi::Value Create(const Napi::CallbackInfo &info) {
  std::string path = Str(info[0]);
  int fmt = Fmt(info[1]);
  auto c = std::make_shared<CreateArgs>();
  ReadCreate(Opts(info, 2), *c);
  return Queue(info.Env(), [=](si_err *e, si_progress *) { Apply(*c); return si_create(path.c_str(), fmt, &c->o, e); }, nullptr);
}

Napi::Value CreateSync(const Napi::CallbackInfo &info) {
  std::string path = Str(info[0]);
  int fmt = Fmt(info[1]);
  CreateArgs c;
  ReadCreate(Opts(info, 2), c);
  Apply(c);
  si_err e{};
  if (si_create(path.c_str(), fmt, &c.o, &e) < 0) throw MakeError(info.Env(), e);
  return info.Env().Undefined();
}

Napi::Value Convert(const Napi::CallbackInfo &info) {
  std::string src = Str(info[0]), dst = Str(info[1]);
  Napi::Object o = Opts(info, 2);
  auto c = std::make_shared<CreateArgs>();
  ReadCreate(o, *c);
  auto co = std::make_shared<si_convert_opts>();
  si_convert_opts_init(co.get());
  co->src_fmt = Fmt(o.Get("srcFormat"));
  co->dst_fmt = Str(o.Get("dstFormat")) == "qcow2" ? SI_FMT_QCOW2 : SI_FMT_RAW;
  if (Has(o, "dstFormat") && Str(o.Get("dstFormat")) != "qcow2" && Str(o.Get("dstFormat")) != "raw")
    co->dst_fmt = 99;
  co->compress = Bool(o, "compress");
  co->threads = (int)Num(o, "threads", 0);
  co->min_sparse = (uint64_t)Num(o, "minSparse", 4096);
  co->level = (int)Num(o, "level", 0);
  co->allow_data_file = Bool(o, "allowDataFile");
  return Queue(
      info.Env(),
      [=](si_err *e, si_progress *p) {
        Apply(*c);
        co->create = c->o;
        return si_convert(src.c_str(), dst.c_str(), co.get(), p, e);
      },
      nullptr, info.Length() > 3 ? info[3] : Napi::Value(), info.Length() > 4 ? info[4] : Napi::Value());
}

Napi::Value Compare(const Napi::CallbackInfo &info) {
  std::string a = Str(info[0]), b = Str(info[2]);
  int fa = Fmt(info[1]), fb = Fmt(info[3]);
  bool strict = info.Length() > 4 && info[4].ToBoolean().Value();
  auto out = std::make_shared<std::pair<int, uint64_t>>(0, 0);
  return Queue(
      info.Env(),
      [=](si_err *e, si_progress *p) {
        int r = si_compare(a.c_str(), fa, b.c_str(), fb, strict, &out->second, p, e);
        out->first = r;
        return r < 0 ? -1 : 0;
      },
      [=](Napi::Env env) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("identical", out->first == 0);
        if (out->first == 1) o.Set("offset", (double)out->second);
        return o;
      },
      info.Length() > 5 ? info[5] : Napi::Value(), info.Length() > 6 ? info[6] : Napi::Value());
}

Napi::Value Map(const Napi::CallbackInfo &info) {
  std::string path = Str(info[0]);
  int fmt = Fmt(info[1]);
  auto v = std::make_shared<std::vector<si_map_entry>>();
  return Queue(
      info.Env(),
      [=](si_err *e, si_progress *) {
        return si_map(path.c_str(), fmt, [](void *o, const si_map_entry *m) {
          auto *vec = static_cast<std::vector<si_map_entry> *>(o);
          if (vec->size() > 10000000) return 1;
          vec->push_back(*m);
          return 0;
        }, v.get(), e);
      },
      [=](Napi::Env env) -> Napi::Value {
        Napi::Array a = Napi::Array::New(env, v->size());
        for (size_t k = 0; k < v->size(); k++) {
          const si_map_entry &m = (*v)[k];
          Napi::Object o = Napi::Object::New(env);
          o.Set("start", (double)m.start);
          o.Set("length", (double)m.length);
          o.Set("depth", m.depth);
          o.Set("present", m.present != 0);
          o.Set("zero", m.zero != 0);
          o.Set("data", m.data != 0);
          if (m.has_offset) o.Set("offset", (double)m.offset);
          a.Set((uint32_t)k, o);
        }
        return a;
      });
}

Napi::Value Resize(const Napi::CallbackInfo &info) {
  std::string path = Str(info[0]);
  int fmt = Fmt(info[1]);
  uint64_t size = (uint64_t)info[2].ToNumber().DoubleValue();
  bool shrink = info.Length() > 3 && info[3].ToBoolean().Value();
  return Queue(info.Env(), [=](si_err *e, si_progress *) { return si_resize(path.c_str(), fmt, size, shrink, e); }, nullptr);
}

Napi::Value Rebase(const Napi::CallbackInfo &info) {
  std::string path = Str(info[0]), backing = Str(info[1]), fmt = Str(info[2]);
  return Queue(info.Env(), [=](si_err *e, si_progress *) {
    return si_rebase_unsafe(path.c_str(), backing.empty() ? nullptr : backing.c_str(), fmt.empty() ? nullptr : fmt.c_str(), e);
  }, nullptr);
}

Napi::Value Commit(const Napi::CallbackInfo &info) {
  std::string path = Str(info[0]);
  int fmt = Fmt(info[1]);
  bool keep = info.Length() > 2 && info[2].ToBoolean().Value();
  return Queue(info.Env(), [=](si_err *e, si_progress *p) { return si_commit(path.c_str(), fmt, keep, p, e); }, nullptr,
               info.Length() > 3 ? info[3] : Napi::Value(), info.Length() > 4 ? info[4] : Napi::Value());
}

Napi::Value Check(const Napi::CallbackInfo &info) {
  std::string path = Str(info[0]);
  std::string rep = Str(info[1]);
  int repair = rep == "all" ? SI_REPAIR_ALL : rep == "leaks" ? SI_REPAIR_LEAKS : 0;
  auto r = std::shared_ptr<si_check_result>(new si_check_result(), [](si_check_result *x) { si_check_free(x); delete x; });
  memset(r.get(), 0, sizeof *r);
  return Queue(
      info.Env(), [=](si_err *e, si_progress *) { return si_check(path.c_str(), repair, r.get(), e); },
      [=](Napi::Env env) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("corruptions", (double)r->corruptions);
        o.Set("leaks", (double)r->leaks);
        o.Set("checkErrors", (double)r->check_errors);
        o.Set("corruptionsFixed", (double)r->corruptions_fixed);
        o.Set("leaksFixed", (double)r->leaks_fixed);
        o.Set("imageEndOffset", (double)r->image_end_offset);
        o.Set("totalClusters", (double)r->total_clusters);
        o.Set("allocatedClusters", (double)r->allocated_clusters);
        o.Set("fragmentedClusters", (double)r->fragmented_clusters);
        o.Set("compressedClusters", (double)r->compressed_clusters);
        o.Set("repaired", r->repaired != 0);
        o.Set("log", std::string(r->log ? r->log : "", r->log_len));
        return o;
      });
}

Napi::Value Inspect(const Napi::CallbackInfo &info) {
  std::string path = Str(info[0]);
  auto r = std::make_shared<si_inspect_result>();
  return Queue(
      info.Env(), [=](si_err *e, si_progress *) { return si_inspect(path.c_str(), r.get(), e); },
      [=](Napi::Env env) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("format", r->format);
        o.Set("virtualSize", (double)r->virtual_size);
        o.Set("safe", r->safe != 0);
        o.Set("reasons", r->reasons);
        return o;
      });
}

Napi::Value Read(const Napi::CallbackInfo &info) {
  std::string path = Str(info[0]);
  int fmt = Fmt(info[1]);
  uint64_t off = (uint64_t)info[2].ToNumber().DoubleValue(), len = (uint64_t)info[3].ToNumber().DoubleValue();
  if (len > (256u << 20)) throw Napi::RangeError::New(info.Env(), "read length too large");
  auto buf = std::make_shared<std::vector<uint8_t>>(len);
  return Queue(
      info.Env(),
      [=](si_err *e, si_progress *) {
        si_image *img = si_open(path.c_str(), fmt, 0, e);
        if (!img) return -1;
        int r = si_read(img, buf->data(), len, off, e);
        si_close(img, nullptr);
        return r;
      },
      [=](Napi::Env env) -> Napi::Value { return Napi::Buffer<uint8_t>::Copy(env, buf->data(), buf->size()); });
}

Napi::Value Write(const Napi::CallbackInfo &info) {
  std::string path = Str(info[0]);
  int fmt = Fmt(info[1]);
  uint64_t off = (uint64_t)info[2].ToNumber().DoubleValue();
  bool zero = !info[3].IsBuffer();
  uint64_t zlen = zero ? (uint64_t)info[3].ToNumber().DoubleValue() : 0;
  auto data = std::make_shared<std::vector<uint8_t>>();
  if (!zero) {
    auto b = info[3].As<Napi::Buffer<uint8_t>>();
    data->assign(b.Data(), b.Data() + b.Length());
  }
  return Queue(info.Env(), [=](si_err *e, si_progress *) {
    si_image *img = si_open(path.c_str(), fmt, SI_OPEN_RDWR, e);
    if (!img) return -1;
    int r = zero ? si_write_zeroes(img, zlen, off, e) : si_write(img, data->data(), data->size(), off, e);
    int c = si_close(img, r < 0 ? nullptr : e);
    return r < 0 ? r : c;
  }, nullptr);
}

Napi::Value Extents(const Napi::CallbackInfo &info) {
  std::string path = Str(info[0]);
  auto v = std::make_shared<std::vector<si_extent>>();
  return Queue(
      info.Env(),
      [=](si_err *e, si_progress *) {
        return si_sparse_extents(path.c_str(), [](void *o, const si_extent *x) {
          static_cast<std::vector<si_extent> *>(o)->push_back(*x);
          return 0;
        }, v.get(), e);
      },
      [=](Napi::Env env) -> Napi::Value {
        Napi::Array a = Napi::Array::New(env, v->size());
        for (size_t k = 0; k < v->size(); k++) {
          Napi::Object o = Napi::Object::New(env);
          o.Set("offset", (double)(*v)[k].offset);
          o.Set("length", (double)(*v)[k].length);
          o.Set("data", (*v)[k].data != 0);
          a.Set((uint32_t)k, o);
        }
        return a;
      });
}

Napi::Value PunchHole(const Napi::CallbackInfo &info) {
  std::string path = Str(info[0]);
  uint64_t off = (uint64_t)info[1].ToNumber().DoubleValue(), len = (uint64_t)info[2].ToNumber().DoubleValue();
  return Queue(info.Env(), [=](si_err *e, si_progress *) { return si_punch_hole(path.c_str(), off, len, e); }, nullptr);
}

Napi::Value SparseCopy(const Napi::CallbackInfo &info) {
  std::string src = Str(info[0]), dst = Str(info[1]);
  return Queue(info.Env(), [=](si_err *e, si_progress *p) { return si_sparse_copy(src.c_str(), dst.c_str(), p, e); },
               nullptr, info.Length() > 2 ? info[2] : Napi::Value(), info.Length() > 3 ? info[3] : Napi::Value());
}

Napi::Value FileSizes(const Napi::CallbackInfo &info) {
  std::string path = Str(info[0]);
  auto s = std::make_shared<std::pair<uint64_t, uint64_t>>();
  return Queue(
      info.Env(), [=](si_err *e, si_progress *) { return si_file_sizes(path.c_str(), &s->first, &s->second, e); },
      [=](Napi::Env env) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("apparent", (double)s->first);
        o.Set("allocated", (double)s->second);
        return o;
      });
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Napi::Function ct = CancelToken::Init(env);
  g_cancel_ctor = new Napi::FunctionReference(Napi::Persistent(ct));
  exports.Set("CancelToken", ct);
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("create", Napi::Function::New(env, Create));
  exports.Set("createSync", Napi::Function::New(env, CreateSync));
  exports.Set("convert", Napi::Function::New(env, Convert));
  exports.Set("compare", Napi::Function::New(env, Compare));
  exports.Set("map", Napi::Function::New(env, Map));
  exports.Set("resize", Napi::Function::New(env, Resize));
  exports.Set("rebase", Napi::Function::New(env, Rebase));
  exports.Set("commit", Napi::Function::New(env, Commit));
  exports.Set("check", Napi::Function::New(env, Check));
  exports.Set("inspect", Napi::Function::New(env, Inspect));
  exports.Set("read", Napi::Function::New(env, Read));
  exports.Set("write", Napi::Function::New(env, Write));
  exports.Set("extents", Napi::Function::New(env, Extents));
  exports.Set("punchHole", Napi::Function::New(env, PunchHole));
  exports.Set("sparseCopy", Napi::Function::New(env, SparseCopy));
  exports.Set("fileSizes", Napi::Function::New(env, FileSizes));
  exports.Set("ImageSink", InitImageSink(env));
  exports.Set("ImageSource", InitImageSource(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(strato_img, Init)
