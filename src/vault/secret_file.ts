import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';

/**
 * A secret kept in a file of the data dir (mode 0600): read when present, generated once when
 * not. `make` builds a new one; by default 24 random bytes, base64url.
 */
export async function readOrCreateSecret(
  file: string,
  make = () => randomBytes(24).toString('base64url'),
): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const secret = make();
  // 'wx': never overwrite a secret another process created meanwhile.
  await writeFile(file, `${secret}\n`, { mode: 0o600, flag: 'wx' }).catch(
    async (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    },
  );
  return (await readFile(file, 'utf8')).trim();
}
