// The image data paths, over si_sink / si_source (src/direct.c).
//
// ImageSink (uploads): three lanes of work on the libuv pool, each taking one
// batch at a time: lane 0 computes the MD5, lane 1 the SHA-512 (OpenSSL's,
// which Node exports to addons), lane 2 writes. The lanes do not wait for each
// other, so the two digests (most of an upload's CPU time) run side by side,
// the disk's latency is in neither, and none of it is on the event loop. A batch's buffers stay referenced
// until its job settles (a SinkBatch reads the array once for all three
// lanes); nothing is copied on the JS side.
//
// ImageSource (downloads): read(buffer, room, max) reads the next bytes of the
// file into the caller's buffer at the first suitably aligned offset at or
// after `room`, so the caller can put a frame header in front of the data and
// reuse its buffers: no allocation per chunk.
#include <napi.h>
#include <openssl/evp.h>
#include <cstring>
#include <string>
#include <vector>
#include "../src/strato_img.h"
#include "errors.h"

namespace {

std::string Hex(EVP_MD_CTX *ctx) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx, md, &n);
  static const char *digits = "0123456789abcdef";
  std::string s(n * 2, '0');
  for (unsigned int i = 0; i < n; i++) { s[2 * i] = digits[md[i] >> 4]; s[2 * i + 1] = digits[md[i] & 15]; }
  return s;
}

struct Piece {
  const uint8_t *data;
  size_t len;
};

// A batch of buffers for ImageSink, read once and shared by the three lanes.
class SinkBatch : public Napi::ObjectWrap<SinkBatch> {
 public:
  static Napi::Function Init(Napi::Env env) { return DefineClass(env, "SinkBatch", {}); }
  SinkBatch(const Napi::CallbackInfo &info) : Napi::ObjectWrap<SinkBatch>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, "SinkBatch(buffers)");
    Napi::Array buffers = info[0].As<Napi::Array>();
    keep_ = Napi::Persistent(buffers);
    uint32_t n = buffers.Length();
    pieces.reserve(n);
    for (uint32_t i = 0; i < n; i++) {
      Napi::Value v = buffers.Get(i);
      if (!v.IsTypedArray()) throw Napi::TypeError::New(env, "SinkBatch takes an array of Buffers");
      Napi::Uint8Array b = v.As<Napi::Uint8Array>();
      pieces.push_back({b.Data(), b.ByteLength()});
    }
  }
  std::vector<Piece> pieces;

 private:
  Napi::Reference<Napi::Array> keep_;
};

Napi::FunctionReference *g_batch_ctor = nullptr;

class ImageSink : public Napi::ObjectWrap<ImageSink> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "ImageSink", {
      InstanceMethod("update", &ImageSink::Update),
      InstanceMethod("finish", &ImageSink::Finish),
      InstanceMethod("close", &ImageSink::Close),
      InstanceAccessor("direct", &ImageSink::Direct, nullptr),
    });
  }

  ImageSink(const Napi::CallbackInfo &info) : Napi::ObjectWrap<ImageSink>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "ImageSink(path, direct)");
    std::string path = info[0].As<Napi::String>().Utf8Value();
    bool direct = info.Length() > 1 && info[1].ToBoolean().Value();
    si_err e;
    memset(&e, 0, sizeof e);
    if (si_sink_open(path.c_str(), direct ? 1 : 0, &sink_, &e) < 0) throw MakeError(env, e);
    md5_ = EVP_MD_CTX_new();
    sha_ = EVP_MD_CTX_new();
    if (!md5_ || !sha_ || !EVP_DigestInit_ex(md5_, EVP_md5(), nullptr) || !EVP_DigestInit_ex(sha_, EVP_sha512(), nullptr)) {
      Release();
      throw Napi::Error::New(env, "OpenSSL: cannot set up MD5/SHA-512");
    }
  }
  ~ImageSink() override { Release(); }

  si_sink *sink_ = nullptr;
  EVP_MD_CTX *md5_ = nullptr, *sha_ = nullptr;
  bool busy_[3] = {false, false, false};
  bool finishing_ = false;
  bool Busy() const { return busy_[0] || busy_[1] || busy_[2] || finishing_; }

 private:
  void Release() {
    si_sink_close(sink_);
    sink_ = nullptr;
    if (md5_) EVP_MD_CTX_free(md5_);
    if (sha_) EVP_MD_CTX_free(sha_);
    md5_ = sha_ = nullptr;
  }
  Napi::Value Update(const Napi::CallbackInfo &info);
  Napi::Value Finish(const Napi::CallbackInfo &info);
  Napi::Value Close(const Napi::CallbackInfo &info) {
    if (Busy()) throw Napi::Error::New(info.Env(), "ImageSink is busy: wait for its jobs");
    Release();
    return info.Env().Undefined();
  }
  Napi::Value Direct(const Napi::CallbackInfo &info) {
    return Napi::Boolean::New(info.Env(), sink_ && si_sink_direct(sink_));
  }
};

