/**
 * Aligned text tables for people at a terminal (`cryptod status`): text
 * columns left-aligned, numbers right-aligned, two spaces between columns.
 * Nested values are flattened to dotted names (`evictions.age`), so a
 * section a newer daemon adds to its status still prints as a table.
 */

type Cell = string | number | boolean | null | undefined;

/** Rows under a header; a column whose every cell is a number is right-aligned. */
export function table(header: readonly string[], rows: readonly (readonly Cell[])[]): string {
  const text = rows.map((r) => header.map((_, i) => show(r[i])));
  const numeric = header.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number'));
  const widths = header.map((h, i) => Math.max(h.length, ...text.map((r) => r[i]!.length)));
  const fmt = (cells: readonly string[]): string =>
    cells.map((c, i) => (i === cells.length - 1 && !numeric[i] ? c : numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return `${[fmt(header), ...text.map(fmt)].join('\n')}\n`;
}

/** A titled section: a map as FIELD/VALUE rows, a list of maps as one row each. */
export function section(title: string, value: unknown): string {
  if (Array.isArray(value)) {
    const rows = value.filter((v): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)).map((v) => flatten(v));
    if (rows.length === 0) return `${title}: none\n`;
    const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
    return `${title}\n${table(columns.map((c) => c.toUpperCase()), rows.map((r) => columns.map((c) => r[c])))}`;
  }
  if (value !== null && typeof value === 'object') {
    const flat = flatten(value as Record<string, unknown>);
    return `${title}\n${table(['FIELD', 'VALUE'], Object.entries(flat).map(([k, v]) => [k, typeof v === 'number' ? String(v) : v]))}`;
  }
  return `${title}: ${show(value as Cell)}\n`;
}

function flatten(v: Record<string, unknown>, prefix = '', out: Record<string, Cell> = {}): Record<string, Cell> {
  for (const [k, x] of Object.entries(v)) {
    const name = prefix === '' ? k : `${prefix}.${k}`;
    if (x !== null && typeof x === 'object' && !Array.isArray(x)) flatten(x as Record<string, unknown>, name, out);
    else out[name] = Array.isArray(x) ? x.map((e) => (typeof e === 'object' ? JSON.stringify(e) : String(e))).join(',') : (x as Cell);
  }
  return out;
}

function show(c: Cell): string {
  if (c === null || c === undefined) return '-';
  return String(c);
}
