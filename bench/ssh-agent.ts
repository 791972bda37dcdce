/**
 * ssh-agent as a benchmark alternative: keys in another process behind a
 * local Unix socket, like cryptod. Starts a private OpenSSH agent on a
 * temporary socket with a fresh Ed25519 key, and speaks the agent protocol
 * itself (draft-miller-ssh-agent) so the measured path is socket + agent,
 * with no ssh-add process per signature.
 *
 *   frame   = uint32 length ‖ byte type ‖ payload          (§3)
 *   string  = uint32 length ‖ bytes                         (RFC 4251 §5)
 *
 *   SSH_AGENTC_REQUEST_IDENTITIES (11)  →  SSH_AGENT_IDENTITIES_ANSWER (12)
 *       uint32 nkeys, { string key_blob, string comment } × nkeys          (§4.4)
 *   SSH_AGENTC_SIGN_REQUEST (13) string key_blob, string data, uint32 flags
 *                                        →  SSH_AGENT_SIGN_RESPONSE (14) string signature   (§4.5)
 *   any request                          →  SSH_AGENT_FAILURE (5)
 *
 * The agent answers the requests of one connection in order, so pipelined
 * requests resolve from a FIFO of pending promises.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createPublicKey, randomBytes, verify, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findOnPath, missing, run, runOk, stopChild, type Skip } from './tools.js';

const SSH_AGENT_FAILURE = 5;
const SSH_AGENTC_REQUEST_IDENTITIES = 11;
const SSH_AGENT_IDENTITIES_ANSWER = 12;
const SSH_AGENTC_SIGN_REQUEST = 13;
const SSH_AGENT_SIGN_RESPONSE = 14;

/** A running private ssh-agent holding one Ed25519 key. */
export interface SshAgent {
  /** e.g. "OpenSSH 9.2p1". */
  version: string;
  /** The commands run to set the agent up, for the report. */
  commands: string[];
  /** Ed25519 signature (64 bytes) of `data` by the agent. */
  sign(data: Buffer): Promise<Buffer>;
  /** Closes the connection, kills the agent and removes the temporary directory. */
  close(): Promise<void>;
}

/** Why ssh-agent rows cannot run on this machine, or undefined if they can. */
export function sshAgentUnavailable(): Skip | undefined {
  for (const tool of ['ssh-agent', 'ssh-add', 'ssh-keygen']) if (findOnPath(tool) === undefined) return missing(tool, 'openssh-client');
  return undefined;
}

/**
 * Start ssh-agent with a fresh key and connect to it. Everything it made is
 * removed again if any step fails.
 */
