import { describe, expect, it } from 'vitest';
import { lsn } from '../protocol/lsn.ts';
import { appliesEvent, positionDecides } from './change-stream.ts';

describe('appliesEvent: whose events a node applies', () => {
  const none = { ownHorizon: undefined, parted: new Map() };
  it('applies every other node’s, never its own', () => {
    expect(appliesEvent(none, 'vl-1', 'wa-1', lsn(100n))).toBe(true);
    expect(appliesEvent(none, 'vl-1', 'vl-1', lsn(100n))).toBe(false);
  });
  it('applies its own up to the horizon of what its database lost, like a peer’s', () => {
    const m = { ownHorizon: lsn(500n), parted: new Map() };
    expect(appliesEvent(m, 'vl-1', 'vl-1', lsn(500n))).toBe(true);
    expect(appliesEvent(m, 'vl-1', 'vl-1', lsn(501n))).toBe(false);
    expect(appliesEvent(m, 'vl-1', 'vl-1', undefined)).toBe(false);
  });
  it('skips a parted node’s events up to where it left, and applies what comes after (it came back)', () => {
    const m = { ownHorizon: undefined, parted: new Map([['wa-1', lsn(900n)]]) };
    expect(appliesEvent(m, 'vl-1', 'wa-1', lsn(900n))).toBe(false);
    expect(appliesEvent(m, 'vl-1', 'wa-1', lsn(901n))).toBe(true);
    expect(appliesEvent(m, 'vl-1', 'wa-2', lsn(1n))).toBe(true);
  });
  it('needs the position only for its own events and a parted node’s', () => {
    const m = { ownHorizon: undefined, parted: new Map([['wa-1', lsn(900n)]]) };
    expect(positionDecides(m, 'vl-1', 'vl-1')).toBe(true);
    expect(positionDecides(m, 'vl-1', 'wa-1')).toBe(true);
    expect(positionDecides(m, 'vl-1', 'wa-2')).toBe(false);
    // where it does not decide, appliesEvent applies whatever the position
    expect(appliesEvent(m, 'vl-1', 'wa-2', undefined)).toBe(true);
  });
});
