/*
 * window: shared-memory windows between a cryptod client and the daemon
 * (docs/protocol.md §6.16), so that large inputs reach the daemon without a
 * copy through the socket.
 *
 *   client: createWindow(size) ─▶ memfd, sealed against shrinking and growing,
 *           mapped shared          │
 *           sendFd(sock, fd, offer)└──SCM_RIGHTS over a Unix socket──▶ daemon: recvFd(sock)
 *                                                                       mapWindow(fd, max): checks
 *                                                                       the seals, maps shared
 *
 * The seals are what make a client-made mapping safe for the daemon to read:
 * a file the client could truncate would turn the daemon's next read of the
 * mapping into SIGBUS, which kills the process. mapWindow refuses anything
 * that is not sealed against shrinking (F_SEAL_SHRINK) and growing, and
 * whose seals could still change (F_SEAL_SEAL), and anything but a regular
 * file of the expected size.
 *
 * Exports:
 *   supported: boolean
 *   createWindow(size) → { fd, buffer }      (buffer: ArrayBuffer over the mapping)
 *   sendFd(socketFd, fd, payload)            (one sendmsg; throws EAGAIN if it would block)
 *   recvFd(socketFd, maxPayload) → null (would block) | { fd (-1: none), payload, eof }
 *   mapWindow(fd, maxSize) → { buffer, size }
 *   releaseWindow(buffer)                    (detach now: views become empty, the mapping goes)
 *
 * An ArrayBuffer over a mapping is unmapped when it is detached or collected,
 * whichever is first. Views of it must never be handed to asynchronous I/O
 * (a socket write keeps a pointer, not the buffer): releaseWindow would unmap
 * under it.
 *
 * Errors are thrown like Node's system errors (code, errno, syscall).
 */
#if defined(__linux__)
#  define _GNU_SOURCE /* memfd_create, F_ADD_SEALS, MSG_CMSG_CLOEXEC */
#endif

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <node_api.h>

#define ADDON_NAME "window"
#include "napi-errors.h"

#if defined(__linux__)
#  include <fcntl.h>
#  include <sys/mman.h>
#  include <sys/socket.h>
#  include <sys/stat.h>
#  include <sys/types.h>
#  include <sys/vfs.h>
#  include <unistd.h>
#  include <linux/magic.h>
#  if defined(F_ADD_SEALS) && defined(MFD_ALLOW_SEALING)
#    define WINDOW_SUPPORTED 1
#  endif
#endif
#ifndef WINDOW_SUPPORTED
#  define WINDOW_SUPPORTED 0
#endif

/* The largest window either side makes or maps: 1 GiB (the daemon's limit is lower). */
#define WINDOW_MAX_BYTES ((double)(1u << 30))
/* An offer is a few dozen bytes; a payload beyond this is not ours. */
#define PAYLOAD_MAX 256

/* argv[i] as an integer in [lo, hi], or a thrown RangeError/TypeError (returns false). */
static bool int_arg(napi_env env, napi_value v, const char *what, double lo, double hi, double *out) {
  napi_valuetype type;
  if (napi_typeof(env, v, &type) != napi_ok || type != napi_number) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s must be a number", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) return false;
  if (!(d >= lo && d <= hi) || d != (double)(int64_t)d) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s must be an integer from %.0f to %.0f", what, lo, hi);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return false;
  }
  *out = d;
  return true;
}

static napi_value get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < want) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "window: missing arguments");
    return NULL;
  }
  napi_value ok;
  NAPI_CALL(env, napi_get_boolean(env, true, &ok));
  return ok;
}

#if WINDOW_SUPPORTED

static void unmap_finalizer(napi_env env, void *data, void *hint) {
  (void)env;
  munmap(data, (size_t)(uintptr_t)hint);
}

/* An ArrayBuffer over `size` bytes mapped at `addr`, unmapped when detached or collected. */
static napi_value mapping_buffer(napi_env env, void *addr, size_t size) {
  napi_value buffer;
  if (napi_create_external_arraybuffer(env, addr, size, unmap_finalizer, (void *)(uintptr_t)size, &buffer) != napi_ok) {
    munmap(addr, size);
    throw_last_napi_error(env, "napi_create_external_arraybuffer");
    return NULL;
  }
  return buffer;
}

