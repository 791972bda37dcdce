/*
 * The daemon's hot-path crypto with the OpenSSL inside Node, whose symbols
 * the node binary exports (src/ops/native-crypto.ts): HMACs, many under one
 * key in one call, and AEAD stream segments sealed straight into the
 * client's shared-memory window.
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
 *   sealInto(cipher, key, nonce, aad, input, out, at)
 *     cipher the stream format's cipher id: 1, 2, 3 (AES-128/192/256-GCM)
 *            or 4 (ChaCha20-Poly1305); the key must have its length
 *     nonce  12 bytes; the tag is 16 bytes
 *     writes ciphertext ‖ tag (input length + 16 bytes) into out at `at`;
 *     `input` must not overlap that place (the caller checks)
 *
 * Why: node:crypto's cipher.update returns a new buffer, which the daemon
 * then copied into the window (and the collector freed): an allocation, a
 * copy and GC work per 64 KiB segment, which made the daemon's CPU per MiB
 * about 1.4× the in-process figure. Sealing only: opening must not write
 * plaintext where the client can read it before its tag verified, so it
 * stays in node:crypto (src/ops/stream-format.ts).
 *
 * Errors throw a TypeError (bad arguments: a bug in the caller) or an Error
 * (OpenSSL failed); what was written is zeroed on any failure after it was
 * touched. Contexts, which hold key schedules, are freed with the *_free
 * calls, which cleanse them.
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

static const EVP_CIPHER *cipher_of(int32_t id, size_t key_len) {
  switch (id) {
    case 1: return key_len == 16 ? EVP_aes_128_gcm() : NULL;
    case 2: return key_len == 24 ? EVP_aes_192_gcm() : NULL;
    case 3: return key_len == 32 ? EVP_aes_256_gcm() : NULL;
    case 4: return key_len == 32 ? EVP_chacha20_poly1305() : NULL;
    default: return NULL;
  }
}

#define SEAL_TAG 16
#define SEAL_NONCE 12

static napi_value seal_into(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 7) {
    napi_throw_type_error(env, NULL, "sealInto: expected (cipher, key, nonce, aad, input, out, at)");
    return NULL;
  }
  int32_t id = 0;
  int64_t at = -1;
  uint8_t *key, *nonce, *aad, *in, *out;
  size_t key_len, nonce_len, aad_len, in_len, out_len;
  if (napi_get_value_int32(env, argv[0], &id) != napi_ok) {
    napi_throw_type_error(env, NULL, "sealInto: cipher must be a number");
    return NULL;
  }
  if (!bytes_of(env, argv[1], "key", &key, &key_len) || !bytes_of(env, argv[2], "nonce", &nonce, &nonce_len) ||
      !bytes_of(env, argv[3], "aad", &aad, &aad_len) || !bytes_of(env, argv[4], "input", &in, &in_len) ||
      !bytes_of(env, argv[5], "out", &out, &out_len))
    return NULL;
  if (napi_get_value_int64(env, argv[6], &at) != napi_ok || at < 0) {
    napi_throw_type_error(env, NULL, "sealInto: at must be a non-negative integer");
    return NULL;
  }
  const EVP_CIPHER *cipher = cipher_of(id, key_len);
  if (cipher == NULL) {
    napi_throw_type_error(env, NULL, "sealInto: unknown cipher, or a key of the wrong length for it");
    return NULL;
  }
  if (nonce_len != SEAL_NONCE || in_len > INT32_MAX - SEAL_TAG || aad_len > INT32_MAX) {
    napi_throw_type_error(env, NULL, "sealInto: the nonce must be 12 bytes, input and aad under 2 GiB");
    return NULL;
  }
  if ((uint64_t)at > out_len || out_len - (size_t)at < in_len + SEAL_TAG) {
    napi_throw_type_error(env, NULL, "sealInto: the output has no room for the ciphertext and its tag at that offset");
    return NULL;
  }
  uint8_t *dst = out + at;
  if (in_len > 0 && in < dst + in_len + SEAL_TAG && dst < in + in_len) {
    napi_throw_type_error(env, NULL, "sealInto: the input overlaps the output");
    return NULL;
  }
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  int n = 0, fin = 0;
  bool ok = ctx != NULL && EVP_EncryptInit_ex(ctx, cipher, NULL, NULL, NULL) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, SEAL_NONCE, NULL) == 1 &&
            EVP_EncryptInit_ex(ctx, NULL, NULL, key, nonce) == 1 &&
            (aad_len == 0 || EVP_EncryptUpdate(ctx, NULL, &n, aad, (int)aad_len) == 1);
  n = 0;
  ok = ok && (in_len == 0 || EVP_EncryptUpdate(ctx, dst, &n, in, (int)in_len) == 1) &&
       EVP_EncryptFinal_ex(ctx, dst + n, &fin) == 1 && (size_t)n + (size_t)fin == in_len &&
       EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, SEAL_TAG, dst + in_len) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) {
    OPENSSL_cleanse(dst, in_len + SEAL_TAG);
    napi_throw_error(env, NULL, "sealInto: OpenSSL failed to seal the segment");
  }
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  NAPI_CALL(env, napi_create_function(env, "hmacInto", NAPI_AUTO_LENGTH, hmac_into, NULL, &fn));
  NAPI_CALL(env, napi_set_named_property(env, exports, "hmacInto", fn));
  NAPI_CALL(env, napi_create_function(env, "sealInto", NAPI_AUTO_LENGTH, seal_into, NULL, &fn));
  NAPI_CALL(env, napi_set_named_property(env, exports, "sealInto", fn));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
