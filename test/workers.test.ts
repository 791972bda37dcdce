/**
 * `cryptod serve --workers 2` (src/cli/workers.ts), started as an operator
 * would: clients spread across both workers (each STATUS reply names the pid
 * of the worker holding that connection), STATUS covers both, data nodes stay
 * in their worker, RELOAD and SIGHUP reach both, managed keys are coherent
 * across them, the audit log gets whole lines from both, a killed worker is
 * replaced (its clients' nodes gone, the other's untouched), and SIGTERM
 * drains every worker and removes the socket.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { connect, type Client } from '../src/client/client.js';
import { logLines, runCli, startCliDaemon, type CliDaemon } from './helpers/cli-daemon.js';
import { eventually } from './helpers/daemon.js';

const te = new TextEncoder();
const cleanups: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

interface Line {
  msg?: string;
  pid?: number;
  worker?: number;
  workers?: number[];
  trigger?: string;
}

const lines = (d: CliDaemon): Line[] => logLines<Line>(d);

interface Status {
  daemon: { pid: number };
  connections: number;
  nodes: number;
  clients: Array<{ clientId: string; connections: number; nodes: number }>;
  /** `answered: false` rows (a worker that did not answer in time) have no counts; the tests that read counts have every worker answering. */
  workers: Array<{ pid: number; answered: boolean; connections: number; nodes: number }>;
}

const statusOf = async (c: Client): Promise<Status> => (await c.status()) as unknown as Status;

