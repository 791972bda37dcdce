/**
 * systemd integration (contrib/systemd/): socket activation and readiness
 * notification, read from the environment systemd sets.
 *
 * Socket activation (sd_listen_fds(3)): with `LISTEN_PID` equal to our pid
 * and `LISTEN_FDS` ≥ 1, the listening Unix socket is inherited as fd 3
 * (SD_LISTEN_FDS_START). `LISTEN_FDNAMES` (colon-separated, FileDescriptorName=
 * in the .socket unit) picks the fd named `cryptod` when several are passed.
 * The variables are removed once read, so a child process does not take our
 * sockets for its own. systemd created the socket file, with the unit's
 * SocketMode and owner; the daemon neither creates nor removes it.
 *
 * Notification (sd_notify(3)): one datagram per state to `NOTIFY_SOCKET`
 * (Type=notify): READY=1 once the keys are loaded and the socket is served,
 * STOPPING=1 when shutdown begins, WATCHDOG=1 every half of WATCHDOG_USEC
 * when WatchdogSec= is set (and WATCHDOG_PID, if given, is ours).
 */
import { ConfigError } from '../protocol/errors.js';
import { sdNotify } from './peer-cred.js';

/** The first inherited descriptor (SD_LISTEN_FDS_START). */
export const LISTEN_FDS_START = 3;

/**
 * The listening socket systemd handed over, or null when not socket-activated.
 * @throws ConfigError when LISTEN_FDS is malformed or several descriptors come without one named `cryptod`.
 */
export function takeListenFd(env: NodeJS.ProcessEnv = process.env, pid = process.pid): number | null {
  const listenPid = env.LISTEN_PID;
  const listenFds = env.LISTEN_FDS;
  const names = env.LISTEN_FDNAMES;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  if (listenFds === undefined || listenPid === undefined || Number(listenPid) !== pid) return null;
  const n = Number(listenFds);
  if (!/^[0-9]+$/.test(listenFds) || n < 1) throw new ConfigError(`LISTEN_FDS must be a positive number of descriptors, got "${listenFds}"`);
  if (n === 1) return LISTEN_FDS_START;
  const at = (names ?? '').split(':').indexOf('cryptod');
  if (at < 0 || at >= n) {
    throw new ConfigError(`systemd passed ${n} sockets; name the one for cryptod with FileDescriptorName=cryptod in the .socket unit (LISTEN_FDNAMES: "${names ?? ''}")`);
  }
  return LISTEN_FDS_START + at;
}

export interface Notifier {
  ready(): void;
  stopping(): void;
  /** Stop the watchdog timer. */
  close(): void;
}

/** sd_notify for this process, or null without NOTIFY_SOCKET. `onError` hears of a failed send (the daemon keeps running). */
export function createNotifier(env: NodeJS.ProcessEnv, onError: (state: string, err: unknown) => void, pid = process.pid): Notifier | null {
  const socket = env.NOTIFY_SOCKET;
  if (socket === undefined || socket === '') return null;
  const send = (state: string): void => {
    try {
      sdNotify(socket, state);
    } catch (err) {
      onError(state, err);
    }
  };
  const usec = Number(env.WATCHDOG_USEC);
  const forUs = env.WATCHDOG_PID === undefined || Number(env.WATCHDOG_PID) === pid;
  let watchdog: NodeJS.Timeout | null = null;
  return {
    ready() {
      send(`READY=1\nMAINPID=${pid}`);
      if (forUs && Number.isSafeInteger(usec) && usec > 0) {
        // Half the interval, as sd_watchdog_enabled(3) advises; the timer keeps
        // firing only while the event loop turns, which is what it watches.
        watchdog = setInterval(() => send('WATCHDOG=1'), Math.max(1, Math.floor(usec / 2000)));
        watchdog.unref();
      }
    },
    stopping() {
      send('STOPPING=1');
    },
    close() {
      if (watchdog !== null) clearInterval(watchdog);
      watchdog = null;
    },
  };
}
