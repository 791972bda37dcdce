# Native addons: peercred reads SO_PEERCRED for the daemon (src/daemon/peer-cred.ts);
# window makes and maps the shared-memory windows of protocol.md §6.16
# (src/protocol/window-addon.ts); fastcrypto computes the daemon's HMACs with
# the OpenSSL inside Node (src/ops/native-crypto.ts). npm runs `node-gyp rebuild` on this file at
# `npm install`; it needs python3, make and a C toolchain. Output:
# build/Release/peercred.node, window.node and fastcrypto.node.
{
  "targets": [
    {
      "target_name": "peercred",
      "sources": ["native/peercred.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-std=c11", "-Werror=implicit-function-declaration"],
      "xcode_settings": { "GCC_C_LANGUAGE_STANDARD": "c11" }
    },
    {
      "target_name": "window",
      "sources": ["native/window.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-std=c11", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"],
      "xcode_settings": { "GCC_C_LANGUAGE_STANDARD": "c11" }
    },
    {
      "target_name": "fastcrypto",
      "sources": ["native/fastcrypto.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-std=c11", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"],
      "xcode_settings": { "GCC_C_LANGUAGE_STANDARD": "c11" }
    }
  ]
}