static napi_value create_window(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (get_args(env, info, 1, argv) == NULL) return NULL;
  double size_d;
  if (!int_arg(env, argv[0], "createWindow(size): size", 1, WINDOW_MAX_BYTES, &size_d)) return NULL;
  size_t size = (size_t)size_d;

  int fd = memfd_create("cryptod-window", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return throw_errno(env, errno, "memfd_create", NULL);
  if (ftruncate(fd, (off_t)size) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, "ftruncate", NULL);
  }
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, "fcntl(F_ADD_SEALS)", NULL);
  }
  void *addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (addr == MAP_FAILED) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, "mmap", NULL);
  }
  napi_value buffer = mapping_buffer(env, addr, size);
  if (buffer == NULL) {
    close(fd);
    return NULL;
  }
  napi_value result, js_fd;
  if (napi_create_object(env, &result) != napi_ok || napi_create_int32(env, fd, &js_fd) != napi_ok ||
      napi_set_named_property(env, result, "fd", js_fd) != napi_ok ||
      napi_set_named_property(env, result, "buffer", buffer) != napi_ok) {
    close(fd);
    throw_last_napi_error(env, "createWindow result");
    return NULL;
  }
  return result;
}

/* `msg` over one data buffer `iov` and a zeroed control buffer. */
static void init_msg(struct msghdr *msg, struct iovec *iov, void *control, size_t control_len) {
  memset(control, 0, control_len);
  memset(msg, 0, sizeof *msg);
  msg->msg_iov = iov;
  msg->msg_iovlen = 1;
  msg->msg_control = control;
  msg->msg_controllen = control_len;
}

static napi_value send_fd(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (get_args(env, info, 3, argv) == NULL) return NULL;
  double sock_d, fd_d;
  if (!int_arg(env, argv[0], "sendFd(socketFd): socketFd", 0, 2147483647.0, &sock_d)) return NULL;
  if (!int_arg(env, argv[1], "sendFd(fd): fd", 0, 2147483647.0, &fd_d)) return NULL;
  bool is_typed = false;
  NAPI_CALL(env, napi_is_typedarray(env, argv[2], &is_typed));
  if (!is_typed) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "sendFd(payload): payload must be a Uint8Array");
    return NULL;
  }
  napi_typedarray_type ta_type;
  size_t length;
  void *data;
  NAPI_CALL(env, napi_get_typedarray_info(env, argv[2], &ta_type, &length, &data, NULL, NULL));
  if (ta_type != napi_uint8_array || length == 0 || length > PAYLOAD_MAX) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "sendFd(payload): payload must be a Uint8Array of 1 to 256 bytes");
    return NULL;
  }
  int sock = (int)sock_d, fd = (int)fd_d;

  struct iovec iov = { .iov_base = data, .iov_len = length };
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } control;
  struct msghdr msg;
  init_msg(&msg, &iov, control.buf, sizeof control.buf);
  struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
  ssize_t n;
  do {
    n = sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return throw_errno(env, errno, "sendmsg", NULL);
  if ((size_t)n != length) return throw_errno(env, EMSGSIZE, "sendmsg", "the payload went out in part");
  return NULL;
}

static napi_value recv_fd(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (get_args(env, info, 2, argv) == NULL) return NULL;
  double sock_d, max_d;
  if (!int_arg(env, argv[0], "recvFd(socketFd): socketFd", 0, 2147483647.0, &sock_d)) return NULL;
  if (!int_arg(env, argv[1], "recvFd(maxPayload): maxPayload", 1, PAYLOAD_MAX, &max_d)) return NULL;
  int sock = (int)sock_d;
  unsigned char payload[PAYLOAD_MAX];
  struct iovec iov = { .iov_base = payload, .iov_len = (size_t)max_d };
  /* Room for several descriptors: any beyond the first are closed, not leaked. */
  union {
    char buf[CMSG_SPACE(sizeof(int) * 8)];
    struct cmsghdr align;
  } control;
  struct msghdr msg;
  init_msg(&msg, &iov, control.buf, sizeof control.buf);
  ssize_t n;
  do {
    n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      napi_value nothing;
      NAPI_CALL(env, napi_get_null(env, &nothing));
      return nothing;
    }
    return throw_errno(env, errno, "recvmsg", NULL);
  }
  int fd = -1;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int got;
      memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (fd < 0) fd = got;
      else close(got);
    }
  }
  bool truncated = (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) != 0;
  napi_value result, js_fd, js_payload, js_eof, js_trunc;
  void *copy;
  if (napi_create_object(env, &result) != napi_ok || napi_create_int32(env, fd, &js_fd) != napi_ok ||
      napi_create_buffer_copy(env, (size_t)n, payload, &copy, &js_payload) != napi_ok ||
      napi_get_boolean(env, n == 0 && fd < 0, &js_eof) != napi_ok ||
      napi_get_boolean(env, truncated, &js_trunc) != napi_ok ||
      napi_set_named_property(env, result, "fd", js_fd) != napi_ok ||
      napi_set_named_property(env, result, "payload", js_payload) != napi_ok ||
      napi_set_named_property(env, result, "eof", js_eof) != napi_ok ||
      napi_set_named_property(env, result, "truncated", js_trunc) != napi_ok) {
    if (fd >= 0) close(fd);
    throw_last_napi_error(env, "recvFd result");
    return NULL;
  }
  return result;
}

