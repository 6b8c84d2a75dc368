// Writes tests/fixtures/tokens_*.jsonl: reference token ids from transformers.js, offline.
//   cd tools/tokfix && npm install --ignore-scripts && node gen_token_fixtures.mjs [model...]
// Each line: {"id": <source id>, "text": <the text>, "ids": [ids with [CLS]/[SEP], no truncation]}.
// JSON.stringify writes a lone surrogate as "\ud800"; the C side runs embd_json_fix_surrogates
// before jansson. Synthetic files start with a {"id": "@config", ...} line that says how to build
// their tokenizer from "base" (a model directory): "added_tokens" are appended to its added
// tokens, "normalizer" replaces its normalizer, "model" is merged into its model.
// tokens_xlmr.jsonl (node gen_token_fixtures.mjs xlmr) is XLM-RoBERTa's Unigram tokenizer: its
// @config line names the llama.cpp GGUF vocabulary ("gguf", under <llama.cpp src>/models) that
// gguf_to_tokenizer_json.py turns into the tokenizer.json encoded here; GGUF_PY_DIR (as ctest sets
// it) or ~/.cache/embd/llama.cpp-*/src locates it. Lone surrogates become U+FFFD there first, as
// embd_json_fix_surrogates makes them before any text reaches the tokenizer.
// tokens_clip.jsonl (node gen_token_fixtures.mjs clip) is CLIP's byte-level BPE tokenizer as
// tests/clip/make_clip_tokenizer.py generates it (its @config line holds the sha256 of that
// tokenizer.json); ids without truncation, as the other files.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, existsSync, readdirSync, mkdtempSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AutoTokenizer, BertTokenizer, CLIPTokenizer, XLMRobertaTokenizer, env } from '@huggingface/transformers';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..');
const shared = resolve(process.env.EMBD_SHARED_DIR ?? join(repo, '..', 'shared'));
const models = join(shared, 'models');
const fixtures = join(repo, 'tests', 'fixtures');

env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = models + '/';
env.useFSCache = false;

const readJsonl = (p) => readFileSync(p, 'utf8').split('\n').filter((l) => l.length).map((l) => JSON.parse(l));

// AutoTokenizer needs tokenizer_config.json; bge-small-en-v1.5 ships tokenizer.json alone, so
// build the tokenizer class from the JSON directly there (the encoding does not depend on it).
async function loadTokenizer(name, config = null) {
  const dir = join(models, name);
  if (!config && existsSync(join(dir, 'tokenizer_config.json')))
    return AutoTokenizer.from_pretrained(name, { local_files_only: true });
  const json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
  if (json.model?.type !== 'WordPiece') throw new Error(`${name}: not a WordPiece tokenizer`);
  if (config?.added_tokens) json.added_tokens = [...json.added_tokens, ...config.added_tokens];
  if (config?.normalizer) json.normalizer = config.normalizer;
  if (config?.model) Object.assign(json.model, config.model);
  const cfgPath = join(dir, 'tokenizer_config.json');
  const cfg = existsSync(cfgPath) ? JSON.parse(readFileSync(cfgPath, 'utf8')) : {};
  return new BertTokenizer(json, cfg);
}

function write(file, lines) {
  const text = lines.map((l) => JSON.stringify(l)).join('\n') + '\n';
  writeFileSync(join(fixtures, file), text);
  console.log(`${file}: ${lines.length} lines, ${text.length} bytes`);
}

const encodeAll = (tok, texts) => texts.map(({ id, text }) => ({ id, text, ids: tok.encode(text) }));

// ---- corpus texts: all edge cases, every 60th numpy chunk
const edge = readJsonl(join(shared, 'corpus', 'edge_cases.jsonl'));
const numpy = readJsonl(join(shared, 'corpus', 'numpy_chunks.jsonl')).filter((_, i) => i % 60 === 0);
const corpus = [...edge, ...numpy].map(({ id, text }) => ({ id, text }));