// One batch through one lane (lane < 0: finish — sync the file, finalize the digests).
class SinkJob : public Napi::AsyncWorker {
 public:
  SinkJob(Napi::Env env, ImageSink *owner, int lane, SinkBatch *batch)
      : Napi::AsyncWorker(env, "strato-img-sink"), deferred(Napi::Promise::Deferred::New(env)), owner_(owner),
        lane_(lane), batch_(batch) {
    self_ = Napi::Persistent(owner->Value());
    if (lane_ >= 0) {
      keep_ = Napi::Persistent(batch->Value());
      owner_->busy_[lane_] = true;
    } else {
      owner_->finishing_ = true;
    }
    memset(&err_, 0, sizeof err_);
  }
  Napi::Promise::Deferred deferred;

  void Execute() override {
    if (lane_ == 0) {
      for (const Piece &p : batch_->pieces) EVP_DigestUpdate(owner_->md5_, p.data, p.len);
    } else if (lane_ == 1) {
      for (const Piece &p : batch_->pieces) EVP_DigestUpdate(owner_->sha_, p.data, p.len);
    } else if (lane_ == 2) {
      for (const Piece &p : batch_->pieces)
        if ((rc_ = si_sink_write(owner_->sink_, p.data, p.len, &err_)) < 0) return;
    } else {
      if ((rc_ = si_sink_finish(owner_->sink_, &err_)) < 0) return;
      md5hex_ = Hex(owner_->md5_);
      shahex_ = Hex(owner_->sha_);
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    Settle();
    if (rc_ < 0) {
      deferred.Reject(MakeError(env, err_).Value());
      return;
    }
    if (lane_ >= 0) {
      deferred.Resolve(env.Undefined());
      return;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("size", (double)si_sink_size(owner_->sink_));
    o.Set("md5", md5hex_);
    o.Set("sha512", shahex_);
    deferred.Resolve(o);
  }
  void OnError(const Napi::Error &e) override {
    Settle();
    deferred.Reject(e.Value());
  }

 private:
  void Settle() {
    if (lane_ >= 0) owner_->busy_[lane_] = false;
    else owner_->finishing_ = false;
  }
  ImageSink *owner_;
  int lane_;
  SinkBatch *batch_;
  Napi::ObjectReference self_, keep_;
  si_err err_;
  int rc_ = 0;
  std::string md5hex_, shahex_;
};

Napi::Value ImageSink::Update(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!sink_) throw Napi::Error::New(env, "ImageSink is closed");
  if (info.Length() < 2 || !info[1].IsObject() || !info[1].As<Napi::Object>().InstanceOf(g_batch_ctor->Value()))
    throw Napi::TypeError::New(env, "ImageSink.update(lane, batch): batch is a SinkBatch");
  int lane = info[0].ToNumber().Int32Value();
  if (lane < 0 || lane > 2) throw Napi::RangeError::New(env, "ImageSink.update: lane is 0 (MD5), 1 (SHA-512) or 2 (write)");
  if (busy_[lane] || finishing_) throw Napi::Error::New(env, "ImageSink is busy: one job per lane at a time");
  auto *job = new SinkJob(env, this, lane, SinkBatch::Unwrap(info[1].As<Napi::Object>()));
  Napi::Promise p = job->deferred.Promise();
  job->Queue();
  return p;
}

Napi::Value ImageSink::Finish(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!sink_) throw Napi::Error::New(env, "ImageSink is closed");
  if (Busy()) throw Napi::Error::New(env, "ImageSink is busy: finish after its lanes settle");
  auto *job = new SinkJob(env, this, -1, nullptr);
  Napi::Promise p = job->deferred.Promise();
  job->Queue();
  return p;
}

