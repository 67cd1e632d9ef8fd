/**
 * The dev stack's TLS certificate for the PostgreSQL endpoint: self-signed for 127.0.0.1 and
 * localhost, made once per data dir. Clients use sslmode=require (it is not verifiable).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { generate } from 'selfsigned';

export async function devCertificate(dataDir: string): Promise<{ certFile: string; keyFile: string }> {
  const dir = path.join(dataDir, 'tls');
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  try {
    await readFile(certFile);
    await readFile(keyFile);
    return { certFile, keyFile };
  } catch {
    // first start: create them
  }
  const pems = await generate([{ name: 'commonName', value: 'pgward dev' }], {
    keySize: 2048,
    notAfterDate: new Date(Date.now() + 825 * 86_400_000),
    algorithm: 'sha256',
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
        ],
      },
    ],
  });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(keyFile, pems.private, { mode: 0o600 });
  await writeFile(certFile, pems.cert, { mode: 0o644 });
  return { certFile, keyFile };
}
