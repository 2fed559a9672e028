{
  "targets": [
    {
      "target_name": "strato_img",
      "sources": [
        "addon/addon.cc", "addon/direct.cc",
        "src/util.c", "src/direct.c", "src/compress.c", "src/qcow2.c", "src/image.c",
        "src/ops.c", "src/check.c", "src/inspect.c"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags": ["-O2", "-Wno-unused-parameter"],
      "cflags_c": ["-std=gnu11"],
      "cflags_cc": ["-O2", "-std=c++17", "-fexceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "libraries": ["-lz", "-lzstd", "-lpthread"]
    }
  ]
}
