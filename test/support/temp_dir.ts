import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** A fresh folder under the system temp dir, open to the `postgres` user when tests run as root. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), `pgward-${prefix}-`));
  chmodSync(dir, 0o755);
  return dir;
}

/**
 * Removes a folder from tempDir() once its cluster has stopped: a test stack holds PostgreSQL
 * clusters of about 90 MB, and repeated runs would fill the disk.
 */
export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
