import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** A fresh folder under the system temp dir, open to the `postgres` user when tests run as root. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), `pgward-${prefix}-`));
  chmodSync(dir, 0o755);
  return dir;
}
