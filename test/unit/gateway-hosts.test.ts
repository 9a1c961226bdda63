/** Host allowlist entries as the Host header carries them, and the rate-limit id peek. */
import { describe, expect, it } from 'vitest';
import { hostWithPort, peekRequestId } from '../../main/core/gateway/gateway-server.js';

describe('host allowlist entries', () => {
  it('adds the gateway port to entries without one, for names and bracketed IPv6', () => {
    expect(hostWithPort('countersign.internal', 7345)).toBe('countersign.internal:7345');
    expect(hostWithPort('[::1]', 7345)).toBe('[::1]:7345');
  });
  it('keeps an explicit port, for names and bracketed IPv6', () => {
    expect(hostWithPort('proxy.local:8443', 7345)).toBe('proxy.local:8443');
    expect(hostWithPort('[::1]:8080', 7345)).toBe('[::1]:8080');
  });
});

describe('request id peek for rate-limited frames', () => {
  it('reads the id the SDK writes first, and nothing else', () => {
    expect(peekRequestId(Buffer.from('{"jsonrpc":"2.0","id":42,"method":"call.submit","params":{}}'))).toBe(42);
    expect(peekRequestId(Buffer.from('{"jsonrpc":"2.0","method":"x","id":42}'))).toBeNull();
    expect(peekRequestId(Buffer.from('{"jsonrpc":"2.0","id":"abc"}'))).toBeNull();
    expect(peekRequestId(Buffer.from('{"jsonrpc":"2.0","id":1234567890123456789}'))).toBeNull();
    expect(peekRequestId(Buffer.from(`${' '.repeat(70)}{"jsonrpc":"2.0","id":1}`))).toBeNull();
  });
});
