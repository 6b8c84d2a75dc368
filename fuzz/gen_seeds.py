#!/usr/bin/env python3
"""Regenerates the seed corpora fuzz/corpus/<target>/ (deterministic; small files only) from
../shared/corpus/edge_cases.jsonl, hand-written cases and tiny GGUFs made by tools/gen_random_model.py.

  /usr/bin/python3 fuzz/gen_seeds.py        (needs numpy and llama.cpp's gguf-py, as that tool does)
  /usr/bin/python3 fuzz/gen_seeds.py --auth-only   (just fuzz/corpus/fuzz_auth, stdlib only)
  /usr/bin/python3 fuzz/gen_seeds.py --image-only  (fuzz_auth and fuzz/corpus/fuzz_image; needs PIL)
"""
import json
import os
import shutil
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("EMBD_SHARED_DIR") or os.path.join(ROOT, "..", "shared")
OUT = os.path.join(ROOT, "fuzz", "corpus")
MAX_GGUF = 200 * 1024


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))


def edge_cases():
    with open(os.path.join(SHARED, "corpus", "edge_cases.jsonl"), "rb") as f:
        for raw in f:
            obj = json.loads(raw)
            # surrogatepass: the lone-surrogate case becomes the invalid UTF-8 bytes ED A0 80
            yield obj["id"], raw.rstrip(b"\n"), obj["text"].encode("utf-8", "surrogatepass")


def cut_utf8(b, n):
    """At most n bytes, not splitting a character."""
    if len(b) <= n:
        return b
    while n and (b[n] & 0xC0) == 0x80:
        n -= 1
    return b[:n]


def tokenizer_seeds():
    for i, (name, _, text) in enumerate(edge_cases()):
        # byte 0: tokenizer variant << 6 | max_tokens (mostly unlimited, some tight limits)
        sel = (i % 4) << 6 | (0, 0, 1, 2, 3, 5, 8, 63)[i % 8]
        write("fuzz_tokenizer", name, bytes([sel]) + cut_utf8(text, 256))
    for name, text in {"special_literals": b"[CLS] hello [SEP][MASK] [unused0] [UNK]",
                       "invalid_ff": b"ok \xff",
                       "truncated_2byte": b"caf\xc3",
                       "overlong_slash": b"a\xc0\xafb",
                       "surrogate_utf8": b"a\xed\xa0\x80b",
                       "above_10ffff": b"\xf4\x90\x80\x80",
                       "nul_inside": b"a\x00b c\x00"}.items():
        write("fuzz_tokenizer", name, b"\x04" + text)


def jsonfix_seeds():
    for name, line, _ in edge_cases():
        if len(line) <= 400:
            write("fuzz_jsonfix", name, line)
    for name, text in {"lone_high": r'{"text":"a\ud800b"}',
                       "lone_low": r'{"text":"\udc00"}',
                       "valid_pair": r'{"text":"\ud83d\ude00"}',
                       "high_high_low": r'["\ud800\ud800\udc00"]',
                       "escaped_backslash": r'{"text":"\\ud800"}',
                       "high_then_bad_escape": r'"\uD800\u12"',
                       "unterminated": r'{"text":"\ud8',
                       "outside_string": r'\ud800 {"a":"\uDBFF"}',
                       "nul_escape": r'{"text":"a\u0000b"}',
                       "quote_escape": r'{"t\"\ud800":"\"\udfff\\"}'}.items():
        write("fuzz_jsonfix", name, text)