// ---- stress texts: Unicode corners and deterministic random strings
function stressTexts() {
  const t = [];
  const add = (id, text) => t.push({ id: `stress_${String(t.length).padStart(4, '0')}_${id}`, text });
  const cp = (...c) => String.fromCodePoint(...c);
  for (const s of ['ΣΑΣ', 'Σ', 'AΣ', 'AΣB', 'AΣ.', 'A\u0301Σ', 'AΣ\u0301', 'AΣ\u0301b', 'ΣΣ', 'A Σ', 'ὈΔΥΣΣΕΎΣ',
    'ΑΣ\'Β', 'a.Σ', 'aΣ\u00ADb', 'AΣ\u200Db', 'AΣ\u00AD', 'Σ:', 'ʰΣ', 'ΑΣ:Β', 'ΑΣ[CLS]', 'ΑΣ 中', 'ΑΣ中',
    'İstanbul', 'İ', 'İ\u0301', 'ǅungla ǅ', 'ﬃ ß ẞ', 'K Å ℃'])
    add('case', s);
  for (const s of ['한국어 텍스트', '\u1100\u1161\u11A8', 'ひらがな カタカナ ｶﾀｶﾅ', cp(0x20000, 0x2A6D6) + '𠀀a',
    '中' + cp(0x20000) + '文', '\uF900\uFA6D\u3400\u4DBF\u9FFF', '\u3007\u303B', cp(0x2F800, 0x30000, 0x31350)])
    add('cjk', s);
  // canonical reordering of marks that survive accent stripping (Mc with a combining class)
  for (const s of ['x' + cp(0x1D16D, 0x1D165) + 'y', cp(0x1D15F, 0x1D16D, 0x1D165), 'a' + cp(0x1D16D) + '\u0301' + cp(0x1D165),
    'b' + (cp(0x1D16D, 0x1D165) + '\u0301\u0316').repeat(40), 'q\u0F71\u0F72\u0F74' + cp(0x1D16E, 0x1D16D),
    'ȩ̨̧̨̧' + '\u0301\u0316'.repeat(200) + 'end', 'ḉ ṩ ǖ ᾂ ự', 'e\u0302\u0323 e\u0323\u0302'])
    add('marks', s);
  let c0 = '';
  for (let i = 0; i < 0x20; i++) c0 += String.fromCharCode(i) + 'x';
  add('c0', c0);
  let c1 = '';
  for (let i = 0x7F; i < 0xA0; i++) c1 += String.fromCharCode(i) + 'y';
  add('c1', c1);
  add('format', 'a\uFEFFb\u200Bc\u200Cd\u200De\u2060f\u00ADg\u180Eh\u061Ci\u2066j' + cp(0xE0001, 0xE0041) + 'k' + cp(0x1D173) + 'l');
  add('spaces', 'a\u0009b\u000Ac\u000Bd\u000Ce\u000Df\u0020g\u00A0h\u1680i\u2000j\u2005k\u200Al\u2028m\u2029n\u202Fo\u205Fp\u3000q\u0085r\u001Cs\u001Ft');
  add('private', '\uE000x\uF8FF ' + cp(0xF0000) + ' ' + cp(0x10FFFD) + ' \uFFFE\uFFFF ' + cp(0x1FFFE) + ' \u0378 ' + cp(0xE01F0) + ' \uFFFD!');
  add('lone_surrogates', 'a\uD800b \uDC00c \uDBFF\uDBFFd \uDFFF');
  add('word_100', 'a'.repeat(100));
  add('word_101', 'a'.repeat(101));
  add('word_100_accented', 'é'.repeat(100) + ' ' + 'e\u0301'.repeat(100) + ' ' + 'é'.repeat(101));
  add('word_cjk_split', '中'.repeat(150));
  add('unmatchable', 'abc☃def xyz😀 ☃ 😀a a😀');
  add('hashes', 'a##b ## ###c ##ing');
  add('subwords', 'unaffordable electroencephalographically antidisestablishmentarianism tokenization');
  add('special_literals', '[CLS][SEP][PAD][MASK][UNK] [cls] [CLS [CLS]] [[CLS]] x[SEP]y [MASK]ed');
  add('bracket_ctrl', '[C\u0001LS] [CL\uD800S] [CLS\u200B]');
  add('punct_unicode', '¡¿«»‹›„“”‘’‚‐‑‒–—―…‥·•‧′″※‼⁇⁈⁉⸘⸮、。〃〈〉《》「」『』【】〔〕〜〝〞〟・！＂＃％＆＇（）＊，－．／：；？＠［＼］＿｛｝');
  add('symbols', '$+<=>^`|~ €£¥© ® ™ ° ± × ÷ ∑ ∞ ≠ ≤ ≥ ← → ↑ ↓ ♠ ♣ ♥ ♦ ✓ ✗ ★');
  add('digits', '٠١٢٣٤٥٦٧٨٩ ०१२३ ①②③ ¹²³ ½¼ Ⅻ ⅻ 𝟘𝟙𝟚');
  // characters where Node's Unicode is newer than utf8proc's
  const delta = [0x897, 0x1ACF, 0x1B4E, 0x1B7F, 0x1C89, 0xA7CB, 0xA7CC, 0xA7DC, 0x105C9, 0x10D50, 0x10D6E, 0x113BB,
    0x113D4, 0x1171E, 0x16D68, 0x16EA0, 0x1E5FF, 0x11B60];
  for (const d of delta) add('newer_unicode', 'A' + cp(d) + 'B ' + cp(d) + ' x' + cp(d));
  // deterministic random strings over weighted ranges
  let seed = 0x9e3779b9;
  const rnd = () => {
    seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0;
    return seed / 4294967296;
  };
  const pick = (a, b) => a + Math.floor(rnd() * (b - a + 1));
  const ranges = [
    [30, () => pick(0x20, 0x7E)], [6, () => pick(0x00, 0x20)], [8, () => pick(0xA0, 0x24F)],
    [8, () => pick(0x300, 0x36F)], [6, () => pick(0x370, 0x4FF)], [3, () => 0x3A3],
    [6, () => pick(0x3000, 0x30FF)], [6, () => pick(0x4E00, 0x9FFF)], [4, () => pick(0xAC00, 0xD7A3)],
    [8, () => { let c; do c = pick(0x80, 0xFFFF); while (c >= 0xD800 && c <= 0xDFFF); return c; }],
    [5, () => pick(0x10000, 0x10FFFF)], [3, () => pick(0x1F300, 0x1FAFF)], [3, () => pick(0x1D100, 0x1D1FF)],
    [2, () => pick(0x2000, 0x206F)], [2, () => -1],
  ];
  const total = ranges.reduce((s, [w]) => s + w, 0);
  for (let n = 0; n < 1500; n++) {
    const len = pick(1, 60);
    let s = '';
    for (let i = 0; i < len; i++) {
      let r = rnd() * total;
      const [, f] = ranges.find(([w]) => (r -= w) < 0) ?? ranges[0];
      const c = f();
      s += c < 0 ? (rnd() < 0.5 ? '\uD83D' : '\uDE00') + 'z' : cp(c); // lone surrogate, never paired
    }
    add('random', s);
  }
  return t;
}