export async function startSshAgent(): Promise<SshAgent> {
  const dir = mkdtempSync(join(tmpdir(), 'cdb-ssh-'));
  const socket = join(dir, 'agent.sock');
  const keyFile = join(dir, 'id_ed25519');
  const env = { ...process.env, SSH_AUTH_SOCK: socket };
  let child: ChildProcess | undefined;
  let client: AgentClient | undefined;
  const cleanup = async (): Promise<void> => {
    client?.close();
    await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const commands = [
      `ssh-keygen -q -t ed25519 -N '' -C cryptod-bench -f ${keyFile}`,
      `ssh-agent -D -a ${socket}`,
      `SSH_AUTH_SOCK=${socket} ssh-add ${keyFile}`,
    ];
    await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'cryptod-bench', '-f', keyFile]);
    child = spawn('ssh-agent', ['-D', '-a', socket], { stdio: ['ignore', 'ignore', 'pipe'] });
    let agentStderr = '';
    child.once('error', (err) => (agentStderr += `${err.message}\n`));
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (agentStderr += s));
    client = await connectWhenListening(socket, child, () => agentStderr);
    await runOk('ssh-add', ['-q', keyFile], env);

    const blob = await client.ed25519Identity(readFileSync(`${keyFile}.pub`, 'utf8'));
    const publicKey = ed25519FromBlob(blob);
    const c = client;
    const sign = async (data: Buffer): Promise<Buffer> => parseEd25519Signature(await c.sign(blob, data));

    // The bench must time real signatures: check one against the public key.
    const probe = randomBytes(64);
    if (!verify(null, probe, publicKey, await sign(probe))) throw new Error('ssh-agent returned an Ed25519 signature that does not verify');

    return { version: await opensshVersion(), commands, sign, close: cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** "OpenSSH 9.2p1" from `ssh -V` (which prints on stderr); ssh-agent itself has no version flag. */
async function opensshVersion(): Promise<string> {
  const ssh = findOnPath('ssh');
  const r = ssh === undefined ? undefined : await run(ssh, ['-V']).catch(() => undefined);
  const m = /OpenSSH_([^\s,]+)/.exec(`${r?.stderr ?? ''}${r?.stdout ?? ''}`);
  return m ? `OpenSSH ${m[1]}` : 'OpenSSH, version unknown';
}

async function connectWhenListening(socket: string, child: ChildProcess, stderr: () => string): Promise<AgentClient> {
  const deadline = Date.now() + 5000;
  for (;;) {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) throw new Error(`ssh-agent did not start or exited early: ${stderr().trim()}`);
    try {
      return await AgentClient.connect(socket);
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`ssh-agent did not listen on ${socket}: ${stderr().trim()}`, { cause: err });
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** Reads RFC 4251 strings and integers from a buffer, failing on truncation. */
class Reader {
  #off = 0;
  constructor(readonly buf: Buffer) {}
  uint32(): number {
    if (this.#off + 4 > this.buf.length) throw new Error('ssh-agent: truncated message');
    const v = this.buf.readUInt32BE(this.#off);
    this.#off += 4;
    return v;
  }
  string(): Buffer {
    const n = this.uint32();
    if (this.#off + n > this.buf.length) throw new Error('ssh-agent: truncated string');
    const s = this.buf.subarray(this.#off, this.#off + n);
    this.#off += n;
    return s;
  }
}

function sshString(b: Buffer | string): Buffer {
  const body = typeof b === 'string' ? Buffer.from(b) : b;
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

/** key blob = string "ssh-ed25519" ‖ string pk (32 bytes)  (RFC 8709 §4) */
function ed25519FromBlob(blob: Buffer): KeyObject {
  const r = new Reader(blob);
  const type = r.string().toString();
  const pk = r.string();
  if (type !== 'ssh-ed25519' || pk.length !== 32) throw new Error(`ssh-agent: expected an ssh-ed25519 key blob, got ${type}`);
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: pk.toString('base64url') }, format: 'jwk' });
}

/** signature blob = string "ssh-ed25519" ‖ string sig (64 bytes)  (RFC 8709 §6) */
function parseEd25519Signature(blob: Buffer): Buffer {
  const r = new Reader(blob);
  const type = r.string().toString();
  const sig = r.string();
  if (type !== 'ssh-ed25519' || sig.length !== 64) throw new Error(`ssh-agent: expected an ssh-ed25519 signature, got ${type} of ${sig.length} bytes`);
  return sig;
}

interface Pending {
  resolve(frame: Buffer): void;
  reject(err: Error): void;
}

/** The client side of the agent protocol on one connection. */
class AgentClient {
  readonly #sock: Socket;
  readonly #pending: Pending[] = [];
  #buf: Buffer = Buffer.alloc(0);
  #error: Error | undefined;

  private constructor(sock: Socket) {
    this.#sock = sock;
    sock.on('data', (chunk: Buffer) => this.#onData(chunk));
    sock.on('error', (err) => this.#fail(err));
    sock.on('close', () => this.#fail(new Error('ssh-agent closed the connection')));
  }

  static connect(path: string): Promise<AgentClient> {
    return new Promise((resolve, reject) => {
      const sock = netConnect(path);
      sock.once('error', reject);
      sock.once('connect', () => {
        sock.off('error', reject);
        sock.setNoDelay?.(true);
        resolve(new AgentClient(sock));
      });
    });
  }

  /** The agent's key blob that matches `pubFile` (an OpenSSH .pub line). */
  async ed25519Identity(pubFile: string): Promise<Buffer> {
    const want = Buffer.from(pubFile.trim().split(/\s+/)[1] ?? '', 'base64');
    const reply = await this.#request(SSH_AGENTC_REQUEST_IDENTITIES, Buffer.alloc(0));
    if (reply[0] !== SSH_AGENT_IDENTITIES_ANSWER) throw new Error(`ssh-agent: expected IDENTITIES_ANSWER, got message ${reply[0]}`);
    const r = new Reader(reply.subarray(1));
    const n = r.uint32();
    for (let i = 0; i < n; i++) {
      const blob = r.string();
      r.string(); // comment
      if (blob.equals(want)) return Buffer.from(blob);
    }
    throw new Error(`ssh-agent holds ${n} key(s), none of them the bench key`);
  }

  /** The agent's signature blob for `data`. */
  async sign(keyBlob: Buffer, data: Buffer): Promise<Buffer> {
    const flags = Buffer.alloc(4);
    const reply = await this.#request(SSH_AGENTC_SIGN_REQUEST, Buffer.concat([sshString(keyBlob), sshString(data), flags]));
    if (reply[0] === SSH_AGENT_FAILURE) throw new Error('ssh-agent: SSH_AGENT_FAILURE for a sign request');
    if (reply[0] !== SSH_AGENT_SIGN_RESPONSE) throw new Error(`ssh-agent: expected SIGN_RESPONSE, got message ${reply[0]}`);
    return new Reader(reply.subarray(1)).string();
  }

  close(): void {
    this.#sock.destroy();
  }

  #request(type: number, payload: Buffer): Promise<Buffer> {
    if (this.#error !== undefined) return Promise.reject(this.#error);
    const head = Buffer.allocUnsafe(5);
    head.writeUInt32BE(payload.length + 1);
    head[4] = type;
    return new Promise((resolve, reject) => {
      this.#pending.push({ resolve, reject });
      this.#sock.write(payload.length === 0 ? head : Buffer.concat([head, payload]));
    });
  }

  #onData(chunk: Buffer): void {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    let off = 0;
    while (this.#buf.length - off >= 4) {
      const len = this.#buf.readUInt32BE(off);
      if (this.#buf.length - off - 4 < len) break;
      const frame = this.#buf.subarray(off + 4, off + 4 + len);
      off += 4 + len;
      const p = this.#pending.shift();
      if (p === undefined) {
        this.#fail(new Error('ssh-agent: reply without a request'));
        return;
      }
      p.resolve(frame);
    }
    this.#buf = this.#buf.subarray(off);
  }

  #fail(err: Error): void {
    this.#error ??= err;
    for (const p of this.#pending.splice(0)) p.reject(err);
  }
}
