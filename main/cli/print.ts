/**
 * The CLI's output: pretty JSON on stdout for documents (errors go to stderr as
 * `countersign: … [code]`), and for listings a readable, aligned table by default or the same
 * JSON with `--json` (for scripts). The one table printer of the CLI.
 */
export function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** One column of a table: its header and how a row shows in it. */
export interface Column<T> {
  header: string;
  value: (row: T) => string | number | boolean | null | undefined;
}

/** A time in milliseconds as UTC ISO 8601 to the second (`2026-12-03 15:37:08Z`); `-` for none. */
export function formatTime(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '-';
  return `${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

/** A cell's text on one line: control characters (a newline in a name) shown as spaces. */
function cell(value: string | number | boolean | null | undefined): string {
  if (value === null || value === undefined || value === '') return '-';
  return String(value).replace(/[\u0000-\u001f\u007f]+/g, ' ');
}

/** Rows as an aligned text table (columns padded to their widest cell, two spaces apart). */
export function formatTable<T>(rows: readonly T[], columns: ReadonlyArray<Column<T>>): string {
  const cells = rows.map((row) => columns.map((c) => cell(c.value(row))));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i]!.length)));
  const line = (values: readonly string[]) =>
    values
      .map((v, i) => (i === values.length - 1 ? v : v.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.header.toUpperCase())), ...cells.map(line)].join('\n');
}

/** A listing: the table by default (a note when empty), the raw records as JSON with --json. */
export function printListing<T>(
  rows: readonly T[],
  columns: ReadonlyArray<Column<T>>,
  options: { json: boolean | undefined; empty: string },
): void {
  if (options.json) {
    print(rows);
    return;
  }
  process.stdout.write(rows.length === 0 ? `${options.empty}\n` : `${formatTable(rows, columns)}\n`);
}
