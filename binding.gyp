# Native addon that reads SO_PEERCRED for the daemon (src/daemon/peer-cred.ts).
# npm runs `node-gyp rebuild` on this file at `npm install`; it needs
# python3, make and a C/C++ toolchain. Output: build/Release/peercred.node.
{
  "targets": [
    {
      "target_name": "peercred",
      "sources": ["native/peercred.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-std=c11", "-Werror=implicit-function-declaration"],
      "xcode_settings": { "GCC_C_LANGUAGE_STANDARD": "c11" }
    }
  ]
}
