// A large opt-in parity check of the CLIP BPE tokenizer (minutes; not part of the test suite):
// every code point in runs of 24 with a rotating separator (letter, digit, contraction, space,
// ideographic space, punctuation, sigma), and all numpy chunks, encoded by transformers.js with the
// tokenizer.json of tests/clip/make_clip_tokenizer.py.
//   node clip_exhaustive.mjs OUT.jsonl
//   EMBD_CLIP_FIXTURE=OUT.jsonl build/tests/test_tokenizer_bpe
// Worth rerunning after a Node/ICU or utf8proc upgrade (then regenerate unicode_tables.h first).
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLIPTokenizer } from '@huggingface/transformers';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..');
const shared = resolve(process.env.EMBD_SHARED_DIR ?? join(repo, '..', 'shared'));
const tmp = mkdtempSync(join(tmpdir(), 'clip-'));
let tok, sha256;
try {
  execFileSync(process.env.PYTHON || 'python3', [join(repo, 'tests', 'clip', 'make_clip_tokenizer.py'), tmp,
    '--shared', shared], { stdio: 'inherit' });
  const text = readFileSync(join(tmp, 'tokenizer.json'));
  sha256 = createHash('sha256').update(text).digest('hex');
  tok = new CLIPTokenizer(JSON.parse(text.toString('utf8')), JSON.parse(readFileSync(join(tmp, 'tokenizer_config.json'), 'utf8')));
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
const lines = [JSON.stringify({ id: '@config', model: 'BPE', generator: 'tests/clip/make_clip_tokenizer.py', sha256 })];
const add = (id, text) => lines.push(JSON.stringify({ id, text, ids: tok.encode(text) }));
const seps = ['', ' ', 'a', '1', "'s", '.', '\u3000', '\u03A3'];
let k = 0;
for (let start = 0; start <= 0x10FFFF; start += 24) {
  let s = '';
  const sep = seps[k++ % seps.length];
  for (let cp = start; cp < start + 24 && cp <= 0x10FFFF; cp++)
    if (cp < 0xD800 || cp > 0xDFFF) s += String.fromCodePoint(cp) + sep;
  add(`cp_${start.toString(16)}`, s);
}
for (const l of readFileSync(join(shared, 'corpus', 'numpy_chunks.jsonl'), 'utf8').split('\n'))
  if (l) add(JSON.parse(l).id, JSON.parse(l).text);
writeFileSync(process.argv[2], lines.join('\n') + '\n');
console.log(`${process.argv[2]}: ${lines.length - 1} texts`);
