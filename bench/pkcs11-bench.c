/*
 * pkcs11-bench: C_Sign in a loop against a PKCS#11 module, for bench/run.ts.
 *
 * Node has no PKCS#11 binding and the bench takes no npm dependency for one,
 * so bench/pkcs11.ts compiles this file at bench time:
 *
 *   cc -O2 -I/usr/include/p11-kit-1 -o <tmp>/pkcs11-bench bench/pkcs11-bench.c -ldl
 *
 * usage: pkcs11-bench <module.so> <token-label> <user-pin> <workload> <seconds> <warmup-ms>
 *   workload: hmac-sha256 | ed25519 | ecdsa-p256
 *
 * The module is dlopen()ed as given: libsofthsm2.so for the in-process token,
 * p11-kit-client.so (with P11_KIT_SERVER_ADDRESS set) for a token behind
 * `p11-kit server`. One session, one operation in flight: a PKCS#11 session
 * is synchronous, and every signature is C_SignInit + C_Sign (PKCS#11 v2.40
 * §5.12: an operation ends with C_Sign, so each one needs its own Init).
 * Keys are session objects (CKA_TOKEN false) generated or imported here.
 *
 * Prints one JSON object on stdout: throughput, p50/p99 latency in ns (picked
 * like bench/measure.ts), module and token identity, and one signature with
 * the public key (or HMAC key) so the caller can verify it independently.
 * Exit codes: 0 ok, 1 PKCS#11 or system error, 2 usage, 3 mechanism not
 * supported by the token.
 */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* p11-kit's header (libp11-kit-dev); its default compatibility mode gives
 * the OASIS CK_* names. Included last: it #defines short member names. */
#include <p11-kit/pkcs11.h>

#define MAX_SAMPLES 200000
#define MSG_LEN 64

static CK_FUNCTION_LIST_PTR p11;

static const char *rv_name(CK_RV rv) {
  switch (rv) {
    case CKR_MECHANISM_INVALID: return "CKR_MECHANISM_INVALID";
    case CKR_MECHANISM_PARAM_INVALID: return "CKR_MECHANISM_PARAM_INVALID";
    case CKR_DOMAIN_PARAMS_INVALID: return "CKR_DOMAIN_PARAMS_INVALID";
    case CKR_PIN_INCORRECT: return "CKR_PIN_INCORRECT";
    case CKR_TOKEN_NOT_PRESENT: return "CKR_TOKEN_NOT_PRESENT";
    case CKR_DEVICE_ERROR: return "CKR_DEVICE_ERROR";
    case CKR_GENERAL_ERROR: return "CKR_GENERAL_ERROR";
    case CKR_FUNCTION_FAILED: return "CKR_FUNCTION_FAILED";
    case CKR_ATTRIBUTE_VALUE_INVALID: return "CKR_ATTRIBUTE_VALUE_INVALID";
    case CKR_TEMPLATE_INCONSISTENT: return "CKR_TEMPLATE_INCONSISTENT";
    case CKR_KEY_TYPE_INCONSISTENT: return "CKR_KEY_TYPE_INCONSISTENT";
    default: return "CKR";
  }
}

static void die_rv(const char *what, CK_RV rv) {
  fprintf(stderr, "pkcs11-bench: %s failed: %s (0x%lx)\n", what, rv_name(rv), (unsigned long)rv);
  exit(rv == CKR_MECHANISM_INVALID || rv == CKR_DOMAIN_PARAMS_INVALID ? 3 : 1);
}

#define CHECK(call)                     \
  do {                                  \
    CK_RV rv_ = (call);                 \
    if (rv_ != CKR_OK) die_rv(#call, rv_); \
  } while (0)

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Blank-padded PKCS#11 text field → JSON string body (printable ASCII only). */
static void print_field(const char *name, const unsigned char *s, size_t n, int comma) {
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\0')) n--;
  printf("\"%s\":\"", name);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = s[i];
    if (c == '"' || c == '\\') printf("\\%c", c);
    else if (c >= 0x20 && c < 0x7f) putchar(c);
  }
  printf("\"%s", comma ? "," : "");
}

static void print_hex(const char *name, const unsigned char *p, size_t n, int comma) {
  printf("\"%s\":\"", name);
  for (size_t i = 0; i < n; i++) printf("%02x", p[i]);
  printf("\"%s", comma ? "," : "");
}

static int mechanism_supported(CK_SLOT_ID slot, CK_MECHANISM_TYPE m) {
  CK_MECHANISM_INFO info;
  return p11->C_GetMechanismInfo(slot, m, &info) == CKR_OK;
}