class ImageSource : public Napi::ObjectWrap<ImageSource> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "ImageSource", {
      InstanceMethod("read", &ImageSource::Read),
      InstanceMethod("close", &ImageSource::Close),
      InstanceAccessor("direct", &ImageSource::Direct, nullptr),
    });
  }

  ImageSource(const Napi::CallbackInfo &info) : Napi::ObjectWrap<ImageSource>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "ImageSource(path, direct)");
    std::string path = info[0].As<Napi::String>().Utf8Value();
    bool direct = info.Length() > 1 && info[1].ToBoolean().Value();
    si_err e;
    memset(&e, 0, sizeof e);
    if (si_source_open(path.c_str(), direct ? 1 : 0, &src_, &e) < 0) throw MakeError(env, e);
  }
  ~ImageSource() override { si_source_close(src_); }

  si_source *src_ = nullptr;
  bool busy_ = false;

 private:
  Napi::Value Read(const Napi::CallbackInfo &info);
  Napi::Value Close(const Napi::CallbackInfo &info) {
    if (busy_) throw Napi::Error::New(info.Env(), "ImageSource is busy: wait for the previous read");
    si_source_close(src_);
    src_ = nullptr;
    return info.Env().Undefined();
  }
  Napi::Value Direct(const Napi::CallbackInfo &info) {
    return Napi::Boolean::New(info.Env(), src_ && si_source_align(src_) > 1);
  }
};

class ReadJob : public Napi::AsyncWorker {
 public:
  ReadJob(Napi::Env env, ImageSource *owner, Napi::Uint8Array buf, size_t offset, size_t len)
      : Napi::AsyncWorker(env, "strato-img-source"), deferred(Napi::Promise::Deferred::New(env)), owner_(owner),
        data_(buf.Data() + offset), offset_(offset), len_(len) {
    self_ = Napi::Persistent(owner->Value());
    keep_ = Napi::Persistent(buf);
    memset(&err_, 0, sizeof err_);
    owner_->busy_ = true;
  }
  Napi::Promise::Deferred deferred;

  void Execute() override { rc_ = si_source_read(owner_->src_, data_, len_, &got_, &err_); }
  void OnOK() override {
    Napi::Env env = Env();
    owner_->busy_ = false;
    if (rc_ < 0) {
      deferred.Reject(MakeError(env, err_).Value());
      return;
    }
    Napi::Array a = Napi::Array::New(env, 2);
    a.Set(0u, Napi::Number::New(env, (double)offset_));
    a.Set(1u, Napi::Number::New(env, (double)got_));
    deferred.Resolve(a);
  }
  void OnError(const Napi::Error &e) override {
    owner_->busy_ = false;
    deferred.Reject(e.Value());
  }

 private:
  ImageSource *owner_;
  uint8_t *data_;
  size_t offset_, len_, got_ = 0;
  Napi::ObjectReference self_;
  Napi::Reference<Napi::Uint8Array> keep_;
  si_err err_;
  int rc_ = 0;
};

Napi::Value ImageSource::Read(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!src_) throw Napi::Error::New(env, "ImageSource is closed");
  if (busy_) throw Napi::Error::New(env, "ImageSource is busy: wait for the previous read");
  if (info.Length() < 3 || !info[0].IsTypedArray()) throw Napi::TypeError::New(env, "ImageSource.read(buffer, room, max)");
  Napi::Uint8Array buf = info[0].As<Napi::Uint8Array>();
  size_t room = (size_t)info[1].ToNumber().Int64Value(), max = (size_t)info[2].ToNumber().Int64Value();
  size_t align = si_source_align(src_);
  uintptr_t base = (uintptr_t)buf.Data();
  size_t offset = (size_t)(((base + room + align - 1) / align * align) - base);
  if (offset >= buf.ByteLength()) throw Napi::RangeError::New(env, "ImageSource.read: the buffer has no aligned room for data");
  size_t len = buf.ByteLength() - offset;
  if (len > max) len = max;
  len = len / align * align;
  if (len == 0) throw Napi::RangeError::New(env, "ImageSource.read: the buffer has no aligned room for data");
  auto *job = new ReadJob(env, this, buf, offset, len);
  Napi::Promise p = job->deferred.Promise();
  job->Queue();
  return p;
}

}  // namespace

Napi::Function InitImageSink(Napi::Env env) {
  Napi::Function batch = SinkBatch::Init(env);
  g_batch_ctor = new Napi::FunctionReference(Napi::Persistent(batch));
  Napi::Function sink = ImageSink::Init(env);
  sink.Set("Batch", batch);
  return sink;
}
Napi::Function InitImageSource(Napi::Env env) { return ImageSource::Init(env); }