// ---- added tokens with flags (appended to bge-small-en-v1.5's), and texts that exercise them
const ADDED = [
  { id: 30522, content: '<ent>', single_word: false, lstrip: true, rstrip: true, normalized: false, special: true },
  { id: 30523, content: '<entity>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
  { id: 30524, content: 'Foo Bar', single_word: false, lstrip: false, rstrip: false, normalized: true, special: false },
  { id: 30525, content: 'naïve', single_word: false, lstrip: false, rstrip: false, normalized: true, special: false },
  { id: 30526, content: 'embd', single_word: true, lstrip: false, rstrip: false, normalized: false, special: false },
  { id: 30527, content: 'ΣΑΣ', single_word: false, lstrip: false, rstrip: true, normalized: false, special: false },
  { id: 30528, content: '##xyz', single_word: false, lstrip: false, rstrip: false, normalized: false, special: false },
  { id: 30529, content: 'qqqz', single_word: false, lstrip: false, rstrip: false, normalized: false, special: false },
  { id: 2003, content: 'is', single_word: false, lstrip: false, rstrip: false, normalized: true, special: false },
  { id: 30530, content: '[cls]', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true },
  { id: 30531, content: ' spaced ', single_word: false, lstrip: true, rstrip: false, normalized: false, special: false },
  { id: 30532, content: '<dup>', single_word: false, lstrip: true, rstrip: true, normalized: false, special: true },
  { id: 30533, content: '<dup>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
  { content: 'noflags', id: 30534 },
  // canonical ordering: the normalized content is sorted by combining class, texts need not be
  { id: 30535, content: 'x\u{1D16D}\u{1D165}', normalized: true, special: false },
  { id: 30536, content: 'q' + '\u{1D16D}\u{1D165}'.repeat(40), normalized: true, special: false },
  // "Dup" and "dup" normalize alike: a lookup of the raw trimmed text finds the first, the
  // normalized split the second, so lstrip/rstrip trims show in the ids
  { id: 30537, content: 'Dup', normalized: true, special: false },
  { id: 30538, content: 'dup', normalized: true, special: false },
];

function addedTexts() {
  const t = [];
  const add = (text) => t.push({ id: `added_${String(t.length).padStart(3, '0')}`, text });
  for (const s of ['a <ent> b', 'a<ent>b', 'a  \t<ent>\n  b', '<entity> <ent> <enti', '<ent><ent>  <ent>',
    'Foo Bar foo bar FOO BAR foobar Foo  Bar', 'naïve naive NAÏVE naïveté', 'embd embdx xembd EMBD embd.',
    'ΣΑΣ ΣΑΣ. σας ΣΑΣΣ   after', '##xyz abcxyz xyz ##xyzz', 'qqqz QQQZ qqqzz aqqqz', 'this is his island',
    '[cls] [CLS] [Cls] x[cls]y', 'a spaced b  spaced c', 'x <dup> y<dup>z', 'noflags NOFLAGS', ' <ent> ', '<ent>',
    '', '   ', 'Foo Bar', 'is', 'x\u{1D16D}\u{1D165} x\u{1D165}\u{1D16D} X\u{1D165}\u{1D16D}\u0301',
    'q' + '\u{1D165}\u{1D16D}'.repeat(40), 'q' + '\u{1D165}'.repeat(40) + '\u{1D16D}'.repeat(40),
    'q' + '\u{1D16D}\u{1D165}'.repeat(39), 'Dup <ent> Dup', 'Dup<ent>Dup', 'Dup <entity> Dup', 'DUP dup Dup',
    'Dup\t<ent>\u3000Dup', 'Foo\tBar Foo\u00A0Bar Foo\u3000Bar Foo\u200BBar Foo\u0301 Bar', 'Foo\n\nBar']) add(s);
  return [...t, ...edge.map(({ id, text }) => ({ id, text })), ...numpy.slice(0, 40)];
}

// ---- XLM-RoBERTa (SentencePiece Unigram) from llama.cpp's GGUF vocabulary
const XLMR_GGUF = 'ggml-vocab-nomic-bert-moe.gguf';

function llamaSrc() {
  if (process.env.GGUF_PY_DIR) return resolve(process.env.GGUF_PY_DIR, '..');
  const cache = join(homedir(), '.cache', 'embd');
  const d = readdirSync(cache).find((x) => x.startsWith('llama.cpp-'));
  if (!d) throw new Error('no llama.cpp source under ~/.cache/embd (run scripts/build-llama.sh)');
  return join(cache, d, 'src');
}

function xlmrTokenizer() {
  const tmp = mkdtempSync(join(tmpdir(), 'xlmr-'));
  try {
    const out = join(tmp, 'tokenizer.json');
    execFileSync(process.env.PYTHON || 'python3', [join(here, 'gguf_to_tokenizer_json.py'),
      join(llamaSrc(), 'models', XLMR_GGUF), out], { stdio: 'inherit' });
    const json = JSON.parse(readFileSync(out, 'utf8'));
    // xlm-roberta-base's tokenizer_config.json
    const cfg = { bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', sep_token: '</s>', cls_token: '<s>',
      pad_token: '<pad>', mask_token: '<mask>', model_max_length: 512, clean_up_tokenization_spaces: true };
    return new XLMRobertaTokenizer(json, cfg);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function multilingualTexts() {
  const t = [];
  const add = (id, text) => t.push({ id: `xlmr_${String(t.length).padStart(3, '0')}_${id}`, text });
  const cp = (...c) => String.fromCodePoint(...c);
  const langs = {
    zh: '我们今天去北京大学参观，天气很好。机器学习是人工智能的一个分支。',
    zh_trad: '臺灣的繁體中文與簡體中文有所不同。',
    ja: '東京は日本の首都です。ひらがなとカタカナ、そして漢字を使います。ｶﾀｶﾅ ｶﾞｷﾞ',
    ko: '안녕하세요, 저는 학생입니다. 한국어 텍스트 토큰화 테스트.',
    ar: 'مرحبا بالعالم! هذه جملة باللغة العربية مع أرقام ١٢٣ وتشكيل: مُحَمَّد.',
    he: 'שלום עולם, זהו משפט בעברית עם ניקוד: שָׁלוֹם.',
    fa: 'این یک جمله فارسی است با نیم‌فاصله.',
    hi: 'नमस्ते दुनिया! यह हिन्दी में एक वाक्य है। क्षत्रिय, ज्ञान, श्री।',
    bn: 'আমি বাংলায় গান গাই।',
    ta: 'தமிழ் ஒரு பழமையான மொழி.',
    th: 'ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ สวัสดีครับ',
    km: 'ភាសាខ្មែរ',
    my: 'မြန်မာဘာသာ',
    ka: 'ქართული ენა',
    hy: 'Հայերեն լեզու',
    am: 'አማርኛ ቋንቋ',
    si: 'සිංහල භාෂාව',
    bo: 'བོད་ཡིག',
    ru: 'Привет, мир! Съешь же ещё этих мягких французских булок, да выпей чаю.',
    uk: 'Ґанок, їжак, європейський.',
    el: 'Γειά σου Κόσμε! ΟΔΥΣΣΕΥΣ και ὀδυσσεύς.',
    tr: 'İstanbul’da ılık bir gün; IĞDIR ışık.',
    vi: 'Tiếng Việt có nhiều dấu: người, được, Nguyễn, quốc ngữ.',
    de: 'Donaudampfschifffahrtsgesellschaftskapitänsmütze und Straße, GRÜSSE, Ärger.',
    fr: 'L’œuvre « française » coûte 12,50 € — naïveté, cœur.',
    es: '¿Dónde está la niña? ¡Olé!',
    pl: 'Zażółć gęślą jaźń.',
    sw: 'Habari ya asubuhi, rafiki yangu.',
    mixed: 'English 中文 العربية हिन्दी русский 日本語 한국어 ελληνικά',
  };
  for (const [k, v] of Object.entries(langs)) add(k, v);
  for (const s of ['😀', '👨‍👩‍👧‍👦 family', '🏳️‍🌈 🇩🇪🇯🇵 flags', '👍🏽👍🏿', '1️⃣ #️⃣', 'I ❤️ NY', '🤖🧠💡 ai', '✈︎ ✈️'])
    add('emoji', s);
  for (const s of ['e\u0301 é', 'a\u0308\u0301 ǘ ṻ', 'Å Å Å', 'ﬁ ﬂ ﬃ ﬄ ſt', '½ ¼ ¾ ² ³ ⁴ ₅', 'Ⅻ ⅻ ① ⑳ ㉑',
    '㎏ ㍿ ㋿ ℃ ℉ № ™ ℡', 'ﷺ ﷻ', '𝐀𝐁𝐂 𝕏 𝔸 𝒜', 'ＡＢＣ ａｂｃ １２３ ！？＆', 'a～b ～ 〜 ~', '～\u0301x ～～',
    'ｶﾞｷﾞｸﾞ ﾊﾟ', '\u1100\u1161\u11A8 각', 'x\u0327\u0301 ḉ', 'Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇', 'q' + '\u0301\u0316'.repeat(50),
    '¨ ´ ¸ ˜ ΅ ῁', '\u0301 leading mark', 'ǅ ǆ Ǆ', 'µ μ K K'])
    add('nfkc', s);
  for (const s of ['a  b', 'a   b    c', '  leading', 'trailing  ', ' ', '   ', 'a\tb\t\tc', 'line1\nline2\n\n\nline3',
    'a\r\nb', 'a\u00A0b\u00A0\u00A0c', 'a\u3000b', 'a\u2002\u2003b', 'a\u200Bb', 'a\uFEFFb', 'x\u2581y ▁▁ ▁',
    'a \u0085 b', 'a\u2028b\u2029c', 'a\u000Bb\u000Cc', ' \t \n '])
    add('space', s);
  let c0 = '';
  for (let i = 1; i < 0x20; i++) c0 += String.fromCharCode(i) + 'x';
  add('c0', c0);
  let c1 = '';
  for (let i = 0x7F; i < 0xA0; i++) c1 += String.fromCharCode(i) + 'y';
  add('c1', c1);
  add('nul', 'a\u0000b \u0000 \u0000\u0000');
  add('fffd', 'a\uFFFDb \uFFFD');
  add('format', 'a\u00ADb\u200Cc\u200Dd\u2060e\u180Ef\u061Cg\u2066h' + cp(0xE0001, 0xE0041) + 'i');
  add('private', '\uE000x\uF8FF ' + cp(0xF0000) + ' ' + cp(0x10FFFD) + ' \uFFFE\uFFFF \u0378');
  for (const s of ['<s>', '</s>', '<pad>', '<unk>', '<mask>', 'a <mask> b', 'a  <mask>  b', 'a\t<mask>', '<mask>x',
    'x<s>y</s>z', '<s><s>', '<S> <Mask>', '＜s＞ ＜/s＞ ＜mask＞ ＜unk＞', 'a ＜unk＞ b', '<unk', '<<s>>', '[PAD250001]'])
    add('special', s);
  for (const s of ['a'.repeat(300), 'ab'.repeat(500), '中'.repeat(300), 'x'.repeat(50) + ' ' + 'y'.repeat(50),
    'pneumonoultramicroscopicsilicovolcanoconiosis', 'Rindfleischetikettierungsüberwachungsaufgabenübertragungsgesetz',
    'https://example.com/path/to/resource?query=value&other=123#frag', 'user.name+tag@example.co.uk',
    'C:\\Users\\name\\file.txt', '3.14159265358979 1,000,000 0xDEADBEEF 1e-10', 'snake_case_identifier camelCaseIdentifier'])
    add('long', s);
  // characters of the XLM-R vocabulary's neighbourhood: unknown scripts and symbols
  for (const s of [cp(0x1F9E0, 0x1FAE8, 0x1FAF8), cp(0x10900, 0x10901) + ' phoenician', cp(0x13000, 0x13001) + ' hieroglyphs',
    cp(0x1D11E) + ' music', '\u2603\u2604 ☃☃☃', cp(0x2A6D6, 0x20000, 0x30000), 'ꙮ ꙮꙮ',
    // Unicode newer than utf8proc's (ugm_nfkc_delta.h): compatibility forms and compositions
    cp(0xA7F1, 0x1CCD6, 0x1CCF9) + ' ' + cp(0x16D67, 0x16D67) + ' ' + cp(0x1611E, 0x1611E, 0x1611F) + ' ' +
    cp(0x105D2, 0x307) + ' ' + cp(0x113C2, 0x113C2) + ' ' + cp(0x16D63, 0x16D67, 0x16D67)])
    add('rare', s);
  return t;
}

// ---- CLIP (byte-level BPE) from tests/clip/make_clip_tokenizer.py
function clipTokenizer() {
  const tmp = mkdtempSync(join(tmpdir(), 'clip-'));
  try {
    execFileSync(process.env.PYTHON || 'python3', [join(repo, 'tests', 'clip', 'make_clip_tokenizer.py'), tmp,
      '--shared', shared], { stdio: 'inherit' });
    const text = readFileSync(join(tmp, 'tokenizer.json'));
    const sha256 = createHash('sha256').update(text).digest('hex');
    const cfg = JSON.parse(readFileSync(join(tmp, 'tokenizer_config.json'), 'utf8'));
    return { tok: new CLIPTokenizer(JSON.parse(text.toString('utf8')), cfg), sha256 };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function clipTexts() {
  const t = [];
  const add = (id, text) => t.push({ id: `clip_${String(t.length).padStart(3, '0')}_${id}`, text });
  const cp = (...c) => String.fromCodePoint(...c);
  for (const s of ['a photo of a cat', 'A PHOTO OF A DOG.', 'a diagram', 'two dogs playing in the snow',
    'The quick brown fox jumps over the lazy dog!', 'an astronaut riding a horse on mars, digital art',
    'Mr. Smith went to Washington D.C. in 1999.'])
    add('english', s);
  for (const s of ["it's", "IT'S", "don't can't won't", "they're we've I'm you'll he'd", "'s 't 're 've 'm 'll 'd",
    "o'clock rock'n'roll", "'''s", "''", "'", "x'sy 'S 'T 'RE", "l'été", 'it\u2019s curly', "'d'd'd", "' s", "'ss 'ree 'lll"])
    add('contraction', s);
  for (const s of ['1', '12', '2024-01-31', '3.14159', '1,000,000', '0xDEADBEEF', '١٢٣ ٤٥', '½ ² ³ ⅻ Ⅻ ①②', '𝟘𝟙𝟚 ０１２',
    'abc123def', 'v1.2.3-rc4', '٣abc'])
    add('number', s);
  for (const s of ['hello, world!', '...', '?!?!', '!!!', '(a) [b] {c}', '--flag=value', 'a+b=c', '@user #tag $5 %20 ^_^',
    '«quoted» “curly” ‘single’', '—em–en-dash', '<|startoftext|>', '<|endoftext|>', 'a<|endoftext|>b',
    '<|startoftext|>hello<|endoftext|>', '.<|endoftext|>', '<|ENDOFTEXT|>', '<|endoftext', '<<|endoftext|>>',
    '<|startoftext|><|startoftext|>', 'x </w> y</w>', '</w>'])
    add('punct', s);
  for (const s of ['def f(x):\n    return x * 2  # double', 'for (int i = 0; i < n; i++) { a[i] += b[i]; }',
    'import numpy as np\nnp.array([1, 2, 3]).reshape(-1, 1)', 'SELECT * FROM t WHERE id = 42;',
    'https://example.com/path?q=1&r=two#frag', 'user.name+tag@example.co.uk', 'snake_case camelCase PascalCase kebab-case',
    '\tindented\n\n\nlines\r\n'])
    add('code', s);
  for (const s of ['中文', '我们今天去北京大学参观。', '日本語のテキスト ひらがな カタカナ ｶﾀｶﾅ', '한국어 텍스트', '中' + cp(0x20000) + '文',
    'Привет, мир!', 'Γειά σου Κόσμε! ΟΔΥΣΣΕΥΣ ΣΑΣ', 'مرحبا بالعالم', 'שלום עולם', 'नमस्ते दुनिया', 'ภาษาไทย', 'İstanbul IĞDIR'])
    add('script', s);
  for (const s of ['😀', '👨‍👩‍👧‍👦 family', '🏳️‍🌈 🇩🇪🇯🇵', '👍🏽👍🏿', '1️⃣ #️⃣', 'I ❤️ NY', 'cat🐱dog🐶', '✈︎ ✈️', '🤖🧠💡'])
    add('emoji', s);
  for (const s of ['café naïve résumé', 'cafe\u0301 nai\u0308ve', 'Å Å Å', 'e\u0301\u0301 \u0301lead', 'ﬁ ﬂ ﬃ', 'ǅ ǆ Ǆ',
    'Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇', 'ÀÉÎÕÜ', 'ẞ ß', 'K K Ω Ω'])
    add('accent', s);
  for (const s of ['', ' ', '   ', '\t', '\n\n', 'a  b', 'a   b    c', '  leading', 'trailing  ', 'a\tb\t\tc',
    'a\u00A0b\u00A0\u00A0c', 'a\u3000b', 'a\u2002\u2003b', 'a\u200Bb', 'a\uFEFFb', 'a\u0085b', 'a\u2028b\u2029c',
    'a\u000Bb\u000Cc', 'a\u180Eb', 'a\u1680b', ' \t \n ', 'x\u0000y \u0000'])
    add('space', s);
  for (const s of ['a'.repeat(300), 'ab'.repeat(500), 'x'.repeat(50) + ' ' + 'y'.repeat(50), '中'.repeat(300), '!'.repeat(200),
    'pneumonoultramicroscopicsilicovolcanoconiosis', 'Rindfleischetikettierungsüberwachungsaufgabenübertragungsgesetz',
    'supercalifragilisticexpialidocious'.repeat(20), '😀'.repeat(100), 'é'.repeat(150)])
    add('long', s);
  // over 77 tokens: the C side also checks truncation to 77 on these
  for (const s of [Array.from({ length: 120 }, (_, i) => `word${i}`).join(' '),
    'a photo of ' + 'a very '.repeat(60) + 'large cat', '1 2 3 4 5 6 7 8 9 0 '.repeat(12)])
    add('overlong', s);
  return t;
}

const wanted = process.argv.slice(2);
if (wanted.includes('clip')) {
  const { tok, sha256 } = clipTokenizer();
  const stress = stressTexts();
  const texts = [...clipTexts(), ...edge.map(({ id, text }) => ({ id, text })), ...numpy.filter((_, i) => i % 2 === 0),
    ...multilingualTexts(), ...stress.filter((x) => !x.id.includes('random')),
    ...stress.filter((x) => x.id.includes('random')).slice(0, 600)]
    .map(({ id, text }) => ({ id, text: text.toWellFormed() }));
  write('tokens_clip.jsonl', [{ id: '@config', model: 'BPE', generator: 'tests/clip/make_clip_tokenizer.py', sha256 },
    ...encodeAll(tok, texts)]);
}
if (wanted.includes('xlmr')) {
  const tok = xlmrTokenizer();
  const numpyFew = numpy.filter((_, i) => i % 4 === 0);
  const stress = stressTexts();
  const texts = [...edge.map(({ id, text }) => ({ id, text })), ...numpyFew, ...multilingualTexts(),
    ...stress.filter((x) => !x.id.includes('random')), ...stress.filter((x) => x.id.includes('random')).slice(0, 400)]
    .map(({ id, text }) => ({ id, text: text.toWellFormed() }));
  write('tokens_xlmr.jsonl', [{ id: '@config', gguf: XLMR_GGUF, model: 'Unigram' }, ...encodeAll(tok, texts)]);
}
const all = ['bge-small-en-v1.5', 'all-MiniLM-L6-v2'];
for (const name of wanted.length ? wanted.filter((x) => x !== 'xlmr' && x !== 'clip') : all) {
  if (!existsSync(join(models, name, 'tokenizer.json'))) throw new Error(`${name}: no tokenizer.json`);
  write(`tokens_${name}.jsonl`, encodeAll(await loadTokenizer(name), corpus));
}
if (!wanted.length) {
  console.log('tokens_xlmr.jsonl: node gen_token_fixtures.mjs xlmr');
  const base = 'bge-small-en-v1.5';
  const stress = stressTexts();
  write('tokens_stress.jsonl', [{ id: '@config', base }, ...encodeAll(await loadTokenizer(base), stress)]);
  const added = { base, added_tokens: ADDED };
  write('tokens_added.jsonl', [{ id: '@config', ...added }, ...encodeAll(await loadTokenizer(base, added), addedTexts())]);
  // other BertNormalizer settings and a small max_input_chars_per_word, on fewer texts
  const some = [...stress.filter((x) => !x.id.includes('random')), ...stress.filter((x) => x.id.includes('random')).slice(0, 400), ...edge];
  const bert = (o) => ({ type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true, ...o });
  const variants = {
    cased: { normalizer: bert({ lowercase: false }) },
    nostrip: { normalizer: bert({ strip_accents: false }), model: { max_input_chars_per_word: 12 } },
    noclean: { normalizer: bert({ clean_text: false, handle_chinese_chars: false, strip_accents: true }) },
  };
  for (const [name, v] of Object.entries(variants)) {
    const config = { base, ...v };
    write(`tokens_${name}.jsonl`, [{ id: '@config', ...config }, ...encodeAll(await loadTokenizer(base, config), some)]);
  }
}