static CK_SLOT_ID find_token(const char *label) {
  CK_ULONG n = 0;
  CHECK(p11->C_GetSlotList(CK_TRUE, NULL, &n));
  CK_SLOT_ID *slots = calloc(n ? n : 1, sizeof *slots);
  if (slots == NULL) exit(1);
  CHECK(p11->C_GetSlotList(CK_TRUE, slots, &n));
  size_t len = strlen(label);
  for (CK_ULONG i = 0; i < n; i++) {
    CK_TOKEN_INFO ti;
    if (p11->C_GetTokenInfo(slots[i], &ti) != CKR_OK) continue;
    size_t end = sizeof ti.label;
    while (end > 0 && ti.label[end - 1] == ' ') end--;
    if (end == len && memcmp(ti.label, label, len) == 0) {
      CK_SLOT_ID s = slots[i];
      free(slots);
      return s;
    }
  }
  fprintf(stderr, "pkcs11-bench: no token labelled \"%s\" among %lu slot(s)\n", label, (unsigned long)n);
  exit(1);
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: %s <module.so> <token-label> <user-pin> <hmac-sha256|ed25519|ecdsa-p256> <seconds> <warmup-ms>\n", argv[0]);
    return 2;
  }
  const char *module = argv[1], *label = argv[2], *pin = argv[3], *workload = argv[4];
  double seconds = atof(argv[5]);
  double warmup_ms = atof(argv[6]);
  int is_hmac = strcmp(workload, "hmac-sha256") == 0;
  int is_ed = strcmp(workload, "ed25519") == 0;
  int is_ec = strcmp(workload, "ecdsa-p256") == 0;
  if (!(is_hmac || is_ed || is_ec) || !(seconds > 0)) {
    fprintf(stderr, "pkcs11-bench: bad workload or seconds\n");
    return 2;
  }

  void *lib = dlopen(module, RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) {
    fprintf(stderr, "pkcs11-bench: dlopen %s: %s\n", module, dlerror());
    return 1;
  }
  CK_C_GetFunctionList get_list = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList");
  if (get_list == NULL) {
    fprintf(stderr, "pkcs11-bench: %s has no C_GetFunctionList\n", module);
    return 1;
  }
  CHECK(get_list(&p11));
  CHECK(p11->C_Initialize(NULL));

  CK_INFO info;
  CHECK(p11->C_GetInfo(&info));
  CK_SLOT_ID slot = find_token(label);
  CK_TOKEN_INFO ti;
  CHECK(p11->C_GetTokenInfo(slot, &ti));

  CK_SESSION_HANDLE session;
  CHECK(p11->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &session));
  CHECK(p11->C_Login(session, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)));

  unsigned char msg[MSG_LEN];
  CHECK(p11->C_GenerateRandom(session, msg, sizeof msg));

  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  CK_OBJECT_HANDLE key = 0, pub = 0;
  CK_MECHANISM mech = {0, NULL, 0};
  const char *mech_name = "";
  /* What the caller needs to check one result: the HMAC key, or the public key. */
  unsigned char check_key[128];
  CK_ULONG check_key_len = 0;
  /* ECDSA: the token signs a SHA-256 digest (CKM_ECDSA); computed once by the token. */
  unsigned char digest[32];
  unsigned char *input = msg;
  CK_ULONG input_len = sizeof msg;

  if (is_hmac) {
    mech.mechanism = CKM_SHA256_HMAC;
    mech_name = "CKM_SHA256_HMAC";
    if (!mechanism_supported(slot, mech.mechanism)) die_rv("C_GetMechanismInfo(CKM_SHA256_HMAC)", CKR_MECHANISM_INVALID);
    CHECK(p11->C_GenerateRandom(session, check_key, 32));
    check_key_len = 32;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_ATTRIBUTE t[] = {
      {CKA_CLASS, &cls, sizeof cls},       {CKA_KEY_TYPE, &kt, sizeof kt},
      {CKA_TOKEN, &no, sizeof no},         {CKA_SIGN, &yes, sizeof yes},
      {CKA_VERIFY, &yes, sizeof yes},      {CKA_VALUE, check_key, check_key_len},
    };
    CHECK(p11->C_CreateObject(session, t, sizeof t / sizeof t[0], &key));
  } else {
    /* DER OIDs for CKA_EC_PARAMS: id-Ed25519 (RFC 8410), prime256v1 (RFC 5480). */
    static unsigned char oid_ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
    static unsigned char oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    CK_MECHANISM gen = {is_ed ? CKM_EC_EDWARDS_KEY_PAIR_GEN : CKM_EC_KEY_PAIR_GEN, NULL, 0};
    mech.mechanism = is_ed ? CKM_EDDSA : CKM_ECDSA;
    mech_name = is_ed ? "CKM_EDDSA" : "CKM_ECDSA";
    if (!mechanism_supported(slot, gen.mechanism) || !mechanism_supported(slot, mech.mechanism))
      die_rv(is_ed ? "C_GetMechanismInfo(CKM_EDDSA)" : "C_GetMechanismInfo(CKM_ECDSA)", CKR_MECHANISM_INVALID);
    CK_ATTRIBUTE pub_t[] = {
      {CKA_TOKEN, &no, sizeof no},
      {CKA_VERIFY, &yes, sizeof yes},
      {CKA_EC_PARAMS, is_ed ? oid_ed25519 : oid_p256, is_ed ? sizeof oid_ed25519 : sizeof oid_p256},
    };
    CK_ATTRIBUTE priv_t[] = {
      {CKA_TOKEN, &no, sizeof no},
      {CKA_PRIVATE, &yes, sizeof yes},
      {CKA_SENSITIVE, &yes, sizeof yes},
      {CKA_SIGN, &yes, sizeof yes},
    };
    CHECK(p11->C_GenerateKeyPair(session, &gen, pub_t, sizeof pub_t / sizeof pub_t[0], priv_t,
                                 sizeof priv_t / sizeof priv_t[0], &pub, &key));
    CK_ATTRIBUTE point = {CKA_EC_POINT, check_key, sizeof check_key};
    CHECK(p11->C_GetAttributeValue(session, pub, &point, 1));
    check_key_len = point.ulValueLen;
    if (is_ec) {
      CK_MECHANISM sha = {CKM_SHA256, NULL, 0};
      CK_ULONG dlen = sizeof digest;
      CHECK(p11->C_DigestInit(session, &sha));
      CHECK(p11->C_Digest(session, msg, sizeof msg, digest, &dlen));
      input = digest;
      input_len = dlen;
    }
  }

  unsigned char sig[256];
  CK_ULONG sig_len = 0;
