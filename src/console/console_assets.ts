/**
 * The console's static files, built by `npm run build` into dist/web (index.html and
 * content-hashed assets, each with its brotli and gzip forms made at build time). They are read
 * once at start and kept in memory, so a request costs a lookup; hashed assets are cacheable
 * for a year, the page itself never.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';
import { PACKAGE_ROOT } from '../package_root.js';

export interface Asset {
  type: string;
  raw: Buffer;
  br: Buffer;
  gzip: Buffer;
}

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.map': 'application/json',
};

/** The per-response nonce's placeholder in index.html (CodeMirror's style elements carry it). */
export const NONCE_PLACEHOLDER = '__PGWARD_NONCE__';

/** An asset with its compressed forms: the build's, else made now (fast settings). */
function compressed(type: string, file: string): Asset {
  const raw = readFileSync(file);
  const read = (ext: string, make: () => Buffer) =>
    existsSync(file + ext) ? readFileSync(file + ext) : make();
  return {
    type,
    raw,
    br: read('.br', () => brotliCompressSync(raw, { params: { [constants.BROTLI_PARAM_QUALITY]: 4 } })),
    gzip: read('.gz', () => gzipSync(raw)),
  };
}

export class ConsoleAssets {
  readonly assets = new Map<string, Asset>();
  readonly index: string | undefined;

  constructor(dir = path.join(PACKAGE_ROOT, 'dist', 'web')) {
    const indexFile = path.join(dir, 'index.html');
    this.index = existsSync(indexFile) ? readFileSync(indexFile, 'utf8') : undefined;
    const assetDir = path.join(dir, 'assets');
    if (!existsSync(assetDir)) return;
    for (const name of readdirSync(assetDir)) {
      const type = TYPES[path.extname(name)];
      if (type) this.assets.set(name, compressed(type, path.join(assetDir, name)));
    }
  }

  /** The page with a fresh nonce, and the nonce. */
  page(): { html: string; nonce: string } {
    const nonce = randomBytes(16).toString('base64');
    const html =
      this.index ??
      `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>pgward</title></head><body><p>The console is not built: run <code>npm run build</code>.</p></body></html>`;
    return { html: html.replaceAll(NONCE_PLACEHOLDER, nonce), nonce };
  }

  /** Picks the encoding the client accepts best. */
  static encoding(accept: string | undefined): 'br' | 'gzip' | undefined {
    const a = accept ?? '';
    if (/\bbr\b/.test(a)) return 'br';
    if (/\bgzip\b/.test(a)) return 'gzip';
    return undefined;
  }
}

/** The Content-Security-Policy of the console: no inline script, styles only with the nonce. */
export function contentSecurityPolicy(nonce: string): string {
  return [
    "default-src 'none'",
    "script-src 'self'",
    `style-src 'self' 'nonce-${nonce}'`,
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "form-action 'self'",
    // The export's download (or its error page) lands in a hidden frame of the console.
    "frame-src 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
  ].join('; ');
}
