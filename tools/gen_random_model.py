#!/usr/bin/env python3
"""Write a random-weight BERT encoder as GGUF, in the layout of llama.cpp's convert_hf_to_gguf.py
(architecture "bert"), mirroring /work/shared/models/bge-small-random/*.gguf key for key.

  gen_random_model.py --out m.gguf --shape tiny --type f32 [--pooling cls|mean|rank] [--seed N]
                      [--tokenizer tokenizer.json] [--context N]

Weights ~ N(0, 0.02) like the shared files; LayerNorm weights 1 + N(0, 0.02) and every bias
N(0, 0.02), so no parameter is a no-op. The same seed gives the same float values whatever --type,
so f32/f16/q8_0 files of one seed differ only by rounding. The shared bge-small-random files are
exactly `--shape bge-small --type f16|q8_0 --seed 1234 --name bge-small-en-v1.5-shape-random`
(same sha256). Needs numpy and llama.cpp's gguf-py
($GGUF_PY_DIR, else ~/.cache/embd/llama.cpp-*/src/gguf-py).
"""
import argparse
import glob
import json
import os
import sys

import numpy as np

SHAPES = {  # n_layer, n_embd, n_head, n_ff, n_ctx
    "tiny": (2, 64, 4, 256, 512),
    "bge-small": (12, 384, 12, 1536, 512),
    # bge-m3's encoder (XLM-RoBERTa large: 24 layers, hidden 1024, 16 heads, FFN 4096, 8194 positions)
    # with the WordPiece vocabulary given: the transformer's cost and shape, a smaller embedding table
    "bge-m3": (24, 1024, 16, 4096, 8194),
}
POOLING = {"mean": 1, "cls": 2, "rank": 4}  # llama.cpp enum llama_pooling_type
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED = 1, 3, 4  # gguf.TokenType
STD = 0.02


def import_gguf():
    d = os.environ.get("GGUF_PY_DIR")
    if not d:
        hits = sorted(glob.glob(os.path.expanduser("~/.cache/embd/llama.cpp-*/src/gguf-py")))
        d = hits[-1] if hits else None
    if d and d not in sys.path:
        sys.path.insert(0, d)
    import gguf
    return gguf


def default_tokenizer():
    shared = os.environ.get("EMBD_SHARED_DIR") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")
    return os.path.join(shared, "models", "bge-small-en-v1.5", "tokenizer.json")