def micro_tokenizer(**over):
    """A bge-style tokenizer.json with a 28-token vocabulary."""
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "hello", "world", "un", "##aff",
             "##able", "##s", "##ing", ",", ".", "!", "'", "-", "\u4f60", "\u597d", "w", "##\u00f6",
             "##rld", "x", "##x", "1", "##2"]
    special = lambda i, w: {"id": i, "content": w, "single_word": False, "lstrip": False, "rstrip": False,
                            "normalized": False, "special": True}
    tj = {"version": "1.0", "truncation": None, "padding": None,
          "added_tokens": [special(i, w) for i, w in enumerate(words[:5])],
          "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                         "strip_accents": None, "lowercase": True},
          "pre_tokenizer": {"type": "BertPreTokenizer"},
          "post_processor": {"type": "TemplateProcessing",
                             "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                                        {"Sequence": {"id": "A", "type_id": 0}},
                                        {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                             "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                                                "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
          "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
          "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                    "max_input_chars_per_word": 100, "vocab": {w: i for i, w in enumerate(words)}}}
    for path, val in over.items():  # "a.b": replace tj["a"]["b"]
        *parents, leaf = path.split(".")
        node = tj
        for p in parents:
            node = node[p]
        node[leaf] = val
    return json.dumps(tj, ensure_ascii=False, separators=(",", ":"))


def tokenizer_json_seeds():
    T = "fuzz_tokenizer_json"
    base = micro_tokenizer()
    write(T, "base.json", base)
    write(T, "bert_processing.json", micro_tokenizer(
        post_processor={"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]}))
    write(T, "no_normalizer.json", micro_tokenizer(normalizer=None))
    write(T, "cased_noclean.json", micro_tokenizer(**{
        "normalizer.lowercase": False, "normalizer.strip_accents": False, "normalizer.clean_text": False,
        "normalizer.handle_chinese_chars": False}))
    added = json.loads(base)["added_tokens"] + [
        {"id": 28, "content": "<ent>", "lstrip": True, "rstrip": True, "normalized": False, "special": False},
        {"id": 29, "content": "W\u00f6rld", "normalized": True, "special": False},
        {"id": 30, "content": " x ", "special": True}]
    write(T, "added_tokens.json", micro_tokenizer(added_tokens=added))
    holes = {"[UNK]": 0, "[CLS]": 7, "[SEP]": 9, "hel": 20, "@@lo": 21, "a": 100}
    write(T, "holes_prefix.json", micro_tokenizer(**{
        "model.vocab": holes, "model.continuing_subword_prefix": "@@", "model.max_input_chars_per_word": 4,
        "added_tokens": []}))
    write(T, "minimal.json", '{"model":{"vocab":{"[UNK]":0,"[CLS]":1,"[SEP]":2}},'
          '"pre_tokenizer":{"type":"BertPreTokenizer"},'
          '"post_processor":{"type":"BertProcessing","cls":["[CLS]",1],"sep":["[SEP]",2]}}')
    write(T, "bpe_rejected.json", micro_tokenizer(**{"model.type": "BPE"}))
    write(T, "truncated.json", base[: len(base) // 2])
    return base


def gguf_seeds(tok_json):
    """Tiny models from tools/gen_random_model.py (its key layout) plus broken variants."""
    T = "fuzz_gguf_model"
    tmp = os.path.join(OUT, ".tmp")
    os.makedirs(tmp, exist_ok=True)
    tok_path = os.path.join(tmp, "tokenizer.json")
    with open(tok_path, "w", encoding="utf-8") as f:
        f.write(tok_json)
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import gen_random_model as grm
    # shapes below "tiny" keep seeds to a few KB: n_layer, n_embd, n_head, n_ff, n_ctx
    grm.SHAPES["micro1"] = (1, 4, 1, 4, 4)
    grm.SHAPES["micro2"] = (2, 8, 2, 8, 4)

    def gen(name, *args):
        out = os.path.join(tmp, name)
        sys.argv = ["gen_random_model.py", "--out", out, "--tokenizer", tok_path, "--seed", "1", *args]
        grm.main()
        with open(out, "rb") as f:
            data = f.read()
        assert len(data) < MAX_GGUF, (name, len(data))
        write(T, name, data)
        return data

    gen("tiny_q8_0.gguf", "--shape", "tiny", "--type", "q8_0", "--context", "8")
    m1 = gen("micro1_f32.gguf", "--shape", "micro1", "--type", "f32")
    gen("micro2_f16_mean.gguf", "--shape", "micro2", "--type", "f16", "--pooling", "mean")
    shutil.rmtree(tmp)

    # GGUF v3: magic, version u32, n_tensors u64, n_kv u64; then kv pairs, tensor infos, aligned data
    arch = b"general.architecture" + struct.pack("<IQ", 8, 4) + b"bert"
    assert m1.count(arch) == 1
    write(T, "micro1_arch_gpt2.gguf", m1.replace(arch, arch[:-4] + b"gpt2"))
    write(T, "micro1_no_vocab.gguf", m1.replace(b"tokenizer.ggml.tokens", b"tokenizer.ggml.tokenz"))
    blk = b"bert.block_count" + struct.pack("<I", 4)  # u32 value follows
    i = m1.index(blk) + len(blk)
    write(T, "micro1_many_layers.gguf", m1[:i] + struct.pack("<I", 3) + m1[i + 4:])
    write(T, "micro1_truncated_data.gguf", m1[: len(m1) - 200])
    write(T, "micro1_header_kv_only.gguf", m1[: m1.index(b"token_embd.weight") - 8])
    write(T, "header_only.gguf", m1[:24])


def clip_seeds(tok_json):
    """A micro two-tower CLIP GGUF in embd convert's layout (tests/clip) and broken variants."""
    T = "fuzz_clip_gguf"
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import numpy as np
    from gen_random_model import import_gguf
    gguf = import_gguf()
    rng = np.random.default_rng(3)
    V = len(json.loads(tok_json)["model"]["vocab"])
    W, F, P, CTX, IMG, PATCH = 4, 8, 4, 4, 4, 2
    tmp = os.path.join(OUT, ".tmp-clip")
    os.makedirs(tmp, exist_ok=True)

    def model(name, **kv):
        path = os.path.join(tmp, name)
        w = gguf.GGUFWriter(path, "clip")
        keys = {"clip.has_text_encoder": True, "clip.has_vision_encoder": True, "clip.vision.image_size": IMG,
                "clip.vision.patch_size": PATCH, "clip.text.context_length": CTX}
        for tw in ("text", "vision"):
            keys.update({f"clip.{tw}.embedding_length": W, f"clip.{tw}.feed_forward_length": F,
                         f"clip.{tw}.block_count": 1, f"clip.{tw}.attention.head_count": 2,
                         f"clip.{tw}.projection_dim": P})
        keys.update(kv)
        for k, v in keys.items():
            if isinstance(v, bool):
                w.add_bool(k, v)
            elif v is not None:
                w.add_uint32(k, v)
        w.add_float32("clip.text.attention.layer_norm_epsilon", 1e-5)
        w.add_string("clip.vision.hidden_act", "gelu")
        w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
        w.add_array("clip.vision.image_std", [0.25, 0.25, 0.25])
        w.add_string("tokenizer.huggingface.json", tok_json)

        def t(n, *shape):
            w.add_tensor(n, rng.standard_normal(shape).astype(np.float32))
        for p in ("t", "v"):
            for m in ("attn_q", "attn_k", "attn_v", "attn_out"):
                t(f"{p}.blk.0.{m}.weight", W, W), t(f"{p}.blk.0.{m}.bias", W)
            for m in ("ln1", "ln2"):
                t(f"{p}.blk.0.{m}.weight", W), t(f"{p}.blk.0.{m}.bias", W)
            t(f"{p}.blk.0.ffn_up.weight", F, W), t(f"{p}.blk.0.ffn_up.bias", F)
            t(f"{p}.blk.0.ffn_down.weight", W, F), t(f"{p}.blk.0.ffn_down.bias", W)
            t(f"{p}.post_ln.weight", W), t(f"{p}.post_ln.bias", W), t(f"{p}.projection.weight", P, W)
        t("t.token_embd.weight", V, W), t("t.position_embd.weight", CTX, W)
        w.add_tensor("v.patch_embd.weight", rng.standard_normal((W, 3, PATCH, PATCH)).astype(np.float16))
        t("v.class_embd", W), t("v.position_embd.weight", (IMG // PATCH) ** 2 + 1, W)
        t("v.pre_ln.weight", W), t("v.pre_ln.bias", W)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        with open(path, "rb") as f:
            data = f.read()
        assert len(data) < MAX_GGUF, (name, len(data))
        write(T, name, data)
        return data

    m = model("micro_clip.gguf")
    model("micro_mmproj.gguf", **{"clip.has_text_encoder": False})
    model("micro_bad_patch.gguf", **{"clip.vision.patch_size": 3})
    model("micro_no_ctx.gguf", **{"clip.text.context_length": None})
    shutil.rmtree(tmp)
    write(T, "micro_clip_truncated.gguf", m[: len(m) - 100])
    write(T, "micro_clip_header_only.gguf", m[:24])


def reader_seeds():
    T = "fuzz_reader_line"
    lines = [line for _, line, _ in edge_cases() if len(line) <= 300]
    for k in range(0, len(lines), 6):
        write(T, "edge_cases_%02d.jsonl" % (k // 6), b"\n".join(lines[k:k + 6]) + b"\n")
    for name, text in {
            "plain_lines.txt": b"first line\n  second\t line\n\nfourth without newline",
            "crlf.jsonl": b'{"id":"a","text":"x"}\r\n{"id":"b","text":"y"}\r\n',
            "blank_and_spaces.jsonl": b'\n  \t\n{"text":"after blanks"}\n\n{"text":"z"}',
            "bad_lines.jsonl": b'{"id":1,"text":"ok"}\n{"id":2}\n{"id":3,"text":5}\n[1,2]\n{"id":4,"text":"a"\n'
                               b'not json\n{"id":{"nested":[1]},"text":""}\n',
            "duplicates_nul.jsonl": b'{"text":"a","text":"b"}\n{"id":null,"text":"a\\u0000b"}\n'
                                    b'{"text":"\\ud800 lone"}\n{"text":"\\ud83d\\ude00"}\n',
            "raw_nul_and_invalid_utf8.jsonl": b'{"text":"a\x00b"}\n{"text":"\xff"}\n'}.items():
        write(T, name, text)


def unigram_seeds():
    """Unigram tokenizer.json seeds for fuzz_tokenizer_json, and texts for fuzz_tokenizer_ugm from
    tests/fixtures/tokens_xlmr.jsonl (byte 0: max_tokens and tokenizer, as the target reads it)."""
    T = "fuzz_tokenizer_json"
    small = {'added_tokens': [{'id': 0, 'content': '<unk>', 'special': True}, {'id': 1, 'content': '<s>', 'special': True}, {'id': 2, 'content': '</s>', 'special': True, 'rstrip': True}, {'id': 12, 'content': 'Ab', 'special': False, 'normalized': True, 'lstrip': True}], 'normalizer': {'type': 'Sequence', 'normalizers': [{'type': 'NFKC'}, {'type': 'NFD'}, {'type': 'Replace', 'pattern': {'String': 'xy'}, 'content': 'é'}, {'type': 'Replace', 'pattern': {'Regex': '\\t+'}, 'content': ' '}, {'type': 'Strip', 'strip_left': True, 'strip_right': False}, {'type': 'Prepend', 'prepend': '_'}, {'type': 'Precompiled', 'precompiled_charsmap': ''}]}, 'pre_tokenizer': {'type': 'Metaspace', 'replacement': '_', 'prepend_scheme': 'first'}, 'post_processor': {'type': 'RobertaProcessing', 'cls': ['<s>', 1], 'sep': ['</s>', 2]}, 'model': {'type': 'Unigram', 'unk_id': 0, 'vocab': [['<unk>', 0], ['<s>', 0], ['</s>', 0], ['_', -1.5], ['a', -2], ['b', -2], ['_a', -2.5], ['ab', -3], ['é', -1], ['́', -4], ['中', -3], ['_ab', -3.5], ['Ab', -9], ['_a', -2.25], ['áb', -0.5]]}}
    write(T, "unigram_small.json", json.dumps(small, ensure_ascii=False))
    xlmr_like = {
        "added_tokens": [{"id": 0, "content": "<s>", "special": True}, {"id": 1, "content": "<pad>", "special": True},
                         {"id": 2, "content": "</s>", "special": True}, {"id": 3, "content": "<unk>", "special": True},
                         {"id": 9, "content": "<mask>", "special": True, "lstrip": True}],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Precompiled", "precompiled_charsmap": "AAAA"},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
        "post_processor": {"type": "TemplateProcessing", "single": [
            {"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": "</s>", "type_id": 0}}]},
        "model": {"type": "Unigram", "unk_id": 3, "vocab": [
            ["<s>", 0], ["<pad>", 0], ["</s>", 0], ["<unk>", 0], ["\u2581", -3], ["\u2581Hello", -5], ["l", -4],
            ["o", -4], ["\u2581W", -6], ["<mask>", 0], ["\u4f60\u597d", -7]]}}
    write(T, "unigram_xlmr_like.json", json.dumps(xlmr_like, ensure_ascii=False))
    T = "fuzz_tokenizer_ugm"
    with open(os.path.join(ROOT, "tests", "fixtures", "tokens_xlmr.jsonl"), encoding="utf-8") as f:
        lines = [json.loads(x) for x in f if x.strip()][1:]
    pick = [x for x in lines if x["id"].startswith("xlmr_")] + [x for x in lines if x["id"].startswith("edge_")][:30]
    for i, x in enumerate(pick):
        name = "".join(c if c.isalnum() or c == "_" else "_" for c in x["id"].lower())[:40]
        sel = (i * 7) % 64 | (128 if i % 5 == 0 else 0)
        write(T, name, bytes([sel]) + cut_utf8(x["text"].encode("utf-8", "surrogatepass"), 2048))
    write(T, "bad_utf8", b"\x05abc\xe4\xb8\xad\xff<mask>")
    write(T, "small_paths", b"\x80  Ab\tAB  xy a\xcc\x81b </s>  tail \xef\xbd\x9e")


def bpe_seeds():
    """Texts for fuzz_tokenizer_bpe from tests/fixtures/tokens_clip.jsonl (byte 0: max_tokens and
    tokenizer, as the target reads it)."""
    T = "fuzz_tokenizer_bpe"
    with open(os.path.join(ROOT, "tests", "fixtures", "tokens_clip.jsonl"), encoding="utf-8") as f:
        lines = [json.loads(x) for x in f if x.strip()][1:]
    pick = [x for x in lines if x["id"].startswith("clip_")] + [x for x in lines if x["id"].startswith("edge_")][:20]
    for i, x in enumerate(pick):
        name = "".join(c if c.isalnum() or c == "_" else "_" for c in x["id"].lower())[:40]
        sel = (i * 7) % 64 | (128 if i % 5 == 0 else 0)
        write(T, name, bytes([sel]) + cut_utf8(x["text"].encode("utf-8"), 2048))
    write(T, "bad_utf8", b"\x05caf\xc3\xa9 \xe4\xb8\xad\xff<X>")
    write(T, "added_paths", b"\x80 a <X>  b\t<X>c NA\xc3\x8fVE na\xc3\xafve <|endoftext|>x<|startoftext|>")
    # a small CLIP-shaped tokenizer.json for the JSON reader: 512 byte symbols, a few merges in both
    # formats, added tokens; and the same with a refused option
    b2u = [chr(b) if (33 <= b <= 126 or 161 <= b <= 172 or b >= 174) else None for b in range(256)]
    k = 0
    for b in range(256):
        if b2u[b] is None:
            b2u[b] = chr(256 + k)
            k += 1
    vocab = {c: i for i, c in enumerate(b2u + [c + "</w>" for c in b2u])}
    merges = ["t h", "th e</w>", "a n", "an d</w>", "c a", ["ca", "t</w>"], "\u00c3 \u00a9</w>"]
    for m in merges:
        a, b = m.split(" ") if isinstance(m, str) else m
        vocab.setdefault(a + b, len(vocab))
    sot, eot = len(vocab), len(vocab) + 1
    vocab.update({"<|startoftext|>": sot, "<|endoftext|>": eot})
    clip = {"added_tokens": [{"id": sot, "content": "<|startoftext|>", "normalized": True, "special": True},
                             {"id": eot, "content": "<|endoftext|>", "normalized": True, "special": True},
                             {"id": eot + 1, "content": "<X>", "normalized": False, "special": True, "lstrip": True}],
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "NFC"}, {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "}, {"type": "Lowercase"}]},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|"
                                                      "[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+"},
                 "behavior": "Removed", "invert": True},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
            "post_processor": {"type": "RobertaProcessing", "sep": ["<|endoftext|>", eot], "cls": ["<|startoftext|>", sot]},
            "model": {"type": "BPE", "dropout": None, "unk_token": "<|endoftext|>", "continuing_subword_prefix": "",
                      "end_of_word_suffix": "</w>", "fuse_unk": False, "vocab": vocab, "merges": merges}}
    write("fuzz_tokenizer_json", "bpe_clip_small.json", json.dumps(clip, ensure_ascii=False))
    clip["model"]["byte_fallback"] = True
    write("fuzz_tokenizer_json", "bpe_clip_byte_fallback.json", json.dumps(clip, ensure_ascii=False))


def safetensors_seeds():
    """Tiny safetensors images: F32/F16/BF16/I64 tensors, metadata, an empty tensor, a 0-d tensor."""
    T = "fuzz_safetensors"

    def image(header, data):
        h = json.dumps(header, separators=(",", ":")).encode()
        h += b" " * (-len(h) % 8)
        return struct.pack("<Q", len(h)) + h + data

    write(T, "mixed.safetensors", image({
        "__metadata__": {"format": "pt"},
        "embeddings.position_ids": {"dtype": "I64", "shape": [1, 2], "data_offsets": [0, 16]},
        "a.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [16, 32]},
        "a.bias": {"dtype": "F16", "shape": [2], "data_offsets": [32, 36]},
        "b": {"dtype": "BF16", "shape": [1, 1, 2], "data_offsets": [36, 40]},
        "empty": {"dtype": "F32", "shape": [0, 4], "data_offsets": [40, 40]},
        "scalar": {"dtype": "F32", "shape": [], "data_offsets": [40, 44]}}, bytes(range(44))))
    write(T, "empty_header.safetensors", image({}, b""))
    write(T, "bad_offsets.safetensors", image({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, b"\0" * 8))


def hf_tokenizer_seeds():
    """First byte: bit 0 family (1 XLM-R), bits 1-6 config vocab_size, bit 7 tokenizer_config; then JSON."""
    T = "fuzz_hf_tokenizer"
    special = lambda t: {"SpecialToken": {"id": t, "type_id": 0}}  # noqa: E731
    seq = lambda t: {"Sequence": {"id": t, "type_id": 0}}  # noqa: E731
    wp = {"added_tokens": [{"id": 0, "content": "[PAD]", "special": True}, {"id": 1, "content": "[CLS]", "special": True},
                           {"id": 2, "content": "[SEP]", "special": True}, {"id": 9, "content": "<extra>", "special": False}],
          "normalizer": {"type": "BertNormalizer", "lowercase": True, "strip_accents": None},
          "post_processor": {"type": "TemplateProcessing", "single": [special("[CLS]"), seq("A"), special("[SEP]")],
                             "pair": [special("[CLS]"), seq("A"), special("[SEP]"), seq("B"), special("[SEP]")]},
          "model": {"type": "WordPiece", "vocab": {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "hello": 3, "##lo": 4,
                                                    "[UNK]": 5}}}
    ug = {"added_tokens": [{"id": 0, "content": "<s>", "special": True}, {"id": 1, "content": "<pad>", "special": True},
                           {"id": 2, "content": "</s>", "special": True}, {"id": 3, "content": "<unk>", "special": True}],
          "normalizer": {"type": "Sequence", "normalizers": [{"type": "Precompiled", "precompiled_charsmap": "AAEC"},
                                                             {"type": "Replace", "content": " "}]},
          "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always"},
          "post_processor": {"type": "TemplateProcessing", "single": [special("<s>"), seq("A"), special("</s>")],
                             "pair": [special("<s>"), seq("A"), special("</s>"), special("</s>"), seq("B"),
                                      special("</s>")]},
          "model": {"type": "Unigram", "unk_id": 3,
                    "vocab": [["<s>", 0.0], ["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0], ["\u2581a", -1.5]]}}
    write(T, "wordpiece.json", bytes([0x80 | (12 << 1)]) + json.dumps(wp).encode())
    write(T, "wordpiece_own_size.json", b"\x00" + json.dumps(wp).encode())
    write(T, "unigram.json", bytes([0x81 | (8 << 1)]) + json.dumps(ug).encode())
    write(T, "unigram_roberta_processing.json", b"\x01" + json.dumps(
        dict(ug, post_processor={"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0]})).encode())


def auth_seeds():
    """fuzz_auth: keys files, Authorization values, and TIMESTAMP\nSIGNATURE\nAUTHORIZATION\nBODY requests
    (signed with fuzz_auth.c's secret, so the success and replay paths are reachable)."""
    import hashlib
    import hmac
    T = "fuzz_auth"
    secret, key = b"fuzz-secret-0123456789abcdef", b"fuzz-key-0123456789abcdef"

    def signed(path, body, ts=b"1700000000"):
        msg = b"|".join((b"POST", path, hashlib.sha256(body).hexdigest().encode(), ts))
        return ts + b"\n" + hmac.new(secret, msg, hashlib.sha256).hexdigest().encode() + b"\n\n" + body

    for name, data in {
            "keys_file": b"# comment\n\nalice  aaaaaaaaaaaaaaaaaaaa  embed,rerank rps=2 tpm=600 # note\r\n"
                         b"ops sha256:42492da06234ad0ac76f5d5debdb6d1ae027cffbe746a1c13b89bb8bc0139137 *\n",
            "keys_bad": b"alice short embed\nbob bbbbbbbbbbbbbbbbbbbbbbbb embed,nope\n",
            "bearer": b"Bearer " + key,
            "bearer_padded": b"  bearer \t tok.en~+/==  ",
            "bearer_key_line": b"\n\nBearer " + key + b"\n{\"input\":\"hi\"}",
            "signed_odd_len": signed(b"/v1/embeddings", b'{"input":"hi"}'),  # size odd -> /v1/embeddings
            "signed_even_len": signed(b"/info", b'{"input":"hi!"}'),
            "stale": b"1600000000\n" + b"ab" * 32 + b"\n\n{}",
            "bad_hex": b"1700000000\n" + b"zz" * 32 + b"\n\n{}",
            "only_ts": b"1700000000\n\n\n",
            "deep_json": b"[" * 20 + b"]" * 20}.items():
        write(T, name, data)


def image_seeds():
    """fuzz_image: byte 0 = selector (bit 0: base64 text; bits 2-4 resize edge; 5-7 crop), then a
    small image in every layout the decoders handle, plus refusals (animated, GIF, truncated, bomb)."""
    import base64
    import io
    import zlib
    from PIL import Image
    T = "fuzz_image"

    def enc(im, fmt, **kw):
        b = io.BytesIO()
        im.save(b, fmt, **kw)
        return b.getvalue()

    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    rgb = Image.frombytes("RGB", (12, 9), bytes((i * 37) % 256 for i in range(12 * 9 * 3)))
    rgba = rgb.copy()
    rgba.putalpha(Image.frombytes("L", (12, 9), bytes((i * 11) % 256 for i in range(12 * 9))))
    pal = rgb.convert("P", palette=Image.ADAPTIVE, colors=8)
    g16 = Image.frombytes("I;16", (7, 5), bytes(range(70)))
    seeds = {
        "png_rgb": enc(rgb, "PNG"), "png_rgba": enc(rgba, "PNG"), "png_la": enc(rgba.convert("LA"), "PNG"),
        "png_palette_trns": enc(pal, "PNG", transparency=bytes(range(8))), "png_grey16": enc(g16, "PNG"),
        "png_1bit": enc(rgb.convert("1"), "PNG"),
        "png_adam7": b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 3, 3, 8, 0, 0, 0, 1)) +
                     chunk(b"IDAT", zlib.compress(bytes(range(24)))) + chunk(b"IEND", b""),
        "png_bomb": b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)) +
                    chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""),
        "apng": enc(rgb, "PNG", save_all=True, append_images=[rgba]),
        "jpeg": enc(rgb, "JPEG", quality=80), "jpeg_progressive": enc(rgb, "JPEG", quality=80, progressive=True),
        "jpeg_grey": enc(rgb.convert("L"), "JPEG"), "jpeg_cmyk": enc(rgb.convert("CMYK"), "JPEG"),
        "webp_lossy": enc(rgb, "WEBP", quality=70), "webp_lossless": enc(rgba, "WEBP", lossless=True),
        "webp_animated": enc(rgb, "WEBP", save_all=True, append_images=[rgba]),
        "gif": enc(rgb, "GIF"),
    }
    seeds["jpeg_truncated"] = seeds["jpeg"][:len(seeds["jpeg"]) // 2]
    seeds["png_truncated"] = seeds["png_rgb"][:len(seeds["png_rgb"]) - 20]
    for i, (name, data) in enumerate(sorted(seeds.items())):
        write(T, name, bytes([(i % 8) << 2 | (i * 3 % 8) << 5]) + data)
    write(T, "data_uri_png", b"\x01data:image/png;base64," + base64.b64encode(seeds["png_rgb"]))
    write(T, "base64_jpeg", b"\x25" + base64.encodebytes(seeds["jpeg"]))


if __name__ == "__main__":
    shutil.rmtree(os.path.join(OUT, "fuzz_auth"), ignore_errors=True)
    auth_seeds()
    if sys.argv[1:] == ["--auth-only"]:
        sys.exit(0)
    shutil.rmtree(os.path.join(OUT, "fuzz_image"), ignore_errors=True)
    image_seeds()
    if sys.argv[1:] == ["--image-only"]:
        sys.exit(0)
    for t in ("fuzz_tokenizer", "fuzz_jsonfix", "fuzz_tokenizer_json", "fuzz_gguf_model", "fuzz_reader_line",
              "fuzz_tokenizer_ugm", "fuzz_tokenizer_bpe", "fuzz_safetensors", "fuzz_hf_tokenizer"):
        shutil.rmtree(os.path.join(OUT, t), ignore_errors=True)
    tokenizer_seeds()
    jsonfix_seeds()
    reader_seeds()
    tok_json = tokenizer_json_seeds()
    gguf_seeds(tok_json)
    shutil.rmtree(os.path.join(OUT, "fuzz_clip_gguf"), ignore_errors=True)
    clip_seeds(tok_json)
    unigram_seeds()
    bpe_seeds()
    safetensors_seeds()
    hf_tokenizer_seeds()
