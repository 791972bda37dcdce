/*
 * peercred: the kernel-verified identity of the peer of a connected
 * Unix-domain socket, for cryptod's access control.
 *
 * Node has no API for SO_PEERCRED, and a client's own claims about who it is
 * are worthless; the kernel records the peer's uid/gid/pid at connect() time
 * and that is the only identity the daemon can trust. The TypeScript wrapper
 * (src/daemon/peer-cred.ts) finds the fd of an accepted net.Socket and calls
 * getPeerCred(fd) here.
 *
 * Exports:
 *   getPeerCred(fd: number): { uid: number, gid: number, pid: number }
 *   supported: boolean   (false where SO_PEERCRED does not exist, so the
 *                         wrapper can answer "is this available?" without
 *                         needing a socket)
 *
 * Errors are thrown like Node's own system errors (napi-errors.h).
 */
#if defined(__linux__)
#  define _GNU_SOURCE /* struct ucred */
#endif

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <node_api.h>

#define ADDON_NAME "peercred"
#include "napi-errors.h"

#include <sys/resource.h>

#if defined(__linux__)
#  include <sys/prctl.h>
#  include <sys/socket.h>
#  include <sys/types.h>
#  include <sys/un.h>
#  include <stddef.h>
#  include <unistd.h>
#  define PEERCRED_SUPPORTED 1
#else
#  define PEERCRED_SUPPORTED 0
#endif

#if PEERCRED_SUPPORTED

static napi_value get_peer_cred(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                          "getPeerCred(fd): fd is required");
    return NULL;
  }

  napi_valuetype type;
  NAPI_CALL(env, napi_typeof(env, argv[0], &type));
  if (type != napi_number) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                          "getPeerCred(fd): fd must be a number");
    return NULL;
  }
  double fd_d;
  NAPI_CALL(env, napi_get_value_double(env, argv[0], &fd_d));
  /* Reject NaN, fractions and out-of-range values before the int cast: a
   * wrong fd here would read the credentials of some other socket. */
  if (!(fd_d >= 0 && fd_d <= 2147483647.0) || fd_d != (double)(int)fd_d) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE",
                           "getPeerCred(fd): fd must be an integer >= 0 "
                           "(a closed or non-Unix handle has fd -1)");
    return NULL;
  }
  int fd = (int)fd_d;

  /* SO_PEERCRED "succeeds" on TCP sockets with uid/gid -1 and pid 0; make
   * that an error so nobody mistakes it for an identity. */
  int domain = 0;
  socklen_t domain_len = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &domain_len) != 0) {
    return throw_errno(env, errno, "getsockopt(SO_DOMAIN)", NULL);
  }
  if (domain != AF_UNIX) {
    return throw_errno(env, EAFNOSUPPORT, "getsockopt(SO_PEERCRED)",
                       "peer credentials exist only for Unix-domain sockets");
  }

  struct ucred cred;
  memset(&cred, 0, sizeof cred);
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return throw_errno(env, errno, "getsockopt(SO_PEERCRED)", NULL);
  }
  if (len != sizeof cred) {
    return throw_errno(env, EINVAL, "getsockopt(SO_PEERCRED)",
                       "the kernel returned a short struct ucred");
  }
  /* An unconnected (e.g. listening) socket has no peer: the kernel reports
   * uid/gid (uid_t)-1 and pid 0 instead of failing. */
  if (cred.uid == (uid_t)-1 && cred.gid == (gid_t)-1) {
    return throw_errno(env, ENOTCONN, "getsockopt(SO_PEERCRED)",
                       "the socket has no connected peer");
  }

  napi_value result, uid, gid, pid;
  NAPI_CALL(env, napi_create_object(env, &result));
  NAPI_CALL(env, napi_create_uint32(env, (uint32_t)cred.uid, &uid));
  NAPI_CALL(env, napi_create_uint32(env, (uint32_t)cred.gid, &gid));
  NAPI_CALL(env, napi_create_int32(env, (int32_t)cred.pid, &pid));
  NAPI_CALL(env, napi_set_named_property(env, result, "uid", uid));
  NAPI_CALL(env, napi_set_named_property(env, result, "gid", gid));
  NAPI_CALL(env, napi_set_named_property(env, result, "pid", pid));
  return result;
}

#else /* !PEERCRED_SUPPORTED */

static napi_value get_peer_cred(napi_env env, napi_callback_info info) {
  (void)info;
  napi_throw_error(env, "ERR_PEERCRED_UNSUPPORTED",
                   "SO_PEERCRED is not available on this platform");
  return NULL;
}

#endif /* PEERCRED_SUPPORTED */

/*
 * setNonDumpable(): prctl(PR_SET_DUMPABLE, 0). The daemon holds key material
 * in its heap; a non-dumpable process writes no core dump and cannot be
 * attached to by ptrace from other processes of the same uid (root still
 * can). Node has no API for it. Returns true when it took effect.
 */
static napi_value set_non_dumpable(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
#if PEERCRED_SUPPORTED
  bool ok = prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0;
#else
  bool ok = false;
#endif
  NAPI_CALL(env, napi_get_boolean(env, ok, &result));
  return result;
}

/*
 * raiseFileLimit(): set the soft RLIMIT_NOFILE to the hard limit. Every
 * client connection costs the daemon a file descriptor, and the usual soft
 * limit of 1024 is a compatibility default for select(), which libuv does not
 * use; raising the soft limit up to the hard one needs no privilege. Node has
 * no API for setrlimit. Returns { before: { soft, hard }, after: { soft,
 * hard } } (numbers; RLIM_INFINITY as -1), or throws like getPeerCred.
 */
