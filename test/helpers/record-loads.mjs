// Preload for a child process: records every module URL the process resolves,
// so a test can say what importing an entry point loads. Prints them as one
// JSON line on exit. Used by test/entry-points.test.ts.
import { register } from 'node:module';
import { MessageChannel } from 'node:worker_threads';

const { port1, port2 } = new MessageChannel();
const loaded = new Set();
port1.on('message', (url) => loaded.add(url));
port1.unref();
register(
  'data:text/javascript,' +
    encodeURIComponent(`
      let port;
      export function initialize(data) { port = data.port; }
      export async function resolve(specifier, context, next) {
        const r = await next(specifier, context);
        port.postMessage(r.url);
        return r;
      }`),
  { data: { port: port2 }, transferList: [port2] },
);
process.on('exit', () => {
  process.stdout.write(JSON.stringify([...loaded]) + '\n');
});
