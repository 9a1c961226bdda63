/**
 * Keeps docs/errors.md and docs/protocol.md honest against the code: every stable error code is
 * documented (in file order, with every column of its record in shared/errors.ts: message,
 * JSON-RPC number, close code, HTTP status), the error tables name no code that does not exist,
 * and the protocol page lists every close code and limit default.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ERROR_CODES, ERROR_RECORDS, closeCodeFor, errorRecord, httpStatusFor, isErrorCode, type ErrorCode } from '../../shared/errors.js';
import { CLOSE_CODES, PROTOCOL_VERSION, RPC_CODES, WS_PATH, WS_SUBPROTOCOL, rpcCodeFor } from '../../shared/protocol.js';
import { parseConfig } from '../../main/core/config.js';

const read = (name: string): string => readFileSync(fileURLToPath(new URL(`../../docs/${name}`, import.meta.url)), 'utf8');
const errorsDoc = read('errors.md');
const protocolDoc = read('protocol.md');

/** Markdown table body rows (header and separator rows excluded), split into trimmed cells. */
function tableRows(markdown: string): string[][] {
  return markdown
    .split('\n')
    .filter((line) => line.startsWith('|') && !/^\|[\s|:-]+\|$/.test(line))
    .map((line) =>
      line
        .slice(1, line.trimEnd().endsWith('|') ? line.trimEnd().length - 1 : undefined)
        .split('|')
        .map((cell) => cell.trim()),
    )
    .filter((cells) => cells[0] !== 'code');
}

const backticked = (text: string): string[] => [...text.matchAll(/`([^`]+)`/g)].map((m) => m[1] ?? '');
/** What an error code looks like: lowercase snake_case (a single word such as `timeout` included). */
const SNAKE = /^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$/;

const codeRows = tableRows(errorsDoc).filter((cells) => SNAKE.test(backticked(cells[0] ?? '')[0] ?? ''));
const documented = codeRows.map((cells) => backticked(cells[0] ?? '')[0] ?? '');

describe('docs/errors.md', () => {
  it('documents every ERROR_CODES key as `code`, once each, in the order of shared/errors.ts', () => {
    for (const code of Object.keys(ERROR_CODES)) expect(errorsDoc, `missing \`${code}\``).toContain(`\`${code}\``);
    expect(documented).toEqual(Object.keys(ERROR_CODES));
  });

  it('names no backticked snake_case code in its tables that is not in ERROR_CODES', () => {
    const named = tableRows(errorsDoc)
      .flatMap((cells) => cells.flatMap(backticked))
      .filter((token) => SNAKE.test(token));
    expect(named.length).toBeGreaterThan(0);
    expect(named.filter((token) => !isErrorCode(token))).toEqual([]);
  });

  it('has the columns code, message, JSON-RPC, close, HTTP, meaning in every error table', () => {
    const headers = errorsDoc.split('\n').filter((line) => line.startsWith('| code |'));
    expect(headers.length).toBeGreaterThan(0);
    for (const header of headers) expect(header).toMatch(/^\| code \| message \| JSON-RPC \| close \| HTTP \| meaning \|/);
  });

  /** The rows as [code, cells], the code checked to be one. */
  const rowsByCode = (): Array<[ErrorCode, string[]]> =>
    codeRows.map((cells) => {
      const code = backticked(cells[0] ?? '')[0] ?? '';
      if (!isErrorCode(code)) throw new Error(`not an error code: ${code}`);
      return [code, cells];
    });

  it('gives each code the message of its record', () => {
    for (const [code, cells] of rowsByCode()) expect(cells[1], code).toBe(errorRecord(code).message);
  });

  it('gives each code the JSON-RPC number of its record (what rpcCodeFor and the gateway send)', () => {
    for (const [code, cells] of rowsByCode()) expect(cells[2], code).toBe(`\`${rpcCodeFor(code)}\``);
  });

  it('gives each code the close code of its record first, or a dash when the error alone closes nothing', () => {
    for (const [code, cells] of rowsByCode()) {
      const close = closeCodeFor(code);
      const cell = cells[3] ?? '';
      if (close === undefined) expect(cell, code).toMatch(/^—/);
      else expect(backticked(cell)[0], code).toBe(String(close));
    }
  });

  it('gives each code the HTTP status of its record first', () => {
    for (const [code, cells] of rowsByCode()) expect(backticked(cells[4] ?? '')[0], code).toBe(String(httpStatusFor(code)));
  });

  it('uses only close codes the gateway defines and real HTTP error statuses in the records', () => {
    const closeCodes = new Set<number>(Object.values(CLOSE_CODES));
    for (const [code, record] of Object.entries(ERROR_RECORDS)) {
      if ('close' in record) expect(closeCodes.has(record.close), code).toBe(true);
      expect(record.http >= 400 && record.http <= 599, code).toBe(true);
      expect(ERROR_CODES[code as ErrorCode]).toBe(record.message);
    }
  });

  it('gives every internal-error code (JSON-RPC -32603) a 5xx HTTP status, so no transport blames the caller for a server fault', () => {
    const internal = (Object.keys(ERROR_RECORDS) as ErrorCode[]).filter((code) => rpcCodeFor(code) === RPC_CODES.internalError);
    expect(internal).toContain('store_failed');
    for (const code of internal) expect(httpStatusFor(code), code).toBeGreaterThanOrEqual(500);
  });

  it('states that codes are stable API', () => {
    expect(errorsDoc).toMatch(/Codes are stable API/);
    expect(errorsDoc).toMatch(/never renamed/);
  });
});

