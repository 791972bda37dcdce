/**
 * Progress of a long CLI command (backups of many keys, `kek rewrap-all`):
 * one line on stderr, redrawn in place, only when stderr is a terminal. Piped
 * or redirected, nothing is written, so scripts and logs see only results.
 *
 * @example
 *   const p = progress('backing up', names.length);
 *   for (const n of names) { p.step(n); await backup(n); }
 *   p.done();
 */

/** Where progress is drawn: process.stderr, or any stream that says whether it is a terminal. */
export interface ProgressStream {
  readonly isTTY?: boolean;
  readonly columns?: number;
  write(chunk: string): boolean;
}

export interface Progress {
  /** Item `label` starts (the count shown is how many have started). */
  step(label: string): void;
  /** Erase the line so that other output can be written; the next step draws it again. */
  clear(): void;
  /** Erase the line (the command is finished). */
  done(): void;
}

const QUIET: Progress = { step() {}, clear() {}, done() {} };

/** A progress line for `total` items, or one that does nothing off a terminal. */
export function progress(what: string, total: number, stream: ProgressStream = process.stderr): Progress {
  if (stream.isTTY !== true) return QUIET;
  let started = 0;
  let drawn = false;
  return {
    step(label) {
      started++;
      const width = Math.max(20, (stream.columns ?? 80) - 1);
      const line = `${what} ${started}/${total}: ${label}`;
      // \r back to the start, \x1b[K erase the rest of the previous line (ECMA-48 EL).
      stream.write(`\r${line.length > width ? `${line.slice(0, width - 1)}…` : line}\x1b[K`);
      drawn = true;
    },
    clear() {
      if (drawn) stream.write('\r\x1b[K');
      drawn = false;
    },
    done() {
      this.clear();
    },
  };
}
