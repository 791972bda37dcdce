/**
 * The LIST rewriter (src/http/list-method.ts) follows HTTP/1.1 framing:
 * LIST at the start of every request becomes LINK, nothing else changes —
 * not "LIST " inside a Content-Length body or a chunked body, not other
 * methods — however the stream is cut into chunks.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ListMethodRewriter } from '../src/http/list-method.js';

const body = 'LIST /v1/inside HTTP/1.1\r\n\r\n';
const messages = [
  'LIST /v1/transit/keys HTTP/1.1\r\nHost: a\r\n\r\n',
  `POST /v1/transit/encrypt/k HTTP/1.1\r\nHost: a\r\ncontent-LENGTH: ${body.length}\r\nTransfer-Encodin: x\r\n\r\n${body}`,
  `PUT /x HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n${body.length.toString(16)};ext=1\r\n${body}\r\n3\r\nLIS\r\n0\r\nTrailer: LIST\r\n\r\n`,
  '\r\nLIST /v1/transit/keys?list=true HTTP/1.1\r\nX-Vault-Token: cdt_x\r\n\r\n',
  'LINK /v1/a HTTP/1.1\r\n\r\n',
  'GET /v1/sys/health HTTP/1.1\r\n\r\n',
];
const input = messages.join('');
const expected = messages.map((m) => m.replace(/^(\r\n)?LIST /, '$1LINK ')).join('');

function run(cuts: number[]): string {
  const r = new ListMethodRewriter();
  const out: Buffer[] = [];
  let at = 0;
  for (const cut of [...cuts, input.length]) {
    const chunk = Buffer.from(input.slice(at, cut), 'latin1');
    r.scan(chunk);
    out.push(chunk);
    at = cut;
  }
  return Buffer.concat(out).toString('latin1');
}

test('LIST becomes LINK at each request start only, in one chunk', () => {
  assert.equal(run([]), expected);
  assert.notEqual(expected, input);
  assert.equal(expected.split('LINK /').length - 1, 3);
});

test('the same at every single cut and in 1-byte chunks', () => {
  for (let i = 1; i < input.length; i++) assert.equal(run([i]), expected, `cut at ${i}`);
  assert.equal(run(Array.from({ length: input.length - 1 }, (_, i) => i + 1)), expected);
});

test('a malformed head stops the rewriting rather than guessing (the parser refuses the message)', () => {
  const r = new ListMethodRewriter();
  const bad = Buffer.from('POST / HTTP/1.1\r\nContent-Length: lots\r\n\r\nLIST / HTTP/1.1\r\n\r\n', 'latin1');
  r.scan(bad);
  assert.match(bad.toString('latin1'), /\r\nLIST \//);
});

/** The refusal node:http's parser gives for `bytes`, sent as TCP reads cut at `cuts` (the 'clientError' error). */
async function refusal(bytes: string, cuts: number[] = []): Promise<NodeJS.ErrnoException & { rawPacket?: Buffer; bytesParsed?: number }> {
  const { createServer } = await import('node:http');
  const { connect } = await import('node:net');
  const server = createServer((req, res) => res.end());
  try {
    return await new Promise((resolve, reject) => {
      server.on('clientError', (err: NodeJS.ErrnoException, socket: { destroy(): void }) => {
        socket.destroy();
        resolve(err);
      });
      server.listen(0, '127.0.0.1', () => {
        const s = connect((server.address() as { port: number }).port, '127.0.0.1', async () => {
          let at = 0;
          for (const cut of [...cuts, bytes.length]) {
            s.write(bytes.slice(at, cut));
            at = cut;
            await new Promise((r) => setTimeout(r, 20));
          }
        });
        s.on('error', () => undefined);
        s.on('close', () => reject(new Error('closed without a parse error')));
      });
    });
  } finally {
    server.close();
  }
}

test('refusedList: the refused LIST and what follows, with "LI" restored when an earlier read had it; other refusals are not LIST', async () => {
  const { refusedList } = await import('../src/http/list-takeover.js');
  const list = 'LIST /v1/transit/keys HTTP/1.1\r\nHost: a\r\n\r\n';
  const served = 'GET /v1/sys/health HTTP/1.1\r\nHost: a\r\n\r\n';
  assert.equal(refusedList(await refusal(list))?.toString('latin1'), list);
  assert.equal(refusedList(await refusal(served + list))?.toString('latin1'), list);
  assert.equal(refusedList(await refusal(list, [1, 2]))?.toString('latin1'), list);
  assert.equal(refusedList(await refusal(list, [2]))?.toString('latin1'), list);
  assert.equal(refusedList(await refusal('LISTEN / HTTP/1.1\r\n\r\n')), null);
  assert.equal(refusedList(await refusal('BREW / HTTP/1.1\r\n\r\n')), null);
  assert.equal(refusedList(await refusal('GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n')), null);
});
