/** The CLI's one output format: pretty JSON on stdout (errors go to stderr as `countersign: … [code]`). */
export function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
