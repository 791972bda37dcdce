/*
 * The daemon's HMACs with the OpenSSL inside Node, whose symbols the node
 * binary exports (src/ops/native-crypto.ts): many MACs under one key in one
 * call, with OpenSSL's HMAC_CTX.
 *
 *   hmacInto(hash, key, input, out)
 *     hash   1, 256, 384 or 512: SHA-1, SHA-256, SHA-384, SHA-512
 *     key    the key bytes (read only here; nothing of them is kept)
 *     input  one Uint8Array, or an array of them
 *     out    a Uint8Array of (number of inputs) × (MAC length) bytes: the
 *            MACs one after another, in order
 *
 * Why: node:crypto's createHmac builds a JS object, a C++ object and an
 * OpenSSL context per MAC and sets the key up each time (two compressions).
 * Here the key is set up once per call (HMAC_Init_ex with the key), and each
 * further input starts again from that keyed state (HMAC_Init_ex with a NULL
 * key), so an input of 64 bytes costs its own two compressions and no
 * allocation. The context — which holds the key's inner and outer pads — is
 * freed with HMAC_CTX_free, which cleanses it.
 *
 * Errors throw a TypeError (bad arguments: a bug in the caller) or an Error
 * (OpenSSL failed); `out` is zeroed on any failure after it was touched.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#define ADDON_NAME "fastcrypto"

#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "napi-errors.h"

static const EVP_MD *md_of(int32_t hash) {
  switch (hash) {
    case 1: return EVP_sha1();
    case 256: return EVP_sha256();
    case 384: return EVP_sha384();
    case 512: return EVP_sha512();
    default: return NULL;
  }
}

/* The bytes of a Uint8Array argument, or NULL with a TypeError pending. */
static bool bytes_of(napi_env env, napi_value v, const char *what, uint8_t **data, size_t *len) {
  bool is_typed = false;
  if (napi_is_typedarray(env, v, &is_typed) != napi_ok || !is_typed) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a Uint8Array", what);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  napi_typedarray_type type;
  void *p = NULL;
  napi_value ab;
  size_t offset = 0;
  if (napi_get_typedarray_info(env, v, &type, len, &p, &ab, &offset) != napi_ok || type != napi_uint8_array) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a Uint8Array", what);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  /* An empty view may have no data pointer; OpenSSL takes (NULL, 0) for updates but not for keys. */
  static uint8_t empty[1];
  *data = p != NULL ? (uint8_t *)p : empty;
  return true;
}

static napi_value hmac_into(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 4) {
    napi_throw_type_error(env, NULL, "hmacInto: expected (hash, key, input, out)");
    return NULL;
  }
  int32_t hash = 0;
  if (napi_get_value_int32(env, argv[0], &hash) != napi_ok || md_of(hash) == NULL) {
    napi_throw_type_error(env, NULL, "hmacInto: hash must be 1, 256, 384 or 512");
    return NULL;
  }
  const EVP_MD *md = md_of(hash);
  uint8_t *key, *out;
  size_t key_len, out_len;
  if (!bytes_of(env, argv[1], "key", &key, &key_len)) return NULL;
  if (!bytes_of(env, argv[3], "out", &out, &out_len)) return NULL;
  if (key_len > INT32_MAX) {
    napi_throw_type_error(env, NULL, "hmacInto: key too long");
    return NULL;
  }
  bool is_array = false;
  NAPI_CALL(env, napi_is_array(env, argv[2], &is_array));
  uint32_t count = 1;
  if (is_array) NAPI_CALL(env, napi_get_array_length(env, argv[2], &count));
  const size_t mac_len = (size_t)EVP_MD_get_size(md);
  if (out_len != (size_t)count * mac_len) {
    napi_throw_type_error(env, NULL, "hmacInto: out must hold exactly one MAC per input");
    return NULL;
  }
  if (count == 0) return NULL;

  HMAC_CTX *ctx = HMAC_CTX_new();
  if (ctx == NULL || HMAC_Init_ex(ctx, key, (int)key_len, md, NULL) != 1) {
    HMAC_CTX_free(ctx);
    napi_throw_error(env, NULL, "hmacInto: OpenSSL could not set up the HMAC key");
    return NULL;
  }
  for (uint32_t i = 0; i < count; i++) {
    napi_value item = argv[2];
    if (is_array && napi_get_element(env, argv[2], i, &item) != napi_ok) goto napi_failed;
    uint8_t *data;
    size_t data_len;
    if (!bytes_of(env, item, "every input", &data, &data_len)) goto failed;
    unsigned int written = 0;
    if ((i > 0 && HMAC_Init_ex(ctx, NULL, 0, NULL, NULL) != 1) || HMAC_Update(ctx, data, data_len) != 1 ||
        HMAC_Final(ctx, out + (size_t)i * mac_len, &written) != 1 || written != mac_len) {
      napi_throw_error(env, NULL, "hmacInto: OpenSSL failed to compute an HMAC");
      goto failed;
    }
  }
  HMAC_CTX_free(ctx);
  return NULL;

napi_failed:
  throw_last_napi_error(env, "napi_get_element");
failed:
  HMAC_CTX_free(ctx);
  OPENSSL_cleanse(out, out_len);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  NAPI_CALL(env, napi_create_function(env, "hmacInto", NAPI_AUTO_LENGTH, hmac_into, NULL, &fn));
  NAPI_CALL(env, napi_set_named_property(env, exports, "hmacInto", fn));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
