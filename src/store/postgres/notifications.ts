/**
 * Change notifications across hosts: one dedicated connection per store that
 * LISTENs on the changes channel, and hands every generation another process
 * committed to the subscribers (the key manager's refresh).
 *
 *   writer (any host): … UPDATE store_state … pg_notify('cryptod_changes', '<gen> <origin>') COMMIT
 *                                   │  delivered only after the commit, in commit order
 *                                   ▼
 *   this process:  listener connection ─▶ skip our own origin ─▶ subscribers(gen)
 *
 * A notification can be lost: the listener connection drops, PostgreSQL
 * restarts. The generation check stays the source of truth (design note 3):
 * after every reconnect the listener reads the current generation and calls
 * each subscriber once with it, so a consumer that compares it with the
 * generation it has seen catches up through `changesSince`. Reconnects back
 * off from 100 ms to 5 s, and the backoff starts again from 100 ms after a
 * connection has stayed up (a flap does not leave it at 5 s for good).
 *
 * The connection is opened by the first subscriber and closed with the last:
 * a store nobody listens to costs nothing.
 */
import pg from 'pg';
import { CHANGES_CHANNEL } from './queries.js';

const FIRST_RETRY_MS = 100;
const MAX_RETRY_MS = 5_000;

export type GenerationListener = (generation: number) => void;

export class ChangeNotifications {
  readonly #config: pg.ClientConfig;
  readonly #origin: string;
  readonly #listeners = new Set<GenerationListener>();
  #client: pg.Client | null = null;
  #retryMs = FIRST_RETRY_MS;
  #timer: NodeJS.Timeout | null = null;
  #closed = false;
  /** Bumped for every connection attempt, so callbacks of an abandoned one do nothing. */
  #epoch = 0;

  constructor(config: pg.ClientConfig, origin: string) {
    this.#config = config;
    this.#origin = origin;
  }

  /** Whether the listener connection is up now (for status and tests). */
  get connected(): boolean {
    return this.#client !== null;
  }

  subscribe(listener: GenerationListener): () => void {
    if (this.#closed) return () => undefined;
    this.#listeners.add(listener);
    if (this.#listeners.size === 1) this.#connect();
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0) this.#disconnect();
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#listeners.clear();
    await this.#disconnect();
  }

  #connect(): void {
    if (this.#closed || this.#listeners.size === 0) return;
    const epoch = ++this.#epoch;
    // Named apart from the pool's connections, for pg_stat_activity (and the tests that cut it).
    const client = new pg.Client({ ...this.#config, application_name: 'cryptod-listen' });
    const lost = (): void => {
      if (epoch !== this.#epoch) return;
      this.#client = null;
      client.removeAllListeners('notification');
      client.end().catch(() => undefined);
      this.#scheduleReconnect();
    };
    client.on('error', lost);
    client.on('end', lost);
    client.on('notification', (msg) => {
      if (epoch !== this.#epoch || msg.channel !== CHANGES_CHANNEL || msg.payload === undefined) return;
      const [gen, origin] = msg.payload.split(' ');
      if (origin === this.#origin) return;
      const generation = Number(gen);
      if (Number.isSafeInteger(generation)) this.#emit(generation);
    });
    void (async () => {
      try {
        await client.connect();
        await client.query(`LISTEN ${CHANGES_CHANNEL}`);
        const { rows } = await client.query<{ generation: string }>('SELECT generation::text AS generation FROM store_state WHERE id = 1');
        if (epoch !== this.#epoch) {
          await client.end().catch(() => undefined); // unsubscribed or closed meanwhile
          return;
        }
        this.#client = client;
        setTimeout(() => {
          // Stayed up: the next outage starts backing off from the beginning.
          if (this.#client === client) this.#retryMs = FIRST_RETRY_MS;
        }, MAX_RETRY_MS).unref();
        // Anything committed while we were not yet (or no longer) listening is
        // behind this generation: the consumer compares and catches up.
        this.#emit(Number(rows[0]?.generation ?? 0));
      } catch {
        lost();
      }
    })();
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#listeners.size === 0 || this.#timer !== null) return;
    // Jitter keeps a fleet that lost its server at once from reconnecting in lockstep.
    const wait = this.#retryMs * (0.5 + Math.random() / 2);
    this.#retryMs = Math.min(this.#retryMs * 2, MAX_RETRY_MS);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#connect();
    }, wait);
    this.#timer.unref();
  }

  async #disconnect(): Promise<void> {
    this.#epoch++;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    const client = this.#client;
    this.#client = null;
    await client?.end().catch(() => undefined);
  }

  #emit(generation: number): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(generation);
      } catch {
        // A subscriber's failure is its own; the others still hear of the commit.
      }
    }
  }
}
