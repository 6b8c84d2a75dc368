#!/usr/bin/env python3
"""Writes the Hugging Face tokenizer.json of a SentencePiece Unigram (XLM-RoBERTa) GGUF vocabulary,
in the form XLMRobertaTokenizerFast saves it: Precompiled charsmap (+ Replace " {2,}" when
remove_extra_whitespaces), Metaspace, <s> $A </s>, <mask> with lstrip. llama.cpp's padding rows
(token type 5 at the end of the vocabulary) are left out, as the Hugging Face vocabulary lacks them.

    gguf_to_tokenizer_json.py VOCAB.gguf OUT.json

tests/unit/test_tokenizer_ugm.c runs it on llama.cpp's models/ggml-vocab-nomic-bert-moe.gguf, and
gen_token_fixtures.mjs feeds its output to transformers.js for tests/fixtures/tokens_xlmr.jsonl.
Stdlib only: gguf-py's reader takes ~30 s on a 250k vocabulary, this ~1 s."""
import base64
import json
import os
import struct
import sys

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
_SCALAR = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: '?', 10: 'Q', 11: 'q', 12: 'd'}


def read_kv(path):
    """The key/value section of a GGUF file (version 2 or 3, little-endian)."""
    with open(path, 'rb') as f:
        buf = f.read()
    if buf[:4] != b'GGUF':
        raise SystemExit(f'{path}: not a GGUF file')
    version, = struct.unpack_from('<I', buf, 4)
    if version < 2:
        raise SystemExit(f'{path}: GGUF version {version} is not supported')
    _, n_kv = struct.unpack_from('<QQ', buf, 8)
    off = 24

    def string(off):
        n, = struct.unpack_from('<Q', buf, off)
        return buf[off + 8:off + 8 + n].decode('utf-8'), off + 8 + n

    def value(t, off):
        if t == 8:
            return string(off)
        if t == 9:
            et, n = struct.unpack_from('<IQ', buf, off)
            off += 12
            if et == 8:
                out = []
                for _ in range(n):
                    v, off = string(off)
                    out.append(v)
                return out, off
            if et == 0:
                return bytes(buf[off:off + n]), off + n
            fmt = _SCALAR[et]
            return list(struct.unpack_from(f'<{n}{fmt}', buf, off)), off + n * struct.calcsize(fmt)
        fmt = _SCALAR[t]
        return struct.unpack_from('<' + fmt, buf, off)[0], off + struct.calcsize(fmt)

    kv = {}
    for _ in range(n_kv):
        key, off = string(off)
        t, = struct.unpack_from('<I', buf, off)
        kv[key], off = value(t, off + 4)
    return kv


def field(r, key, default=None):
    return r.get(key, default)


def convert(path):
    r = read_kv(path)
    if field(r, 'tokenizer.ggml.model') != 't5':
        raise SystemExit(f'{path}: tokenizer.ggml.model is not t5 (Unigram)')
    tokens = field(r, 'tokenizer.ggml.tokens')
    scores = field(r, 'tokenizer.ggml.scores')
    types = field(r, 'tokenizer.ggml.token_type')
    n = len(tokens)
    while n and types[n - 1] == UNUSED:
        n -= 1
    if any(t == UNUSED for t in types[:n]):
        raise SystemExit('unused tokens inside the vocabulary')
    unk = field(r, 'tokenizer.ggml.unknown_token_id', types.index(UNKNOWN))
    bos = field(r, 'tokenizer.ggml.bos_token_id')
    eos = field(r, 'tokenizer.ggml.eos_token_id')
    added = []
    for i in range(n):
        if types[i] in (UNKNOWN, CONTROL, USER_DEFINED):
            special = types[i] != USER_DEFINED
            added.append({'id': i, 'content': tokens[i], 'single_word': False,
                          'lstrip': tokens[i] == '<mask>' and types[i] == CONTROL, 'rstrip': False,
                          'normalized': False, 'special': special})
    norms = []
    charsmap = field(r, 'tokenizer.ggml.precompiled_charsmap')
    if charsmap:
        norms.append({'type': 'Precompiled', 'precompiled_charsmap': base64.b64encode(charsmap).decode()})
    if field(r, 'tokenizer.ggml.remove_extra_whitespaces', False):
        norms.append({'type': 'Replace', 'pattern': {'Regex': ' {2,}'}, 'content': ' '})
    scheme = 'always' if field(r, 'tokenizer.ggml.add_space_prefix', True) else 'never'
    meta = {'type': 'Metaspace', 'replacement': '\u2581', 'prepend_scheme': scheme, 'split': True}
    s, e = tokens[bos], tokens[eos]
    return {
        'version': '1.0', 'truncation': None, 'padding': None,
        'added_tokens': added,
        'normalizer': {'type': 'Sequence', 'normalizers': norms},
        'pre_tokenizer': meta,
        'post_processor': {
            'type': 'TemplateProcessing',
            'single': [{'SpecialToken': {'id': s, 'type_id': 0}}, {'Sequence': {'id': 'A', 'type_id': 0}},
                       {'SpecialToken': {'id': e, 'type_id': 0}}],
            'pair': [{'SpecialToken': {'id': s, 'type_id': 0}}, {'Sequence': {'id': 'A', 'type_id': 0}},
                     {'SpecialToken': {'id': e, 'type_id': 0}}, {'SpecialToken': {'id': e, 'type_id': 0}},
                     {'Sequence': {'id': 'B', 'type_id': 0}}, {'SpecialToken': {'id': e, 'type_id': 0}}],
            'special_tokens': {s: {'id': s, 'ids': [bos], 'tokens': [s]}, e: {'id': e, 'ids': [eos], 'tokens': [e]}},
        },
        'decoder': dict(meta),
        'model': {'type': 'Unigram', 'unk_id': unk, 'byte_fallback': False,
                  'vocab': [[tokens[i], float(scores[i])] for i in range(n)]},
    }


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    doc = convert(sys.argv[1])
    tmp = sys.argv[2] + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(doc, f, ensure_ascii=False)
    os.replace(tmp, sys.argv[2])


if __name__ == '__main__':
    main()