#define SIGN_ONCE()                                                   \
  do {                                                                \
    sig_len = sizeof sig;                                             \
    CHECK(p11->C_SignInit(session, &mech, key));                      \
    CHECK(p11->C_Sign(session, input, input_len, sig, &sig_len));     \
  } while (0)

  uint64_t warm_end = now_ns() + (uint64_t)(warmup_ms * 1e6);
  do SIGN_ONCE(); while (now_ns() < warm_end);

  uint64_t *lat = malloc(sizeof *lat * MAX_SAMPLES);
  if (lat == NULL) return 1;
  uint64_t n = 0;
  uint64_t start = now_ns();
  uint64_t end = start + (uint64_t)(seconds * 1e9);
  for (;;) {
    uint64_t t0 = now_ns();
    SIGN_ONCE();
    uint64_t t1 = now_ns();
    if (n < MAX_SAMPLES) lat[n] = t1 - t0;
    n++;
    if (t1 >= end) break;
  }
  double elapsed = (double)(now_ns() - start) / 1e9;
  size_t kept = n < MAX_SAMPLES ? (size_t)n : MAX_SAMPLES;
  qsort(lat, kept, sizeof *lat, cmp_u64);
  size_t i50 = (size_t)(0.5 * kept), i99 = (size_t)(0.99 * kept);
  if (i50 >= kept) i50 = kept - 1;
  if (i99 >= kept) i99 = kept - 1;

  printf("{\"workload\":\"%s\",\"mechanism\":\"%s\",", workload, mech_name);
  printf("\"ops\":%llu,\"seconds\":%.6f,\"opsPerSec\":%.3f,\"p50\":%llu,\"p99\":%llu,", (unsigned long long)n, elapsed,
         (double)n / elapsed, (unsigned long long)lat[i50], (unsigned long long)lat[i99]);
  printf("\"library\":{");
  print_field("manufacturer", info.manufacturerID, sizeof info.manufacturerID, 1);
  print_field("description", info.libraryDescription, sizeof info.libraryDescription, 1);
  printf("\"version\":\"%u.%u\"},", info.libraryVersion.major, info.libraryVersion.minor);
  printf("\"token\":{");
  print_field("label", ti.label, sizeof ti.label, 1);
  print_field("manufacturer", ti.manufacturerID, sizeof ti.manufacturerID, 1);
  print_field("model", ti.model, sizeof ti.model, 1);
  printf("\"firmware\":\"%u.%u\"},", ti.firmwareVersion.major, ti.firmwareVersion.minor);
  printf("\"check\":{");
  print_hex("message", msg, sizeof msg, 1);
  print_hex(is_hmac ? "hmacKey" : "ecPoint", check_key, check_key_len, 1);
  print_hex("signature", sig, sig_len, 0);
  printf("}}\n");

  free(lat);
  p11->C_Logout(session);
  p11->C_CloseSession(session);
  p11->C_Finalize(NULL);
  return 0;
}