def read_vocab(path):
    """Tokens in id order as llama.cpp's BERT converter stores them, their types, and special ids."""
    with open(path, encoding="utf-8") as f:
        tj = json.load(f)
    if tj["model"]["type"] != "WordPiece":
        raise SystemExit(f"{path}: tokenizer model {tj['model']['type']!r}, expected WordPiece")
    vocab = tj["model"]["vocab"]
    words = [None] * len(vocab)
    for w, i in vocab.items():
        words[i] = w
    if any(w is None for w in words):
        raise SystemExit(f"{path}: vocabulary ids are not contiguous")

    types = [TOKEN_NORMAL] * len(words)
    for a in tj.get("added_tokens", []):
        types[a["id"]] = TOKEN_CONTROL if a.get("special") else TOKEN_USER_DEFINED

    # WordPiece -> llama.cpp "phantom space" vocabulary: word starts get U+2581, "##" continuations
    # lose the prefix, bracketed tokens ([CLS], [unused0], ...) stay as they are.
    def phantom(w):
        if w.startswith("[") and w.endswith("]"):
            return w
        return w[2:] if w.startswith("##") else "\u2581" + w

    special = {k: vocab[v] for k, v in
               (("unk", "[UNK]"), ("sep", "[SEP]"), ("pad", "[PAD]"), ("cls", "[CLS]"), ("mask", "[MASK]"))}
    return [phantom(w) for w in words], types, special


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    ap.add_argument("--type", choices=["f32", "f16", "q8_0"], default="f32")
    ap.add_argument("--tokenizer", default=None, help="HF tokenizer.json (default: shared bge-small-en-v1.5)")
    ap.add_argument("--pooling", choices=sorted(POOLING), default="cls")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--context", type=int, default=None, help="positions (default: the shape's 512)")
    ap.add_argument("--std", type=float, default=STD, help="weight scale (default 0.02; larger spreads outputs)")
    ap.add_argument("--prompt", action="append", default=[], metavar="NAME=TEXT",
                    help="sentence-transformers prompt, stored as embd.prompts.NAME (repeatable)")
    ap.add_argument("--default-prompt", default=None, help="embd.default_prompt_name")
    ap.add_argument("--max-seq-length", type=int, default=None, help="embd.max_seq_length")
    ap.add_argument("--labels", type=int, default=1, help="classifier outputs with --pooling rank")
    ap.add_argument("--name", default=None, help="general.name (default: describes the arguments)")
    args = ap.parse_args()

    gguf = import_gguf()
    n_layer, n_embd, n_head, n_ff, n_ctx = SHAPES[args.shape]
    n_ctx = args.context or n_ctx
    tokens, types, special = read_vocab(args.tokenizer or default_tokenizer())
    qtype = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
             "q8_0": gguf.GGMLQuantizationType.Q8_0}[args.type]

    rng = np.random.default_rng(args.seed)

    def normal(*shape, mean=0.0):  # numpy shape: (ne1, ne0) = (rows, row length)
        return (mean + args.std * rng.standard_normal(shape)).astype(np.float32)

    # Drawn in file order from one stream, so a given seed fixes every value.
    tensors = [("token_embd.weight", normal(len(tokens), n_embd), True),
               ("token_types.weight", normal(2, n_embd), False),
               ("position_embd.weight", normal(n_ctx, n_embd), False),
               ("token_embd_norm.weight", normal(n_embd, mean=1.0), False),
               ("token_embd_norm.bias", normal(n_embd), False)]
    for i in range(n_layer):
        p = f"blk.{i}."
        for name, rows, cols in (("attn_q", n_embd, n_embd), ("attn_k", n_embd, n_embd),
                                 ("attn_v", n_embd, n_embd), ("attn_output", n_embd, n_embd)):
            tensors += [(p + name + ".weight", normal(rows, cols), True), (p + name + ".bias", normal(rows), False)]
            if name == "attn_output":
                tensors += [(p + "attn_output_norm.weight", normal(n_embd, mean=1.0), False),
                            (p + "attn_output_norm.bias", normal(n_embd), False)]
        tensors += [(p + "ffn_up.weight", normal(n_ff, n_embd), True), (p + "ffn_up.bias", normal(n_ff), False),
                    (p + "ffn_down.weight", normal(n_embd, n_ff), True), (p + "ffn_down.bias", normal(n_embd), False),
                    (p + "layer_output_norm.weight", normal(n_embd, mean=1.0), False),
                    (p + "layer_output_norm.bias", normal(n_embd), False)]

    if args.pooling == "rank":  # cross-encoder head, named as llama.cpp's converter names it
        tensors += [("cls.weight", normal(n_embd, n_embd), True), ("cls.bias", normal(n_embd), False),
                    ("cls.output.weight", normal(args.labels, n_embd), False),
                    ("cls.output.bias", normal(args.labels), False)]

    tmp = args.out + ".tmp"
    w = gguf.GGUFWriter(tmp, "bert")
    w.add_name(args.name or f"random-bert-{args.shape}-{args.type}-{args.pooling}-seed{args.seed}")
    w.add_block_count(n_layer)
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_layer_norm_eps(1e-12)
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType(POOLING[args.pooling]))
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("bert-bge")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_type_count(2)
    for key, tid in (("unknown", "unk"), ("seperator", "sep"), ("padding", "pad"), ("cls", "cls"),
                     ("mask", "mask"), ("bos", "cls"), ("eos", "sep")):  # "seperator" is llama.cpp's spelling
        w.add_uint32(f"tokenizer.ggml.{key}_token_id", special[tid])
    w.add_add_bos_token(True)
    w.add_add_eos_token(True)
    for p in args.prompt:  # the keys `embd convert` writes from config_sentence_transformers.json
        name, _, text = p.partition("=")
        w.add_string(f"embd.prompts.{name}", text)
    if args.default_prompt:
        w.add_string("embd.default_prompt_name", args.default_prompt)
    if args.max_seq_length:
        w.add_uint32("embd.max_seq_length", args.max_seq_length)

    try:
        for name, data, is_matrix in tensors:
            if is_matrix and qtype != gguf.GGMLQuantizationType.F32:
                w.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
            else:  # biases, norms, position and token-type embeddings stay f32, as in the shared files
                w.add_tensor(name, data)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    except BaseException:
        w.close()
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
