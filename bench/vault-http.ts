/**
 * `npx tsx bench/vault-http.ts`: the Vault-compatible HTTP API beside the
 * native protocol, in one run, against one daemon in its own process
 * (bench/vault-daemon-child.ts), written to docs/benchmarks-vault.md.
 *
 *   transit encrypt 1 KiB, hmac 64 B  ×  native │ HTTP (node:http)
 *                                      ×  1 in flight │ 64 concurrent │ batches of 100
 *   transit datakey/wrapped (256 bits) ×  native DATAKEY_GENERATE │ HTTP, 1 │ 64 concurrent
 *   node:http against fastify on transit encrypt: interleaved rounds
 *   (A, B, A, B …), the median of BENCH_ROUNDS (default 5) each
 *
 * The HTTP load is raw keep-alive sockets writing pre-built requests
 * (raw-http-client.ts): the client shares the two cores with the daemon.
 * Every row carries the daemon's CPU per operation (/proc), the figure that
 * holds on a loaded machine.
 *
 * Options: BENCH_SECONDS (per row, default 2), BENCH_ROUNDS, BENCH_OUT;
 * BENCH_QUICK=1 runs the single-encrypt rows only and writes nothing;
 * BENCH_PROFILE=DIR has the daemon write a CPU profile (--cpu-prof) there.
 */
import { spawn } from 'node:child_process';
import { Agent, request } from 'node:http';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { connect } from '../src/client/client.js';
import { measureLoop, measurePipelined, type Result } from './measure.js';
import { fmtOps, fmtUs } from './report.js';
import { RawHttpPool, buildRequest } from './raw-http-client.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const ROUNDS = Math.max(5, Number(process.env.BENCH_ROUNDS ?? 5));
const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..');
const OUT = process.env.BENCH_OUT ?? join(repo, 'docs/benchmarks-vault.md');
const CONCURRENT = 64;
const QUICK = process.env.BENCH_QUICK === '1';
const BATCH = 100;

interface Started {
  dir: string;
  socket: string;
  token: string;
  /** The Vault API's port: node:http, or fastify with CRYPTOD_BENCH_DOOR=fastify. */
  port: number;
  /** A node:http server that does nothing: the round trip's floor. */
  barePort: number;
}

/**
 * CPU seconds the daemon process has used (utime + stime, /proc/PID/stat).
 * On a shared machine throughput says how busy the neighbours were; the
 * daemon's CPU per request says what a request costs.
 */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // clock ticks: USER_HZ is 100 on Linux
}