describe('docs/protocol.md', () => {
  it('mentions every close code in CLOSE_CODES', () => {
    const rows = tableRows(protocolDoc);
    for (const [name, code] of Object.entries(CLOSE_CODES)) {
      const row = rows.find((cells) => cells[0] === `\`${code}\``);
      expect(row, `close code ${code} (${name})`).toBeDefined();
      expect(row?.[1]).toBe(`\`${name}\``);
    }
  });

  it('lists in its JSON-RPC table exactly the codes whose record has each number (all others are -32001)', () => {
    const rows = tableRows(protocolDoc).filter((cells) => /^`-32\d{3}`$/.test(cells[0] ?? ''));
    expect(rows.length).toBeGreaterThan(0);
    const listed = new Map<ErrorCode, number>();
    for (const cells of rows) {
      const rpc = Number(backticked(cells[0] ?? '')[0]);
      for (const name of backticked(cells[2] ?? '')) {
        const codes = name.endsWith('*')
          ? (Object.keys(ERROR_RECORDS) as ErrorCode[]).filter((code) => code.startsWith(name.slice(0, -1)))
          : [name];
        for (const code of codes) {
          if (!isErrorCode(code)) throw new Error(`not an error code: ${code}`);
          listed.set(code, rpc);
        }
      }
    }
    for (const code of Object.keys(ERROR_RECORDS) as ErrorCode[])
      expect(listed.get(code) ?? RPC_CODES.refused, code).toBe(rpcCodeFor(code));
  });

  it('names the protocol version, subprotocol and path', () => {
    for (const value of [PROTOCOL_VERSION, WS_SUBPROTOCOL, WS_PATH]) expect(protocolDoc).toContain(`\`${value}\``);
  });

  it('lists the default of every numeric gateway, envelope and token limit', () => {
    const defaults = parseConfig({});
    const sections = { gateway: defaults.gateway, envelope: defaults.envelope, tokens: defaults.tokens };
    const rows = tableRows(protocolDoc);
    for (const [section, values] of Object.entries(sections)) {
      for (const [key, value] of Object.entries(values)) {
        if (typeof value !== 'number' || key === 'port') continue;
        const row = rows.find((cells) => cells[0] === `\`${section}.${key}\``);
        expect(row, `${section}.${key}`).toBeDefined();
        expect(row?.[1], `${section}.${key}`).toMatch(new RegExp(`^\`${value}\``));
      }
    }
  });
});