static napi_value map_window(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (get_args(env, info, 2, argv) == NULL) return NULL;
  double fd_d, max_d;
  if (!int_arg(env, argv[0], "mapWindow(fd): fd", 0, 2147483647.0, &fd_d)) return NULL;
  if (!int_arg(env, argv[1], "mapWindow(maxSize): maxSize", 1, WINDOW_MAX_BYTES, &max_d)) return NULL;
  int fd = (int)fd_d;

  struct stat st;
  if (fstat(fd, &st) != 0) return throw_errno(env, errno, "fstat", NULL);
  if (!S_ISREG(st.st_mode)) return throw_errno(env, EINVAL, "mapWindow", "not a memory file (memfd_create)");
  /* Plain shmem only: a hugetlbfs memory file (MFD_HUGETLB) can fail a page
   * fault with SIGBUS when the huge pages run out, which would kill the reader. */
  struct statfs sfs;
  if (fstatfs(fd, &sfs) != 0) return throw_errno(env, errno, "fstatfs", NULL);
  if (sfs.f_type != TMPFS_MAGIC) return throw_errno(env, EPERM, "mapWindow", "not a plain memory file (memfd_create without MFD_HUGETLB)");
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0) return throw_errno(env, errno == EINVAL ? EPERM : errno, "fcntl(F_GET_SEALS)", "not a sealable memory file (memfd_create with MFD_ALLOW_SEALING)");
  int need = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
  if ((seals & need) != need) return throw_errno(env, EPERM, "mapWindow", "the memory file must be sealed with F_SEAL_SHRINK, F_SEAL_GROW and F_SEAL_SEAL");
  if (st.st_size <= 0 || (double)st.st_size > max_d) return throw_errno(env, EFBIG, "mapWindow", "the memory file is empty or larger than the daemon's window limit");
  size_t size = (size_t)st.st_size;
  void *addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (addr == MAP_FAILED) return throw_errno(env, errno, "mmap", "the memory file must be writable (no F_SEAL_WRITE)");
  napi_value buffer = mapping_buffer(env, addr, size);
  if (buffer == NULL) return NULL;
  napi_value result, js_size;
  NAPI_CALL(env, napi_create_object(env, &result));
  NAPI_CALL(env, napi_create_double(env, (double)size, &js_size));
  NAPI_CALL(env, napi_set_named_property(env, result, "buffer", buffer));
  NAPI_CALL(env, napi_set_named_property(env, result, "size", js_size));
  return result;
}

#else /* !WINDOW_SUPPORTED */

static napi_value unsupported(napi_env env, napi_callback_info info) {
  (void)info;
  napi_throw_error(env, "ERR_WINDOW_UNSUPPORTED", "shared-memory windows need Linux (memfd_create with sealing)");
  return NULL;
}
#  define create_window unsupported
#  define send_fd unsupported
#  define recv_fd unsupported
#  define map_window unsupported

#endif /* WINDOW_SUPPORTED */

static napi_value release_window(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (get_args(env, info, 1, argv) == NULL) return NULL;
  bool is_ab = false;
  NAPI_CALL(env, napi_is_arraybuffer(env, argv[0], &is_ab));
  if (!is_ab) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "releaseWindow(buffer): buffer must be the ArrayBuffer of a window");
    return NULL;
  }
  bool detached = false;
  NAPI_CALL(env, napi_is_detached_arraybuffer(env, argv[0], &detached));
  if (!detached) NAPI_CALL(env, napi_detach_arraybuffer(env, argv[0]));
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value supported;
  NAPI_CALL(env, napi_get_boolean(env, WINDOW_SUPPORTED != 0, &supported));
  NAPI_CALL(env, napi_set_named_property(env, exports, "supported", supported));
  napi_property_descriptor fns[] = {
    { "createWindow", NULL, create_window, NULL, NULL, NULL, napi_default, NULL },
    { "sendFd", NULL, send_fd, NULL, NULL, NULL, napi_default, NULL },
    { "recvFd", NULL, recv_fd, NULL, NULL, NULL, napi_default, NULL },
    { "mapWindow", NULL, map_window, NULL, NULL, NULL, napi_default, NULL },
    { "releaseWindow", NULL, release_window, NULL, NULL, NULL, napi_default, NULL },
  };
  NAPI_CALL(env, napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