static napi_value limit_object(napi_env env, const struct rlimit *rl) {
  napi_value obj, soft, hard;
  NAPI_CALL(env, napi_create_object(env, &obj));
  NAPI_CALL(env, napi_create_double(env, rl->rlim_cur == RLIM_INFINITY ? -1.0 : (double)rl->rlim_cur, &soft));
  NAPI_CALL(env, napi_create_double(env, rl->rlim_max == RLIM_INFINITY ? -1.0 : (double)rl->rlim_max, &hard));
  NAPI_CALL(env, napi_set_named_property(env, obj, "soft", soft));
  NAPI_CALL(env, napi_set_named_property(env, obj, "hard", hard));
  return obj;
}

static napi_value raise_file_limit(napi_env env, napi_callback_info info) {
  (void)info;
#if !PEERCRED_SUPPORTED
  napi_throw_error(env, "ERR_RLIMIT_UNSUPPORTED",
                   "raiseFileLimit is built on Linux only");
  return NULL;
#else
  struct rlimit before, after;
  if (getrlimit(RLIMIT_NOFILE, &before) != 0) {
    return throw_errno(env, errno, "getrlimit(RLIMIT_NOFILE)", NULL);
  }
  after = before;
  if (before.rlim_cur != before.rlim_max) {
    after.rlim_cur = before.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &after) != 0) {
      return throw_errno(env, errno, "setrlimit(RLIMIT_NOFILE)", NULL);
    }
  }
  if (getrlimit(RLIMIT_NOFILE, &after) != 0) {
    return throw_errno(env, errno, "getrlimit(RLIMIT_NOFILE)", NULL);
  }
  napi_value result, b, a;
  NAPI_CALL(env, napi_create_object(env, &result));
  b = limit_object(env, &before);
  if (b == NULL) return NULL;
  a = limit_object(env, &after);
  if (a == NULL) return NULL;
  NAPI_CALL(env, napi_set_named_property(env, result, "before", b));
  NAPI_CALL(env, napi_set_named_property(env, result, "after", a));
  return result;
#endif
}

/*
 * sdNotify(path, message): send `message` as one datagram to the Unix
 * datagram socket at `path` — systemd's sd_notify protocol (READY=1,
 * STOPPING=1, WATCHDOG=1) to $NOTIFY_SOCKET. Node's dgram module has no Unix
 * domain sockets, hence this. A path starting with '@' names a socket in the
 * abstract namespace (the '@' becomes the leading NUL byte). Throws like
 * getPeerCred on failure; returns undefined.
 */
static napi_value sd_notify(napi_env env, napi_callback_info info) {
#if !PEERCRED_SUPPORTED
  (void)info;
  napi_throw_error(env, "ERR_SD_NOTIFY_UNSUPPORTED", "sdNotify is built on Linux only");
  return NULL;
#else
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  char path[sizeof addr.sun_path + 1];
  size_t path_len = 0;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &path_len) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "sdNotify(path, message) expects two strings");
    return NULL;
  }
  if (path_len == 0 || path_len >= sizeof addr.sun_path) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "sdNotify: the socket path is empty or longer than sun_path");
    return NULL;
  }
  memcpy(addr.sun_path, path, path_len);
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';
  /* Abstract addresses are exactly as long as given; a path gets its NUL. */
  socklen_t addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len + (path[0] == '@' ? 0 : 1));
  char msg[4096];
  size_t msg_len = 0;
  if (napi_get_value_string_utf8(env, argv[1], msg, sizeof msg, &msg_len) != napi_ok || msg_len == 0 || msg_len >= sizeof msg - 1) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "sdNotify: the message must be a string of 1 to 4094 bytes");
    return NULL;
  }
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket(AF_UNIX, SOCK_DGRAM)", NULL);
  ssize_t sent = sendto(fd, msg, msg_len, MSG_NOSIGNAL, (struct sockaddr *)&addr, addr_len);
  int err = errno;
  close(fd);
  if (sent < 0) return throw_errno(env, err, "sendto", path);
  napi_value undefined;
  NAPI_CALL(env, napi_get_undefined(env, &undefined));
  return undefined;
#endif
}

NAPI_MODULE_INIT() {
  napi_value notify;
  NAPI_CALL(env, napi_create_function(env, "sdNotify", NAPI_AUTO_LENGTH,
                                      sd_notify, NULL, &notify));
  NAPI_CALL(env, napi_set_named_property(env, exports, "sdNotify", notify));
  napi_value raise;
  NAPI_CALL(env, napi_create_function(env, "raiseFileLimit", NAPI_AUTO_LENGTH,
                                      raise_file_limit, NULL, &raise));
  NAPI_CALL(env, napi_set_named_property(env, exports, "raiseFileLimit", raise));
  napi_value dumpable;
  NAPI_CALL(env, napi_create_function(env, "setNonDumpable", NAPI_AUTO_LENGTH,
                                      set_non_dumpable, NULL, &dumpable));
  NAPI_CALL(env, napi_set_named_property(env, exports, "setNonDumpable", dumpable));
  napi_value fn, supported;
  NAPI_CALL(env, napi_create_function(env, "getPeerCred", NAPI_AUTO_LENGTH,
                                      get_peer_cred, NULL, &fn));
  NAPI_CALL(env, napi_set_named_property(env, exports, "getPeerCred", fn));
  NAPI_CALL(env, napi_get_boolean(env, PEERCRED_SUPPORTED, &supported));
  NAPI_CALL(env, napi_set_named_property(env, exports, "supported", supported));
  return exports;
}
