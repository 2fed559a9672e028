// The addon's one conversion of a native error into a JS Error: `code` is a
// proto/errors.ts ErrorCode, `kind` the finer reason; native/index.ts maps it
// to a Strato error class.
#pragma once
#include <napi.h>
#include "../src/strato_img.h"

inline Napi::Error MakeError(Napi::Env env, const si_err &e) {
  Napi::Error err = Napi::Error::New(env, e.msg[0] ? e.msg : "native error");
  err.Set("code", Napi::String::New(env, si_err_class(e.code)));
  err.Set("kind", Napi::String::New(env, si_err_kind(e.code)));
  err.Set("name", Napi::String::New(env, "StratoImgError"));
  return err;
}
