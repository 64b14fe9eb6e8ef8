// Bundles the playground into ../dist: index.html, playground.js,
// playground.css, assets/ (fonts and images that GraphiQL's CSS carries as
// data: URLs, written out as files so the page's Content-Security-Policy can
// stay 'self'-only) and THIRD-PARTY-NOTICES.txt. The output is deterministic:
// the same package-lock.json and sources give the same bytes.
//
// Run through scripts/build-playground.sh (npm ci first).
import * as esbuild from 'esbuild';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] || join(here, '..', 'dist'));

const sha = (buf) => createHash('sha256').update(buf).digest('hex');

// Every example operation must be valid against the API's schema.
await validateExamples(join(here, '..', '..', 'graph', 'schema'));

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'assets'), { recursive: true });

const result = await esbuild.build({
  entryPoints: [join(here, 'src', 'main.jsx')],
  outfile: join(out, 'playground.js'),
  bundle: true,
  minify: true,
  format: 'iife',
  platform: 'browser',
  target: ['chrome110', 'firefox110', 'safari16'],
  jsx: 'automatic',
  define: { 'process.env.NODE_ENV': '"production"' },
  legalComments: 'none', // collected into THIRD-PARTY-NOTICES.txt instead
  sourcemap: false,
  metafile: true,
  charset: 'utf8',
  logLevel: 'warning',
  write: false,
});

const MIME_EXT = {
  'font/woff2': 'woff2',
  'font/woff': 'woff',
  'font/ttf': 'ttf',
  'image/png': 'png',
  'image/svg+xml': 'svg',
  'image/gif': 'gif',
};

for (const file of result.outputFiles) {
  let text = file.text;
  if (file.path.endsWith('.css')) {
    // url(data:<mime>;base64,<data>) → url(assets/<sha>.<ext>)
    text = text.replace(/url\((["']?)data:([a-z0-9.+\/-]+);base64,([A-Za-z0-9+\/=]+)\1\)/gi, (all, _q, mime, b64) => {
      const ext = MIME_EXT[mime.toLowerCase()];
      if (!ext) throw new Error(`build: unexpected data: URL of type ${mime} in CSS`);
      const bytes = Buffer.from(b64, 'base64');
      const name = `assets/${sha(bytes).slice(0, 16)}.${ext}`;
      writeFileSync(join(out, name), bytes);
      return `url(${name})`;
    });
    if (/url\(\s*["']?data:/i.test(text)) throw new Error('build: a data: URL is left in the CSS');
  }
  if (/\burl\(\s*["']?(https?:)?\/\//i.test(text)) {
    throw new Error(`build: ${relative(out, file.path)} loads something from another host`);
  }
  writeFileSync(file.path, text);
}

// index.html: the template with each asset's content hash as its version, so
// the assets can be cached for a year and a rebuild is still picked up.
const version = (name) => sha(readFileSync(join(out, name))).slice(0, 16);
const html = readFileSync(join(here, 'src', 'index.html'), 'utf8')
  .replace('{{js}}', version('playground.js'))
  .replace('{{css}}', version('playground.css'));
writeFileSync(join(out, 'index.html'), html);
writeFileSync(join(out, 'favicon.svg'), readFileSync(join(here, 'src', 'favicon.svg')));

// The licenses of every npm package that ended up in the bundle.
const pkgs = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const parts = input.split(/[\\/]/);
  const i = parts.lastIndexOf('node_modules');
  if (i < 0) continue;
  const n = parts[i + 1].startsWith('@') ? 2 : 1;
  const dir = parts.slice(0, i + 1 + n).join(sep);
  if (!pkgs.has(dir)) pkgs.set(dir, parts.slice(i + 1, i + 1 + n).join('/'));
}
const notices = [
  'The Mutuo playground bundles these npm packages. Their licenses follow.',
  '',
];
for (const [dir, name] of [...pkgs].sort((a, b) => (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))) {
  const abs = join(here, dir);
  const pkg = JSON.parse(readFileSync(join(abs, 'package.json'), 'utf8'));
  const files = existsSync(abs) ? readdirSync(abs).filter((f) => /^(licen[cs]e|copying|notice)/i.test(f)).sort() : [];
  notices.push('='.repeat(78), `${name}@${pkg.version} (${pkg.license || 'license not stated'})`, '='.repeat(78));
  for (const f of files) notices.push(readFileSync(join(abs, f), 'utf8').trim(), '');
  if (files.length === 0) notices.push(`(no license file in the package; package.json says: ${pkg.license || 'nothing'})`, '');
}
writeFileSync(join(out, 'THIRD-PARTY-NOTICES.txt'), notices.join('\n') + '\n');

const size = (name) => `${name} ${(readFileSync(join(out, name)).length / 1024).toFixed(0)} KiB`;
console.log(`playground: wrote ${relative(process.cwd(), out) || '.'}: ${size('playground.js')}, ${size('playground.css')}, ` +
  `${readdirSync(join(out, 'assets')).length} assets, ${pkgs.size} packages`);

async function validateExamples(schemaDir) {
  const { buildSchema, parse, validate } = await import('graphql');
  const { tabs } = await import('./src/examples.js');
  const sdl = readdirSync(schemaDir).filter((f) => f.endsWith('.graphqls')).sort()
    .map((f) => readFileSync(join(schemaDir, f), 'utf8')).join('\n');
  const schema = buildSchema(sdl);
  const problems = [];
  for (const tab of tabs) {
    const doc = parse(tab.query);
    for (const err of validate(schema, doc)) problems.push(`${err.message} (${doc.definitions.find((d) => d.name)?.name.value} tab)`);
    if (tab.variables) JSON.parse(tab.variables);
  }
  if (problems.length) throw new Error('build: example operations do not match graph/schema:\n  ' + problems.join('\n  '));
}
