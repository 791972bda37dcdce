/**
 * Reading the configuration file: YAML (the `yaml` package's parseDocument,
 * which keeps every node's source range) → validateConfig (config.ts) → a
 * ConfigFile, or a ConfigFileError listing every problem as
 *
 *     FILE:LINE:COL: field: message
 *
 * (the compiler convention, so editors jump to the line). All problems are
 * reported at once: an operator fixes a file in one pass, not one error per
 * restart.
 */
import { resolve } from 'node:path';
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { ConfigError } from '../protocol/errors.js';
import { readTrustedFile, readTrustedFileSync, type TrustedFileSpec } from '../store/trusted-files.js';
import { validateConfig, type ConfigFile, type ConfigIssue } from './config.js';

/** Largest configuration file read; a config is a few kilobytes, this is a guard against pointing at a disk image. */
export const MAX_CONFIG_BYTES = 1024 * 1024;

/**
 * The configuration decides which keys exist and who may use them: it is a
 * trusted file (src/store/trusted-files.ts), checked for owner, mode and
 * kind, and sized, before it is read.
 */
const CONFIG_FILE: TrustedFileSpec = { what: 'the configuration file', maxBytes: MAX_CONFIG_BYTES };

export interface ConfigProblem {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  /** Dotted path of the field (`keys.orders.rotationPeriod`), or `config` for the document itself. */
  readonly field: string;
  readonly message: string;
}

/** A configuration file refused as a whole; `problems` are in file order. */
export class ConfigFileError extends ConfigError {
  readonly problems: readonly ConfigProblem[];
  constructor(file: string, problems: readonly ConfigProblem[]) {
    const first = problems[0];
    super(`invalid configuration file ${file} (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n${problems.map(formatProblem).join('\n')}`, {
      detail: first === undefined ? { file } : { file, line: first.line, col: first.col, field: first.field },
    });
    this.problems = problems;
  }
}

export function formatProblem(p: ConfigProblem): string {
  return `${p.file}:${p.line}:${p.col}: ${p.field}: ${p.message}`;
}

/** A validated file, and a way to place later problems (those the key manager finds against the keystore) in it. */
export interface LoadedConfig {
  readonly config: ConfigFile;
  problemAt(issue: ConfigIssue): ConfigProblem;
}

/** Read and validate `file`; throws ConfigFileError (a CRYPTOD_ERR_CONFIG) naming every problem. */
export function loadConfigFile(file: string): ConfigFile {
  return loadConfig(file).config;
}

/** {@link loadConfigFile}, keeping the document's positions. For start-up: reads synchronously. */
export function loadConfig(file: string): LoadedConfig {
  let text: string;
  try {
    text = readTrustedFileSync(file, CONFIG_FILE).toString('utf8');
  } catch (err) {
    throw unreadable(file, err);
  }
  return parseConfigText(text, file);
}

/** {@link loadConfig} for a running daemon: the read never blocks the event loop. */
export async function reloadConfigFile(file: string): Promise<LoadedConfig> {
  let text: string;
  try {
    text = (await readTrustedFile(file, CONFIG_FILE)).toString('utf8');
  } catch (err) {
    throw unreadable(file, err);
  }
  return parseConfigText(text, file);
}

function unreadable(file: string, err: unknown): ConfigFileError {
  return new ConfigFileError(file, [{ file, line: 1, col: 1, field: 'config', message: `cannot read the file: ${(err as Error).message}` }]);
}

/** Parse and validate configuration text. */
export function parseConfigText(text: string, file: string): LoadedConfig {
  const lines = new LineCounter();
  // uniqueKeys (the default) makes a key given twice an error rather than "last one wins".
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const pos = (offset: number): { line: number; col: number } => lines.linePos(offset);
  const problems: ConfigProblem[] = [];
  // Warnings (an unknown tag such as `!secret`) refuse the file too: a value
  // the parser was unsure of must not become a key policy.
  for (const e of [...doc.errors, ...doc.warnings]) {
    const { line, col } = pos(e.pos[0]);
    problems.push({ file, line, col, field: 'yaml', message: e.message.split('\n')[0] ?? e.message });
  }
  if (doc.errors.length > 0) throw new ConfigFileError(file, problems);

  let raw: unknown;
  try {
    // maxAliasCount bounds "billion laughs" alias expansion.
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new ConfigFileError(file, [{ file, line: 1, col: 1, field: 'yaml', message: (err as Error).message }]);
  }
  const sourceOf = (path: readonly (string | number)[]): string | undefined => {
    const n = doc.getIn(path, true);
    if (!isScalar(n) || n.range === undefined || n.range === null) return undefined;
    return text.slice(n.range[0], n.range[1]).trim();
  };
  const { config, issues } = validateConfig(raw, resolve(file), sourceOf);
  for (const i of issues) problems.push(place(doc, i, file, pos));
  if (config === undefined || problems.length > 0) {
    problems.sort((a, b) => a.line - b.line || a.col - b.col);
    throw new ConfigFileError(file, problems);
  }
  return { config, problemAt: (issue) => place(doc, issue, file, pos) };
}

function place(doc: Document, issue: ConfigIssue, file: string, pos: (offset: number) => { line: number; col: number }): ConfigProblem {
  const offset = locate(doc, issue.path, issue.at);
  const { line, col } = pos(offset);
  return { file, line, col, field: fieldName(issue.path), message: issue.message };
}

/**
 * Source offset of the node at `path` (its key with at = 'key'). A path that
 * does not exist in the document (a missing field) lands on the deepest
 * ancestor that does, which is where the field would have to be added.
 */
function locate(doc: Document, path: readonly (string | number)[], at: 'key' | 'value'): number {
  let node: unknown = doc.contents;
  let offset = rangeStart(node) ?? 0;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i]!;
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
      if (pair === undefined) return offset;
      const keyStart = rangeStart(pair.key);
      if (last && at === 'key') return keyStart ?? offset;
      const valueStart = rangeStart(pair.value);
      // `field:` with nothing after it: point at the field.
      offset = valueStart ?? keyStart ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg];
      if (item === undefined) return offset;
      offset = rangeStart(item) ?? offset;
      node = item;
    } else {
      return offset;
    }
  }
  return offset;
}

function rangeStart(n: unknown): number | undefined {
  const r = (n as Node | null | undefined)?.range;
  return r === undefined || r === null ? undefined : r[0];
}

function fieldName(path: readonly (string | number)[]): string {
  if (path.length === 0) return 'config';
  return path.map((s, i) => (typeof s === 'number' ? `[${s}]` : i === 0 ? s : `.${s}`)).join('');
}
