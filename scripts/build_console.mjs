// Builds the web console into dist/web: one bundled, minified script and stylesheet, named
// by their content's hash (cacheable for a year), each also brotli- and gzip-compressed, and
// index.html pointing at them.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const out = path.join(root, 'dist', 'web');
rmSync(out, { recursive: true, force: true });
mkdirSync(path.join(out, 'assets'), { recursive: true });

const hashed = (name, ext, content) => {
  const hash = createHash('sha256').update(content).digest('hex').slice(0, 12);
  const file = `${name}-${hash}.${ext}`;
  const at = path.join(out, 'assets', file);
  writeFileSync(at, content);
  // Compressed once here, so that the gateway serves them without compressing at start.
  writeFileSync(
    `${at}.br`,
    brotliCompressSync(content, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }),
  );
  writeFileSync(`${at}.gz`, gzipSync(content, { level: 9 }));
  return file;
};

const result = await build({
  entryPoints: [path.join(root, 'console', 'src', 'main.ts')],
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['chrome110', 'firefox115', 'safari16'],
  write: false,
  legalComments: 'none',
  logLevel: 'warning',
});
const js = hashed('console', 'js', result.outputFiles[0].contents);
const css = hashed('console', 'css', readFileSync(path.join(root, 'console', 'styles.css')));
const html = readFileSync(path.join(root, 'console', 'index.html'), 'utf8')
  .replace('__JS__', js)
  .replace('__CSS__', css);
writeFileSync(path.join(out, 'index.html'), html);
console.log(`console: ${js} (${result.outputFiles[0].contents.length} bytes), ${css}`);
