/**
 * Fairness under a flood: one abusive client pipelines thousands of large
 * DIGEST requests as fast as its socket takes them, while a well-behaved
 * client sends small requests one at a time. The daemon runs in its own
 * process (the CLI), so its memory and the clients' are measured apart and
 * the clients' own work does not share the daemon's event loop.
 *
 * Asserted: correctness only — every well-behaved request succeeded, every
 * abusive request got its right answer (it was slowed by back-pressure, not
 * refused), and the daemon's peak memory stayed under a generous bound.
 * The well-behaved latencies (p50/p99) are printed with t.diagnostic, never
 * asserted: timings depend on the machine.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connect } from '../src/client/client.js';
import { startCliDaemon } from './helpers/cli-daemon.js';

/** Abuser volume: large digests (1 MiB, 256 KiB, 64 KiB in turn), each followed by a burst of 64-byte ones. */
const LARGE = Number(process.env.CRYPTOD_FLOOD_LARGE ?? 1500);
const TINY_PER_LARGE = Number(process.env.CRYPTOD_FLOOD_TINY ?? 40);
const MiB = 1024 * 1024;
/** Peak RSS the daemon may reach while ~650 MiB flows through it: far above what it needs, far below unbounded buffering. */
const PEAK_RSS_BOUND = 400 * MiB;

interface AbuseResult {
  helloOk: boolean;
  sent: number;
  answered: number;
  failures: number;
  wrong: number;
  drains: number;
  ms: number;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function summary(ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  return `n=${s.length} p50=${percentile(s, 50).toFixed(2)}ms p99=${percentile(s, 99).toFixed(2)}ms max=${s[s.length - 1]!.toFixed(2)}ms`;
}

test('a flooding client slows itself, not a well-behaved one', { timeout: 180_000 }, async (t) => {
  const d = await startCliDaemon(['--max-inflight', '64', '--log-level', 'warn']);
  try {
    const polite = await connect({ socket: d.socketPath, clientName: 'polite' });
    const small = Buffer.from('one small request');
    const want = createHash('sha256').update(small).digest('hex');
    const politeCall = async (): Promise<number> => {
      const t0 = performance.now();
      const got = Buffer.from(await polite.subtle.digest('SHA-256', small)).toString('hex');
      const ms = performance.now() - t0;
      assert.equal(got, want);
      return ms;
    };

    // Baseline: the same requests with nobody else around.
    const quiet: number[] = [];
    for (let i = 0; i < 300; i++) quiet.push(await politeCall());

    // The abuser, in its own process (test/helpers/flood-abuser.ts).
    const abuser = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/flood-abuser.ts', d.socketPath, String(LARGE), String(TINY_PER_LARGE)], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    abuser.stdout.on('data', (b: Buffer) => (out += b.toString()));
    let abuseDone = false;
    const abuseExit = new Promise<number | null>((res) => abuser.on('exit', (code) => {
      abuseDone = true;
      res(code);
    }));
    // Wait until the flood reaches the daemon (the abuser's HELLO names it in STATUS).
    for (;;) {
      const st = (await polite.status()) as { clients: Array<{ clientId: string }> };
      if (st.clients.some((c) => c.clientId.endsWith('/abuser'))) break;
      if (abuseDone) break;
      await new Promise((r) => setTimeout(r, 20));
    }

    const loud: number[] = [];
    while (!abuseDone && loud.length < 50_000) loud.push(await politeCall());
    assert.equal(await abuseExit, 0, `the abuser process failed: ${out}`);
    const r = JSON.parse(out) as AbuseResult;

    const bytes = (LARGE / 3) * (1024 + 256 + 64) * 1024 + LARGE * TINY_PER_LARGE * 64;
    t.diagnostic(`well-behaved, alone:       ${summary(quiet)}`);
    t.diagnostic(`well-behaved, under flood: ${summary(loud)}`);
    t.diagnostic(`abuser: ${r.sent} requests, ${(bytes / MiB).toFixed(0)} MiB in ${r.ms.toFixed(0)} ms, waited for 'drain' ${r.drains} times`);
    const mem = d.memory();
    if (mem !== null) t.diagnostic(`daemon peak RSS ${(mem.peak / MiB).toFixed(0)} MiB, now ${(mem.rss / MiB).toFixed(0)} MiB`);

    assert.ok(r.helloOk, 'the abuser was not admitted');
    assert.equal(r.failures, 0, 'the abuser was refused instead of slowed');
    assert.equal(r.wrong, 0, 'the abuser got wrong digests');
    assert.equal(r.answered, r.sent);
    assert.ok(r.drains > 0, 'the abuser never had to wait: the flood did not outpace the daemon, so back-pressure was not exercised');
    assert.ok(loud.length >= 10, `the well-behaved client got only ${loud.length} requests in during the flood`);
    if (mem !== null) assert.ok(mem.peak < PEAK_RSS_BOUND, `daemon peak RSS ${(mem.peak / MiB).toFixed(0)} MiB exceeds the ${PEAK_RSS_BOUND / MiB} MiB sanity bound`);

    await polite.close();
  } finally {
    assert.equal(await d.stop(), 0, `the daemon did not exit cleanly: ${d.stderr().toString().slice(-2000)}`);
  }
});