async function startChild(door: 'node' | 'fastify' = 'node'): Promise<{ started: Started; pid: number; stop(): Promise<void> }> {
  // BENCH_PROFILE=DIR: the daemon writes a V8 CPU profile (--cpu-prof) there when it stops.
  const prof = process.env.BENCH_PROFILE === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${resolve(process.env.BENCH_PROFILE)}`];
  const child = spawn(process.execPath, [...prof, '--import', 'tsx', join(here, 'vault-daemon-child.ts')], {
    stdio: ['ignore', 'pipe', 'inherit'], cwd: repo, env: { ...process.env, CRYPTOD_BENCH_DOOR: door },
  });
  const line = await new Promise<string>((res, rej) => {
    createInterface({ input: child.stdout! }).once('line', res);
    child.once('exit', (code) => rej(new Error(`the daemon exited with ${code}`)));
  });
  const started = JSON.parse(line) as Started;
  return {
    started,
    pid: child.pid!,
    async stop() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      rmSync(started.dir, { recursive: true, force: true });
    },
  };
}

/** POST `body` as JSON; resolves with the parsed reply, rejects on any status but 200. */
function post(agent: Agent, port: number, token: string, path: string, body: string): Promise<{ data: Record<string, unknown> }> {
  return new Promise((res, rej) => {
    const r = request({ host: '127.0.0.1', port, path, method: 'POST', agent, headers: { 'X-Vault-Token': token, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (reply) => {
      const chunks: Buffer[] = [];
      reply.on('data', (c: Buffer) => chunks.push(c));
      reply.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        if (reply.statusCode !== 200) rej(new Error(`HTTP ${reply.statusCode}: ${text}`));
        else res(JSON.parse(text) as { data: Record<string, unknown> });
      });
    });
    r.on('error', rej);
    r.end(body);
  });
}

interface Row {
  workload: string;
  mode: string;
  r: Result;
  /** Daemon CPU microseconds per op (per item for batches), warm-up included: an upper bound. */
  cpuUs: number;
  /** Items per request (batch rows): ops/s counts items. */
  items?: number;
}

async function main(): Promise<void> {
  const loadStart = loadavg();
  const { started, pid, stop } = await startChild();
  const rows: Row[] = [];
  const pools: RawHttpPool[] = [];
  /** Further daemon children (the fastify side of the comparison), stopped at the end. */
  const stops: Array<() => Promise<void>> = [];
  let cpuMark = 0;
  /** Start a row's CPU count; `add` ends it. */
  const mark = (): void => {
    cpuMark = cpuSeconds(pid);
  };
  const add = (workload: string, mode: string, r: Result, items?: number): void => {
    const cpuUs = ((cpuSeconds(pid) - cpuMark) * 1e6) / r.ops;
    rows.push({ workload, mode, r, cpuUs, ...(items === undefined ? {} : { items }) });
    console.log(`${workload.padEnd(24)} ${mode.padEnd(44)} ${fmtOps(r.opsPerSec).padStart(10)} ops/s  p50 ${fmtUs(r.p50)}  p99 ${fmtUs(r.p99)}  daemon CPU ${cpuUs.toFixed(1)} µs/op`);
  };
  /** A batch row: the measurement counts requests; the table counts items. */
  const perItem = (r: Result, n: number): Result => ({ ...r, ops: r.ops * n, opsPerSec: r.opsPerSec * n });
  try {
    const { token, port: nodePort, barePort } = started;
    const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENT });
    await post(agent, nodePort, token, '/v1/transit/keys/bench-aes', JSON.stringify({ type: 'aes256-gcm96' }));
    await post(agent, nodePort, token, '/v1/transit/keys/bench-mac', JSON.stringify({ type: 'hmac' }));
    await post(agent, nodePort, token, '/v1/transit/keys/bench-kek', JSON.stringify({ type: 'aes256-kwp' }));
    agent.destroy();
    const client = await connect({ socket: started.socket, token });
    // The load: raw keep-alive sockets writing pre-built requests (raw-http-client.ts), so the client takes as little of the two cores as it can.
    const raw = await RawHttpPool.open(nodePort, CONCURRENT);
    const rawBare = await RawHttpPool.open(barePort, CONCURRENT);
    pools.push(raw, rawBare);
    const kib = Buffer.alloc(1024, 7);
    const small = Buffer.alloc(64, 9);
    const encBody = JSON.stringify({ plaintext: kib.toString('base64') });
    const macBody = JSON.stringify({ input: small.toString('base64') });
    const encBatch = JSON.stringify({ batch_input: Array.from({ length: BATCH }, () => ({ plaintext: kib.toString('base64') })) });
    const macBatch = JSON.stringify({ batch_input: Array.from({ length: BATCH }, () => ({ input: small.toString('base64') })) });
    const encReq = buildRequest('/v1/transit/encrypt/bench-aes', token, encBody);
    const bareReq = buildRequest('/', token, encBody);
    const macReq = buildRequest('/v1/transit/hmac/bench-mac', token, macBody);
    const encBatchReq = buildRequest('/v1/transit/encrypt/bench-aes', token, encBatch);
    const macBatchReq = buildRequest('/v1/transit/hmac/bench-mac', token, macBatch);
    const encItems = Array.from({ length: BATCH }, () => ({ data: kib }));
    const macItems = Array.from({ length: BATCH }, () => small);

    // Warm the daemon (JIT, first key use, the token check) so the first row does not pay for it.
    await measurePipelined(1, CONCURRENT, () => raw.request(encReq));
    await measurePipelined(1, CONCURRENT, () => rawBare.request(bareReq));
    await measurePipelined(1, CONCURRENT, () => client.encrypt('bench-aes', kib));
    if (QUICK) {
      // BENCH_QUICK=1: the single-encrypt rows alone, to profile and to try a change (nothing is written).
      const E = 'transit encrypt 1 KiB';
      const check = JSON.parse((await raw.request(encReq)).body.toString()) as { data: { ciphertext?: string } };
      if (check.data.ciphertext?.startsWith('vault:v1:') !== true) throw new Error(`unexpected reply ${JSON.stringify(check)}`);
      mark();
      add('HTTP round trip (floor)', `bare node:http server, no work, ${CONCURRENT} concurrent`, await measurePipelined(SECONDS, CONCURRENT, () => rawBare.request(bareReq)));
      mark();
      add(E, 'HTTP node:http, 1 at a time', await measureLoop(SECONDS, () => raw.request(encReq)));
      mark();
      add(E, `HTTP node:http, ${CONCURRENT} concurrent`, await measurePipelined(SECONDS, CONCURRENT, () => raw.request(encReq)));
      return;
    }
    const F = 'HTTP round trip (floor)';
    mark();
    add(F, 'bare node:http server, no work, 1 at a time', await measureLoop(SECONDS, () => rawBare.request(bareReq)));
    mark();
    add(F, `bare node:http server, no work, ${CONCURRENT} concurrent`, await measurePipelined(SECONDS, CONCURRENT, () => rawBare.request(bareReq)));
    const E = 'transit encrypt 1 KiB';
    mark();
    add(E, 'native protocol, 1 in flight', await measureLoop(SECONDS, () => client.encrypt('bench-aes', kib)));
    mark();
    add(E, 'HTTP node:http, 1 at a time', await measureLoop(SECONDS, () => raw.request(encReq)));
    mark();
    add(E, `native protocol, ${CONCURRENT} in flight`, await measurePipelined(SECONDS, CONCURRENT, () => client.encrypt('bench-aes', kib)));
    mark();
    add(E, `HTTP node:http, ${CONCURRENT} concurrent`, await measurePipelined(SECONDS, CONCURRENT, () => raw.request(encReq)));
    mark();
    add(E, `native protocol, batches of ${BATCH} (items/s)`, perItem(await measureLoop(SECONDS, () => client.encryptBatch('bench-aes', encItems)), BATCH), BATCH);
    mark();
    add(E, `HTTP node:http, batch_input of ${BATCH} (items/s)`, perItem(await measureLoop(SECONDS, () => raw.request(encBatchReq)), BATCH), BATCH);
    const M = 'transit hmac 64 B';
    mark();
    add(M, 'native protocol, 1 in flight', await measureLoop(SECONDS, () => client.mac('bench-mac', small)));
    mark();
    add(M, 'HTTP node:http, 1 at a time', await measureLoop(SECONDS, () => raw.request(macReq)));
    mark();
    add(M, `native protocol, ${CONCURRENT} in flight`, await measurePipelined(SECONDS, CONCURRENT, () => client.mac('bench-mac', small)));
    mark();
    add(M, `HTTP node:http, ${CONCURRENT} concurrent`, await measurePipelined(SECONDS, CONCURRENT, () => raw.request(macReq)));
    mark();
    add(M, `native protocol, batches of ${BATCH} (items/s)`, perItem(await measureLoop(SECONDS, () => client.macBatch('bench-mac', macItems)), BATCH), BATCH);
    mark();
    add(M, `HTTP node:http, batch_input of ${BATCH} (items/s)`, perItem(await measureLoop(SECONDS, () => raw.request(macBatchReq)), BATCH), BATCH);

    const D = 'transit datakey/wrapped';
    const dkReq = buildRequest('/v1/transit/datakey/wrapped/bench-kek', token, JSON.stringify({ bits: 256 }));
    mark();
    add(D, 'native protocol (DATAKEY_GENERATE), 1 in flight', await measureLoop(SECONDS, () => client.dataKeys.generate({ kek: 'bench-kek' })));
    mark();
    add(D, 'HTTP node:http, 1 at a time', await measureLoop(SECONDS, () => raw.request(dkReq)));
    mark();
    add(D, `native protocol (DATAKEY_GENERATE), ${CONCURRENT} in flight`, await measurePipelined(SECONDS, CONCURRENT, () => client.dataKeys.generate({ kek: 'bench-kek' })));
    mark();
    add(D, `HTTP node:http, ${CONCURRENT} concurrent`, await measurePipelined(SECONDS, CONCURRENT, () => raw.request(dkReq)));

    // node:http against fastify, the same handler, each in a daemon process of its own (loading
    // fastify slows a node:http server in the same process): interleaved rounds so drift in the
    // machine's load hits both alike.
    const other = await startChild('fastify');
    stops.push(other.stop);
    await post(new Agent({ keepAlive: false }), other.started.port, other.started.token, '/v1/transit/keys/bench-aes', JSON.stringify({ type: 'aes256-gcm96' }));
    const fastify = await RawHttpPool.open(other.started.port, CONCURRENT);
    pools.push(fastify);
    const fastReq = buildRequest('/v1/transit/encrypt/bench-aes', other.started.token, encBody);
    const rounds: Versus = { node: { one: [], many: [], cpu: [] }, fastify: { one: [], many: [], cpu: [] } };
    const roundSeconds = Math.max(0.5, SECONDS / 2);
    const sides = [['node', raw, encReq, pid], ['fastify', fastify, fastReq, other.pid]] as const;
    for (const [, pool, req] of sides) await measurePipelined(0.2, CONCURRENT, () => pool.request(req));
    for (let i = 0; i < ROUNDS; i++) {
      for (const [which, pool, req, sidePid] of sides) {
        const cpu0 = cpuSeconds(sidePid);
        const one = await measureLoop(roundSeconds, () => pool.request(req));
        const many = await measurePipelined(roundSeconds, CONCURRENT, () => pool.request(req));
        rounds[which].one.push(one.opsPerSec);
        rounds[which].many.push(many.opsPerSec);
        rounds[which].cpu.push(((cpuSeconds(sidePid) - cpu0) * 1e6) / (one.ops + many.ops));
      }
    }
    console.log('node:http vs fastify (median of', ROUNDS, 'interleaved rounds):', JSON.stringify(rounds));
    await client.close();
    writeFileSync(OUT, render(rows, rounds, loadStart));
    console.log(`wrote ${OUT}`);
  } finally {
    for (const pool of pools) pool.close();
    for (const s of stops) await s();
    await stop();
  }
}

type Series = { one: number[]; many: number[]; cpu: number[] };
type Versus = Record<'node' | 'fastify', Series>;

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** The issue's target, ≥ 10,000 single encrypts/s over HTTP, against this run: throughput, and the daemon CPU that decides it on a quiet machine. */
function targetLine(rows: Row[]): string {
  const enc = rows.filter((r) => r.workload === 'transit encrypt 1 KiB' && r.mode.startsWith('HTTP') && r.items === undefined);
  const best = enc.reduce((a, b) => (b.r.opsPerSec > a.r.opsPerSec ? b : a));
  const cheapest = Math.min(...enc.map((r) => r.cpuUs));
  const floor = rows.filter((r) => r.workload.startsWith('HTTP round trip')).reduce((a, b) => (b.r.opsPerSec > a.r.opsPerSec ? b : a));
  const met = best.r.opsPerSec >= 10_000;
  return `Target: at least 10,000 single transit encrypts/s over HTTP, which on one core means at most 100 µs of daemon CPU per request. This run: ${fmtOps(best.r.opsPerSec)}/s (${best.mode}) — ${met ? 'met' : 'not met'}; the daemon spent ${cheapest.toFixed(1)} µs of CPU per request at best, about ${fmtOps(1e6 / cheapest)}/s of one core. The bare node:http server, doing no work, reached ${fmtOps(floor.r.opsPerSec)}/s at ${floor.cpuUs.toFixed(1)} µs per request in the same run.`;
}

/** median (min–max) of a series. */
function spread(xs: readonly number[], fmt: (x: number) => string): string {
  return `${fmt(median(xs))} (${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))})`;
}

function render(rows: Row[], v: Versus, loadStart: number[]): string {
  const us = (x: number): string => `${x.toFixed(1)} µs`;
  const cpu = { node: median(v.node.cpu), fastify: median(v.fastify.cpu) };
  const one = { node: median(v.node.one), fastify: median(v.fastify.one) };
  const many = { node: median(v.node.many), fastify: median(v.fastify.many) };
  // Two series differ beyond noise when their ranges do not overlap.
  const apart = (a: readonly number[], b: readonly number[]): boolean => Math.max(...a) < Math.min(...b) || Math.max(...b) < Math.min(...a);
  const cpuApart = apart(v.node.cpu, v.fastify.cpu);
  const verdict = cpu.node <= cpu.fastify
    ? `node:http took ${((1 - cpu.node / cpu.fastify) * 100).toFixed(0)}% less daemon CPU per request than fastify on the same handler${cpuApart ? ', beyond the spread of the rounds' : ' (the rounds\' ranges overlap: within noise)'}, and throughput ${apart(v.node.many, v.fastify.many) ? (many.node > many.fastify ? 'was higher too' : 'was lower, which on a shared machine says more about the neighbours') : 'was within noise'}. \`cryptod serve --http\` uses node:http: fastify runs on node:http and adds its routing, hooks and reply layer to every request, and the LIST method needs the socket and llhttp\'s refusal (src/http/list-takeover.ts), which node:http gives directly.`
    : `fastify took ${((1 - cpu.fastify / cpu.node) * 100).toFixed(0)}% less daemon CPU per request than node:http in this run${cpuApart ? '' : ' (the rounds\' ranges overlap: within noise)'}. \`cryptod serve --http\` stays on node:http, under which fastify itself runs: a lower figure for fastify means this run\'s noise, or a cost in the node:http door to find (src/http/vault-front-door.ts).`;
  const lines = [
    '# Vault-compatible HTTP API: benchmarks',
    '',
    `Generated by \`node --import tsx bench/vault-http.ts\` on ${new Date().toISOString().slice(0, 10)}, ${cpus().length} CPU(s) (${cpus()[0]?.model ?? 'unknown'}), Node.js ${process.version}; load average ${loadStart.map((l) => l.toFixed(1)).join(' ')} at the start of the run, ${loadavg().map((l) => l.toFixed(1)).join(' ')} at the end.`,
    'The daemon runs in its own process; the load generator (this process) shares the same cores. Its HTTP client is raw keep-alive TCP sockets writing pre-built requests and reading each reply by its status line and Content-Length (bench/raw-http-client.ts), one request at a time per connection, so that the client takes as little of the two cores as it can; the native rows use the cryptod client library.',
    'Managed keys: AES-256-GCM (`aes256-gcm96`), HMAC-SHA-256 (`hmac`) and a KEK (`aes256-kwp`, local provider) for the data keys, created over HTTP by a token client; every request is authenticated with its token. A generated data key is also put into the data-key cache, which is part of its cost.',
    '',
    'The last column is the daemon process\'s CPU time per operation (per item for batches; /proc, 10 ms ticks, the 0.3 s warm-up counted too, so an upper bound): what a request costs, whatever the neighbours did to the throughput. One core gives about 1,000,000 / that many operations per second: 10,000 requests/s on one core is 100 µs each.',
    '',
    '| workload | mode | ops/s | p50 latency | p99 latency | daemon CPU per op |',
    '|---|---|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.workload} | ${r.mode} | ${fmtOps(r.r.opsPerSec)} | ${r.items === undefined ? fmtUs(r.r.p50) : `${fmtUs(r.r.p50)} per batch`} | ${r.items === undefined ? fmtUs(r.r.p99) : `${fmtUs(r.r.p99)} per batch`} | ${r.cpuUs.toFixed(1)} µs |`),
    '',
    '## node:http or fastify',
    '',
    `The same handler (src/http/vault-api.ts) on both, each in a daemon process of its own (fastify loaded into the same process slowed the node:http server by about 20 %), transit encrypt 1 KiB, the same raw client, ${ROUNDS} interleaved rounds (node:http, fastify, node:http, …); median (lowest–highest):`,
    '',
    '| server | ops/s, 1 at a time | ops/s, 64 concurrent | daemon CPU per request |',
    '|---|---:|---:|---:|',
    `| node:http | ${spread(v.node.one, fmtOps)} | ${spread(v.node.many, fmtOps)} | ${spread(v.node.cpu, us)} |`,
    `| fastify | ${spread(v.fastify.one, fmtOps)} | ${spread(v.fastify.many, fmtOps)} | ${spread(v.fastify.cpu, us)} |`,
    `| node:http / fastify (medians) | ${(one.node / one.fastify).toFixed(2)}× | ${(many.node / many.fastify).toFixed(2)}× | ${(cpu.node / cpu.fastify).toFixed(2)}× |`,
    '',
    verdict,
    '',
    targetLine(rows),
    '',
    'HashiCorp publishes about 1.8k requests/s per transit operation for Vault on a local server; that figure is from other hardware, not measured here, and is no ratio to the rows above.',
    '',
  ];
  return lines.join('\n');
}

await main();
