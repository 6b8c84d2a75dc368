// A large opt-in parity check of the Unigram tokenizer (minutes; not part of the test suite): every
// code point alone and in runs, all numpy chunks, 20000 random mixes of bases, marks, jamo, kana,
// spaces and controls, encoded by transformers.js with XLM-R's tokenizer.json from llama.cpp's GGUF.
//   node xlmr_exhaustive.mjs OUT.jsonl
//   EMBD_XLMR_FIXTURE=OUT.jsonl GGUF_PY_DIR=... build/tests/test_tokenizer_ugm
// Worth rerunning after a Node/ICU or utf8proc upgrade (then regenerate ugm_nfkc_delta.h first).
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, readdirSync, mkdtempSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { XLMRobertaTokenizer } from '@huggingface/transformers';

const here = dirname(fileURLToPath(import.meta.url));
const shared = resolve(process.env.EMBD_SHARED_DIR ?? join(here, '..', '..', '..', 'shared'));
const cache = join(homedir(), '.cache', 'embd');
const llama = process.env.GGUF_PY_DIR ? resolve(process.env.GGUF_PY_DIR, '..')
  : join(cache, readdirSync(cache).find((x) => x.startsWith('llama.cpp-')), 'src');
const tmp = mkdtempSync(join(tmpdir(), 'xlmr-'));
let json;
try {
  execFileSync(process.env.PYTHON || 'python3', [join(here, 'gguf_to_tokenizer_json.py'),
    join(llama, 'models', 'ggml-vocab-nomic-bert-moe.gguf'), join(tmp, 't.json')], { stdio: 'inherit' });
  json = JSON.parse(readFileSync(join(tmp, 't.json'), 'utf8'));
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
const tok = new XLMRobertaTokenizer(json, { eos_token: '</s>' });
const readJsonl = (p) => readFileSync(p, 'utf8').split('\n').filter((l) => l.length).map((l) => JSON.parse(l));
const texts = [...readJsonl(join(shared, 'corpus', 'edge_cases.jsonl')), ...readJsonl(join(shared, 'corpus', 'numpy_chunks.jsonl'))];
let buf = [];
for (let c = 0xA0; c <= 0x10FFFF; c++) {
  if ((c >= 0xD800 && c <= 0xDFFF) || (c >= 0x40000 && c < 0xE0000) || (c >= 0xF0000 && c % 4096)) continue;
  buf.push(String.fromCodePoint(c));
  if (buf.length === 40) {
    texts.push({ id: `cp_${c.toString(16)}`, text: buf.join(' ') }, { id: `adj_${c.toString(16)}`, text: 'a' + buf.join('') });
    buf = [];
  }
}
let seed = 12345;
const rnd = () => { seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0; return seed / 4294967296; };
const pools = [[0x41, 0x7A], [0x300, 0x36F], [0xC0, 0x24F], [0x1100, 0x11FF], [0xAC00, 0xAC40], [0x3099, 0x309A],
  [0x3040, 0x30FF], [0xFF61, 0xFF9F], [0x900, 0x97F], [0x20, 0x20], [0x2000, 0x206F], [0xFE00, 0xFE0F], [0x1F300, 0x1F5FF],
  [0x0, 0x1F], [0x7F, 0x9F], [0xFF5E, 0xFF5E], [0x2581, 0x2581], [0x1D400, 0x1D7FF], [0xF900, 0xFAFF], [0x1E00, 0x1EFF],
  [0x0F00, 0x0FFF], [0x1000, 0x109F], [0x1611E, 0x16129], [0x16D63, 0x16D6A], [0x113B8, 0x113C9]];
for (let n = 0; n < 20000; n++) {
  let s = '';
  const len = 1 + Math.floor(rnd() * 30);
  for (let i = 0; i < len; i++) {
    const [a, b] = pools[Math.floor(rnd() * pools.length)];
    s += String.fromCodePoint(a + Math.floor(rnd() * (b - a + 1)));
  }
  texts.push({ id: `rnd_${n}`, text: s });
}
const lines = [{ id: '@config', gguf: 'ggml-vocab-nomic-bert-moe.gguf', model: 'Unigram' },
  ...texts.map(({ id, text }) => { text = text.toWellFormed(); return { id, text, ids: tok.encode(text) }; })];
writeFileSync(process.argv[2], lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
console.log(`${process.argv[2]}: ${lines.length} lines`);
