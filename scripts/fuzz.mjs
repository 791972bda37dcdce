#!/usr/bin/env node
// The long fuzz run: test/fuzz.test.ts with every case count multiplied.
// Usage: node scripts/fuzz.mjs [SCALE] [SEED]   (npm run fuzz -- 50)
//   SCALE  multiplies the CI counts (40 000 decoder, 60 000 in-process chain,
//          3 000 socket cases); default 20, i.e. about 2 million cases
//   SEED   replays a run (fast-check prints the seed of a failure)
// Also read from CRYPTOD_FUZZ_SCALE / CRYPTOD_FUZZ_SEED.
import { spawnSync } from 'node:child_process';

const scale = process.argv[2] ?? process.env.CRYPTOD_FUZZ_SCALE ?? '20';
const seed = process.argv[3] ?? process.env.CRYPTOD_FUZZ_SEED;
if (!(Number(scale) > 0)) {
  console.error(`fuzz: SCALE must be a positive number, got ${scale}`);
  process.exit(2);
}
const env = { ...process.env, CRYPTOD_FUZZ_SCALE: scale };
if (seed !== undefined) env.CRYPTOD_FUZZ_SEED = seed;
const started = Date.now();
const run = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-reporter=spec', '--test-timeout=0', 'test/fuzz.test.ts'],
  { stdio: 'inherit', env },
);
console.log(`fuzz: scale ${scale}${seed === undefined ? '' : `, seed ${seed}`}, ${((Date.now() - started) / 1000).toFixed(0)} s`);
process.exit(run.status ?? 1);
