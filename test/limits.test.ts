/**
 * Connection slots cannot be used up by one party: connections still signing in are capped
 * apart from signed-in sessions (in total and per client address) and cut off at a short
 * deadline, and signed-in sessions are capped per person and per connection.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import * as encode from '../src/wire/encode.js';
import { PROTOCOL } from '../src/wire/protocol.js';
import { startTestStack, type TestStack } from './support/dev_stack.js';
import { eventually } from './support/eventually.js';
import { errorIn, exchange } from './support/raw_session.js';

const PER_ADDRESS = 6;
const UNAUTHENTICATED = 10;
const AUTH_SECONDS = 2;

/** A socket from `localAddress` that connects and says nothing; it keeps what it is sent. */
function silent(t: TestStack, localAddress = '127.0.0.1'): Promise<{ socket: Socket; received: Buffer[] }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: t.stack.info.pg.host, port: t.stack.info.pg.port, localAddress });
    const received: Buffer[] = [];
    socket.on('error', () => undefined);
    // Reading what arrives, so that the gateway's close is seen.
    socket.on('data', (d: Buffer) => received.push(d));
    socket.once('connect', () => resolve({ socket, received }));
    socket.once('error', reject);
  });
}

/** What the gateway answers a startup message from `localAddress` with, within `ms`. */
const firstAnswer = (t: TestStack, localAddress: string, ms = 3000) =>
  exchange(
    t.stack.info.pg,
    [encode.startupMessage(PROTOCOL.V3_0, { user: 'viewer@example.com', database: 'demo' })],
    { ms, localAddress, first: true },
  );

/** Resolves when the socket is closed; fails the test if that takes longer than `ms`. */
function closedWithin(s: Socket, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    if (s.destroyed) return resolve();
    const timer = setTimeout(() => reject(new Error(`still open after ${ms} ms`)), ms);
    s.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

describe('connection slots', () => {
  let t: TestStack;
  before(async () => {
    t = await startTestStack({
      PGWARD_PG_MAX_UNAUTHENTICATED_PER_ADDRESS: String(PER_ADDRESS),
      PGWARD_PG_MAX_UNAUTHENTICATED: String(UNAUTHENTICATED),
      PGWARD_PG_AUTH_TIMEOUT_SECONDS: String(AUTH_SECONDS),
      PGWARD_PG_MAX_SESSIONS_PER_PERSON: '3',
      PGWARD_PG_MAX_SESSIONS_PER_CONNECTION: '4',
    });
  });
  after(async () => {
    await t?.close();
  });

  it('half-open sockets from one address cannot lock out other addresses, and are cut off at the deadline', async () => {
    const idle: { socket: Socket; received: Buffer[] }[] = [];
    try {
      for (let i = 0; i < PER_ADDRESS; i++) idle.push(await silent(t));
      // That address is full: answered at once, before any TLS work.
      const refused = await eventually(async () => {
        const answer = await firstAnswer(t, '127.0.0.1');
        return answer[0] === 0x45 ? answer : undefined;
      }, 'the per-address cap');
      assert.match(refused.toString('latin1'), /53300/);
      assert.match(refused.toString('latin1'), /still signing in/);
      // Another address is served: asked for its password.
      const other = await firstAnswer(t, '127.0.0.2');
      assert.equal(String.fromCharCode(other[0]!), 'R');
      // The silent ones are cut off by the gateway at its deadline, and told why.
      await Promise.all(idle.map((s) => closedWithin(s.socket, (AUTH_SECONDS + 3) * 1000)));
      for (const s of idle) {
        const fields = errorIn(Buffer.concat(s.received));
        assert.equal(fields?.get('C'), '08P01');
        assert.equal(fields?.get('M'), 'authentication took too long; the connection is closed');
      }
      const again = await firstAnswer(t, '127.0.0.1');
      assert.equal(String.fromCharCode(again[0]!), 'R');
    } finally {
      for (const s of idle) s.socket.destroy();
    }
  });

  it('caps connections still signing in over all addresses', async () => {
    const idle: Socket[] = [];
    try {
      for (let i = 0; i < UNAUTHENTICATED; i++)
        idle.push((await silent(t, `127.0.0.${10 + (i % 5)}`)).socket);
      const refused = await eventually(async () => {
        const answer = await firstAnswer(t, '127.0.0.3');
        return answer[0] === 0x45 ? answer : undefined;
      }, 'the total cap');
      assert.match(
        refused.toString('latin1'),
        /too many connections still signing in to pgward \(limit 10\)/,
      );
    } finally {
      for (const s of idle) s.destroy();
    }
    await eventually(async () => {
      const answer = await firstAnswer(t, '127.0.0.3');
      return answer[0] === 0x52 ? true : undefined;
    }, 'slots again once they are gone');
  });

  it('caps sessions per person and per connection', async () => {
    const open: pg.Client[] = [];
    try {
      for (let i = 0; i < 3; i++) open.push(await t.client('viewer@example.com'));
      const fourth = await t.refusal('viewer@example.com', {});
      assert.equal(fourth.code, '53300');
      assert.match(fourth.message, /viewer@example\.com already has 3 sessions open through pgward/);
      // Others still get in, up to the connection's cap.
      open.push(await t.client('editor@example.com'));
      const full = await t.refusal('admin@example.com', {});
      assert.equal(full.code, '53300');
      assert.match(full.message, /connection "demo" already has 4 sessions open/);
      // A slot comes back when a session ends.
      await open.shift()!.end();
      open.push(await eventually(() => t.client('admin@example.com').catch(() => undefined), 'a slot'));
    } finally {
      await Promise.all(open.map((c) => c.end()));
    }
  });
});
