import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { PgwardError } from '../src/errors.js';
import { assertServerUserCanReach } from '../src/store/embedded_postgres.js';
import { removeTempDir, tempDir } from './support/temp_dir.js';

// As root the cluster runs as the postgres user; these checks only exist then.
describe('the embedded PostgreSQL run as the postgres user by root', { skip: userInfo().uid !== 0 }, () => {
  const root = tempDir('reach');
  after(() => removeTempDir(root));

  const fakeInitdb = (under: string) => {
    const bin = path.join(under, 'bin');
    mkdirSync(bin, { recursive: true });
    const initdb = path.join(bin, 'initdb');
    writeFileSync(initdb, '#!/bin/sh\n', { mode: 0o755 });
    return initdb;
  };

  it('starts when the data dir and the binaries are in reach', async () => {
    await assertServerUserCanReach(path.join(root, 'data'), fakeInitdb(path.join(root, 'open')));
  });

  it('names the binaries and the fix when a private directory above them hides them', async () => {
    const hidden = path.join(root, 'private');
    const initdb = fakeInitdb(path.join(hidden, 'checkout'));
    chmodSync(hidden, 0o700);
    await assert.rejects(assertServerUserCanReach(path.join(root, 'data'), initdb), (err: unknown) => {
      assert.ok(err instanceof PgwardError);
      assert.equal(err.code, 'STORE_UNAVAILABLE');
      assert.match(err.message, /cannot run .*private\/checkout\/bin\/initdb/);
      assert.match(err.hint ?? '', /chmod o\+x/);
      return true;
    });
  });

  it('names the data dir when its parent is private', async () => {
    const hidden = path.join(root, 'private-data');
    mkdirSync(hidden, { mode: 0o700 });
    await assert.rejects(assertServerUserCanReach(path.join(hidden, 'data')), /cannot enter/);
  });
});