test('--workers 2: spread, status, nodes per worker, reload, coherence, replacement, shutdown', { timeout: 180_000 }, async () => {
  let config = '';
  const d = await startCliDaemon((dir) => {
    config = join(dir, 'cryptod.yaml');
    writeFileSync(config, 'keys:\n  from-file: { type: hmac-sha256 }\n');
    return ['--workers', '2', '--config', config, '--audit-log', join(dir, 'audit.log')];
  }, 90_000);
  cleanups.push(() => d.stop());
  await eventually(() => lines(d).some((l) => l.msg === 'workers started'), 90_000, 'both workers to start');
  const started = lines(d).find((l) => l.msg === 'workers started')!.workers!;
  assert.equal(started.length, 2);

  // Clients spread across both workers (the primary hands connections out round robin).
  const clients: Client[] = [];
  const home = new Map<Client, number>();
  for (let i = 0; i < 6; i++) {
    const c = await connect({ socket: d.socketPath, clientName: `c${i}` });
    clients.push(c);
    home.set(c, (await statusOf(c)).daemon.pid);
  }
  cleanups.push(async () => {
    for (const c of clients) c.connection.destroy();
  });
  assert.deepEqual(new Set(home.values()), new Set(started), 'connections land on both workers');

  // Data nodes stay in the worker that holds the connection; STATUS sums and lists both.
  const [a, b] = started as [number, number];
  const onA = clients.filter((c) => home.get(c) === a);
  const onB = clients.filter((c) => home.get(c) === b);
  await onA[0]!.subtle.generateKey({ name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  await onA[0]!.subtle.generateKey({ name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  await onB[0]!.subtle.generateKey({ name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const s = await statusOf(onB[1] ?? onB[0]!);
  assert.deepEqual(s.workers.map((w) => w.pid), [...started].sort((x, y) => x - y));
  const byPid = new Map(s.workers.map((w) => [w.pid, w]));
  assert.equal(byPid.get(a)!.nodes, 2);
  assert.equal(byPid.get(b)!.nodes, 1);
  assert.equal(byPid.get(a)!.connections, onA.length);
  assert.equal(byPid.get(b)!.connections, onB.length);
  assert.equal(s.nodes, 3, 'the total covers both workers');
  assert.equal(s.connections, clients.length);
  // Peer credentials work in the workers: clients are named by the kernel's uid.
  assert.ok(s.clients.every((c) => c.clientId.startsWith(`uid:${process.getuid!()}/`)), JSON.stringify(s.clients));

  // Managed keys: made through one worker, used through the other on its next operation.
  await onA[0]!.keys.create('shared', { type: 'aes256-gcm' });
  const ct = await onB[0]!.encrypt('shared', te.encode('across workers'));
  assert.equal(Buffer.from(await onA[0]!.decrypt('shared', ct)).toString(), 'across workers');
  assert.equal(await onB[0]!.keys.rotate('shared'), 2);
  assert.equal((await onA[0]!.keys.describe('shared')).currentVersion, 2);
  assert.ok((await onA[0]!.mac('from-file', te.encode('m'))).length > 0, 'the file\'s keys were applied');

  // RELOAD on one connection reaches both workers; so does SIGHUP on the primary.
  writeFileSync(config, 'keys:\n  from-file: { type: hmac-sha256 }\n  added: { type: hmac-sha256 }\n');
  await onA[0]!.reload();
  await eventually(() => new Set(lines(d).filter((l) => l.msg === 'configuration reloaded' && l.trigger === 'RELOAD').map((l) => l.worker)).size === 2, 20_000, 'RELOAD in both workers');
  d.proc.kill('SIGHUP');
  await eventually(() => new Set(lines(d).filter((l) => l.msg === 'configuration reloaded' && l.trigger === 'SIGHUP').map((l) => l.worker)).size === 2, 20_000, 'SIGHUP in both workers');
  assert.deepEqual(new Set(lines(d).filter((l) => l.msg === 'configuration reloaded' && l.trigger === 'SIGHUP').map((l) => l.worker)), new Set(started));
  assert.ok((await onB[0]!.mac('added', te.encode('m'))).length > 0);

  // The audit log: whole lines from both workers, each numbered per worker.
  const audit = readFileSync(join(d.dir, 'audit.log'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as { worker: number; seq: number; event: string });
  assert.ok(audit.some((e) => e.event === 'key.created' && e.worker === a));
  assert.ok(audit.some((e) => e.event === 'key.rotated' && e.worker === b));
  for (const pid of started) {
    const seqs = audit.filter((e) => e.worker === pid).map((e) => e.seq);
    assert.deepEqual(seqs, seqs.map((_, i) => i + 1), `worker ${pid} numbers its own lines without gaps`);
  }

  // A killed worker: its clients are cut off, the other's keep their nodes, a new worker takes its place.
  process.kill(a, 'SIGKILL');
  await eventually(() => lines(d).some((l) => l.msg === 'worker replaced'), 90_000, 'the killed worker to be replaced');
  const replacement = lines(d).find((l) => l.msg === 'worker replaced')!.pid!;
  assert.ok(replacement !== a && replacement !== b);
  await assert.rejects(onA[0]!.ping());
  const after = await statusOf(onB[0]!);
  assert.deepEqual(new Set(after.workers.map((w) => w.pid)), new Set([b, replacement]));
  assert.equal(after.nodes, 1, 'the killed worker\'s nodes are gone, the survivor\'s stay');
  const fresh = await connect({ socket: d.socketPath, clientName: 'after' });
  clients.push(fresh);
  assert.equal(Buffer.from(await fresh.decrypt('shared', ct)).toString(), 'across workers');
  for (let i = 0; i < 4; i++) {
    const c = await connect({ socket: d.socketPath, clientName: `late${i}` });
    clients.push(c);
    home.set(c, (await statusOf(c)).daemon.pid);
  }
  assert.ok([...home.values()].includes(replacement), 'the replacement serves connections');

  // SIGTERM drains every worker and the socket file goes with them.
  for (const c of clients) c.connection.destroy();
  assert.equal(await d.stop(true), 0);
  assert.equal(existsSync(d.socketPath), false);
  assert.ok(lines(d).filter((l) => l.msg === 'stopped').length >= 2);
});

test('--workers refuses what it cannot do, saying what to give instead', { timeout: 60_000 }, async () => {
  const bad = await runCli(['serve', '--workers', '0']);
  assert.equal(bad.code, 2, bad.stderr.toString());
  assert.match(bad.stderr.toString(), /--workers' expects a number from 1 to 256 or 'auto', got '0'/);
  const stdout = await runCli(['serve', '--workers', '2', '--audit-log', '-', '--data-dir', '/nonexistent-cd-workers/x']);
  assert.equal(stdout.code, 1);
  assert.match(stdout.stderr.toString(), /cannot be shared by several workers.*give a file/);
});

test('a worker that keeps dying young is replaced with doubling backoff', { timeout: 240_000 }, async () => {
  const d = await startCliDaemon(['--workers', '2'], 90_000);
  cleanups.push(() => d.stop());
  await eventually(() => lines(d).some((l) => l.msg === 'workers started'), 90_000, 'both workers to start');
  let victim = lines(d).find((l) => l.msg === 'workers started')!.workers![0]!;
  const delays: number[] = [];
  for (let i = 0; i < 3; i++) {
    const replaced = lines(d).filter((l) => l.msg === 'worker replaced').length;
    process.kill(victim, 'SIGKILL');
    await eventually(() => lines(d).filter((l) => l.msg === 'worker replaced').length > replaced, 90_000, `replacement ${i + 1}`);
    const died = lines(d).filter((l) => l.msg === 'worker died; its connections and their data nodes are gone; replacing it') as Array<Line & { replaceInMs: number }>;
    delays.push(died[died.length - 1]!.replaceInMs);
    victim = lines(d).filter((l) => l.msg === 'worker replaced').at(-1)!.pid!;
  }
  // The first victim may have lived 10 s (then it is replaced at once); its replacements died young.
  assert.ok(delays[1]! >= 100, `delays ${delays.join(', ')}`);
  assert.equal(delays[2], delays[1]! * 2, `delays ${delays.join(', ')}`);
  const c = await connect({ socket: d.socketPath, clientName: 'still' });
  assert.equal(((await c.status()) as unknown as Status).workers.length, 2);
  await c.close();
  // `cryptod status` (the table) names both workers.
  const table = await runCli(['status', '--socket', d.socketPath]);
  assert.equal(table.code, 0, table.stderr.toString());
  assert.match(table.stdout.toString(), /^2 worker\(s\), totals above: pid \d+ \d+ conn \d+ nodes, pid \d+ \d+ conn \d+ nodes$/m);
});

interface WorkerReloadRow {
  pid: number;
  outcome: 'reloaded' | 'failed' | 'no answer';
  error?: { code: string; message: string };
}

test('workers: from the file; STATUS and RELOAD name a worker that did not answer, and a worker whose reload failed', { timeout: 180_000 }, async () => {
  let config = '';
  const d = await startCliDaemon((dir) => {
    config = join(dir, 'cryptod.yaml');
    writeFileSync(config, 'workers: 2\nkeys:\n  first: { type: hmac-sha256 }\n');
    return ['--config', config];
  }, 90_000);
  cleanups.push(() => d.stop());
  await eventually(() => lines(d).some((l) => l.msg === 'workers started'), 90_000, 'both workers (workers: 2 in the file) to start');
  const [a, b] = lines(d).find((l) => l.msg === 'workers started')!.workers! as [number, number];
  assert.ok(b !== undefined, 'the file asked for two workers');

  // A connection on worker a (the primary hands them out round robin).
  const clients: Client[] = [];
  cleanups.push(async () => {
    for (const c of clients) c.connection.destroy();
  });
  let onA: Client | null = null;
  for (let i = 0; i < 6 && onA === null; i++) {
    const c = await connect({ socket: d.socketPath, clientName: `r${i}` });
    clients.push(c);
    if ((await statusOf(c)).daemon.pid === a) onA = c;
  }
  assert.ok(onA !== null, 'a connection landed on the first worker');
  const reloadRows = async (): Promise<WorkerReloadRow[]> => ((await onA!.reload()) as unknown as { workers: WorkerReloadRow[] }).workers;

  // Both answer: every worker's outcome is in the reply.
  assert.deepEqual(await reloadRows(), [a, b].sort((x, y) => x - y).map((pid) => ({ pid, outcome: 'reloaded' })));
  const cli = await runCli(['reload', '--socket', d.socketPath]);
  assert.equal(cli.code, 0, cli.stderr.toString());
  assert.match(cli.stdout.toString(), new RegExp(`^  workers: {3}pid ${Math.min(a, b)} reloaded, pid ${Math.max(a, b)} reloaded$`, 'm'));

  process.kill(b, 'SIGSTOP');
  try {
    // A stopped worker is named in STATUS, with its pid, not left out.
    const s = await statusOf(onA);
    assert.deepEqual(s.workers.find((w) => w.pid === b), { pid: b, answered: false });
    assert.equal((s.workers.find((w) => w.pid === a) as { answered?: boolean } | undefined)?.answered, true);
    // And in RELOAD's reply.
    const rows = await reloadRows();
    assert.deepEqual(rows.find((r) => r.pid === b), { pid: b, outcome: 'no answer' });
    assert.equal(rows.find((r) => r.pid === a)?.outcome, 'reloaded');

    // A reload that fails in another worker: worker a reloads the file; before b
    // (still stopped) reads it, the file turns invalid; b's failure and its reason come back.
    const reloadedOnA = (): number => lines(d).filter((l) => l.msg === 'configuration reloaded' && l.worker === a).length;
    const before = reloadedOnA();
    const pending = reloadRows();
    await eventually(() => reloadedOnA() > before, 20_000, 'worker a to reload');
    writeFileSync(config, 'workers: 2\nkeys:\n  first: { type: no-such-type }\n');
    process.kill(b, 'SIGCONT');
    const failed = (await pending).find((r) => r.pid === b);
    assert.equal(failed?.outcome, 'failed', JSON.stringify(failed));
    assert.equal(failed?.error?.code, 'CRYPTOD_ERR_CONFIG');
    assert.match(failed?.error?.message ?? '', /no-such-type/);
  } finally {
    process.kill(b, 'SIGCONT');
  }
  // Once b answers again, STATUS counts it.
  assert.ok((await statusOf(onA)).workers.every((w) => (w as { answered?: boolean }).answered === true));
});

test('workers: in the file is checked as --workers is', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cd-workers-yaml-'));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'cryptod.yaml');
  writeFileSync(file, 'workers: 0\n');
  const r = await runCli(['serve', '--config', file, '--data-dir', join(dir, 'data'), '--socket', join(dir, 's.sock')]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr.toString(), /workers: expected a number from 1 to 256 or 'auto'/);
});
