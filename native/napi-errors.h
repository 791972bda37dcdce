/*
 * Errors for cryptod's native addons (peercred.c, window.c), thrown the way
 * Node throws its own system errors: an Error whose message names the
 * failing call and strerror(errno), with `code` ("EBADF"), `errno` (negative,
 * as in Node, so util.getSystemErrorName() works) and `syscall`.
 *
 * Include after defining ADDON_NAME (the prefix of N-API failure messages).
 */
#ifndef CRYPTOD_NAPI_ERRORS_H
#define CRYPTOD_NAPI_ERRORS_H

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <node_api.h>

/* Set a pending JS exception from a failed N-API call and return NULL. */
#define NAPI_CALL(env, call)                                                  \
  do {                                                                        \
    if ((call) != napi_ok) {                                                  \
      throw_last_napi_error(env, #call);                                      \
      return NULL;                                                            \
    }                                                                         \
  } while (0)

static inline void throw_last_napi_error(napi_env env, const char *what) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return; /* keep the original exception */
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  char msg[256];
  snprintf(msg, sizeof msg, ADDON_NAME ": N-API call failed: %s: %s", what,
           info != NULL && info->error_message != NULL ? info->error_message
                                                       : "unknown error");
  napi_throw_error(env, NULL, msg);
}

/* Symbolic names for the errnos the addons' calls can produce; the rest are
 * reported as "E<number>" so the code is never empty. */
static inline const char *errno_name(int err) {
  switch (err) {
    case EBADF: return "EBADF";
    case EPERM: return "EPERM";
    case ENOTSOCK: return "ENOTSOCK";
    case ENOTCONN: return "ENOTCONN";
    case EINVAL: return "EINVAL";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case EFAULT: return "EFAULT";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case ENOMEM: return "ENOMEM";
    case ENOENT: return "ENOENT";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EAGAIN: return "EAGAIN";
    case EACCES: return "EACCES";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case EPIPE: return "EPIPE";
    case ECONNRESET: return "ECONNRESET";
    case EMSGSIZE: return "EMSGSIZE";
    case ENOSYS: return "ENOSYS";
    case EFBIG: return "EFBIG";
    case ERANGE: return "ERANGE";
    default: return NULL;
  }
}

/* Throw `Error("<syscall> failed: <strerror> (<CODE>)")` with Node-style
 * code/errno/syscall properties. Always returns NULL for `return throw_…`. */
static inline napi_value throw_errno(napi_env env, int err, const char *syscall,
                              const char *detail) {
  char code[32];
  const char *name = errno_name(err);
  if (name != NULL) {
    snprintf(code, sizeof code, "%s", name);
  } else {
    snprintf(code, sizeof code, "E%d", err);
  }
  char msg[512];
  if (detail != NULL) {
    snprintf(msg, sizeof msg, "%s failed: %s (%s): %s", syscall, strerror(err),
             code, detail);
  } else {
    snprintf(msg, sizeof msg, "%s failed: %s (%s)", syscall, strerror(err), code);
  }

  napi_value js_msg, js_code, js_errno, js_syscall, error;
  if (napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &js_msg) != napi_ok ||
      napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &js_code) != napi_ok ||
      napi_create_int32(env, -err, &js_errno) != napi_ok ||
      napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &js_syscall) != napi_ok ||
      napi_create_error(env, js_code, js_msg, &error) != napi_ok ||
      napi_set_named_property(env, error, "errno", js_errno) != napi_ok ||
      napi_set_named_property(env, error, "syscall", js_syscall) != napi_ok) {
    /* Could not build the rich error: a plain one still says what happened. */
    napi_throw_error(env, code, msg);
    return NULL;
  }
  napi_throw(env, error);
  return NULL;
}

#endif /* CRYPTOD_NAPI_ERRORS_H */
