#!/usr/bin/env python3
"""Write random-weight Hugging Face model directories (config.json, safetensors written by hand,
real tokenizer files, sentence-transformers files) for `embd convert` tests. numpy + stdlib only
(the XLM-R vocabulary comes from llama.cpp's models/ggml-vocab-nomic-bert-moe.gguf, read with
gguf_lite.py).

  gen_hf_model.py KIND OUT_DIR [--seed N]
  KIND: bert            BertModel, bge-small tokenizer.json, CLS pooling, prompts, F32 weights
        bert-sharded    BertModel, all-MiniLM-L6-v2 vocab.txt only, mean pooling, BF16 weights in
                        two shards + model.safetensors.index.json, "bert." prefix
        bert-reranker   BertForSequenceClassification, ms-marco-MiniLM-L-12-v2 tokenizer/config
                        layout (pooler + 1-label classifier), F32
        xlmr            XLMRobertaModel, 250k Unigram tokenizer.json, mean pooling and query:/passage:
                        prompts (multilingual-e5 style), F16 weights
        xlmr-reranker   XLMRobertaForSequenceClassification ("roberta." prefix, classifier.dense +
                        classifier.out_proj), F32

Safetensors: 8-byte little-endian header length, a JSON header {name: {dtype, shape,
data_offsets}}, then the raw little-endian data.
"""
import argparse
import base64
import glob
import json
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gguf_lite import GGUF  # noqa: E402
SRC = os.environ.get("EMBD_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
SHARED = os.environ.get("EMBD_SHARED_DIR") or os.path.normpath(os.path.join(SRC, "..", "shared"))
STD = 0.02

# n_layer, hidden, heads, ffn, max_positions, type_vocab
SHAPES = {
    "bert": (2, 64, 4, 256, 512, 2),
    "xlmr": (2, 32, 2, 128, 514, 1),
}


def nomic_vocab_path():
    """llama.cpp's XLM-R vocabulary: beside gguf-py in the llama.cpp source tree."""
    d = os.environ.get("GGUF_PY_DIR")
    if not d:
        hits = sorted(glob.glob(os.path.expanduser("~/.cache/embd/llama.cpp-*/src/gguf-py")))
        d = hits[-1] if hits else ""
    return os.path.join(os.path.dirname(os.path.abspath(d)), "models", "ggml-vocab-nomic-bert-moe.gguf")


# --- safetensors ------------------------------------------------------------------------------
def to_bytes(a, dtype):
    a = np.asarray(a)
    if dtype == "F32":
        return a.astype("<f4").tobytes()
    if dtype == "F16":
        return a.astype("<f2").tobytes()
    if dtype == "BF16":  # round to nearest even, like torch's .to(bfloat16)
        u = a.astype("<f4").view("<u4").astype(np.uint64)
        u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
        return u.astype("<u2").tobytes()
    if dtype == "I64":
        return a.astype("<i8").tobytes()
    raise ValueError(dtype)


def from_bytes(b, dtype, shape):
    if dtype == "F32":
        return np.frombuffer(b, "<f4").reshape(shape).astype(np.float64)
    if dtype == "F16":
        return np.frombuffer(b, "<f2").reshape(shape).astype(np.float64)
    if dtype == "BF16":
        u = np.frombuffer(b, "<u2").astype(np.uint32) << 16
        return u.view("<f4").reshape(shape).astype(np.float64)
    raise ValueError(dtype)


def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, array, dtype). Data in list order, header padded to 8 bytes."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, a, dtype in tensors:
        b = to_bytes(a, dtype)
        header[name] = {"dtype": dtype, "shape": list(np.shape(a)), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """{name: float64 array} for F32/F16/BF16 tensors (others skipped)."""
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__" or e["dtype"] not in ("F32", "F16", "BF16"):
            continue
        b, end = e["data_offsets"]
        out[name] = from_bytes(data[b:end], e["dtype"], e["shape"])
    return out


def read_hf_weights(d):
    """All weights of an HF directory (single file or index + shards)."""
    single = os.path.join(d, "model.safetensors")
    if os.path.exists(single):
        return read_safetensors(single)
    with open(os.path.join(d, "model.safetensors.index.json")) as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
    out = {}
    for fn in files:
        out.update(read_safetensors(os.path.join(d, fn)))
    return out


# --- weights ----------------------------------------------------------------------------------
def encoder_weights(rng, n_layer, H, F, n_pos, n_types, vocab, prefix=""):
    def normal(*shape, mean=0.0):
        return mean + STD * rng.standard_normal(shape)

    t = [(prefix + "embeddings.word_embeddings.weight", normal(vocab, H)),
         (prefix + "embeddings.position_embeddings.weight", normal(n_pos, H)),
         (prefix + "embeddings.token_type_embeddings.weight", normal(n_types, H)),
         (prefix + "embeddings.LayerNorm.weight", normal(H, mean=1.0)),
         (prefix + "embeddings.LayerNorm.bias", normal(H))]
    for i in range(n_layer):
        p = f"{prefix}encoder.layer.{i}."
        for n in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            t += [(p + n + ".weight", normal(H, H)), (p + n + ".bias", normal(H))]
        t += [(p + "attention.output.LayerNorm.weight", normal(H, mean=1.0)),
              (p + "attention.output.LayerNorm.bias", normal(H)),
              (p + "intermediate.dense.weight", normal(F, H)), (p + "intermediate.dense.bias", normal(F)),
              (p + "output.dense.weight", normal(H, F)), (p + "output.dense.bias", normal(H)),
              (p + "output.LayerNorm.weight", normal(H, mean=1.0)), (p + "output.LayerNorm.bias", normal(H))]
    return t


def bert_config(arch, shape, vocab, **extra):
    n_layer, H, heads, F, n_pos, n_types = SHAPES[shape]
    c = {"architectures": [arch], "model_type": "bert", "attention_probs_dropout_prob": 0.1,
         "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": H, "initializer_range": 0.02,
         "intermediate_size": F, "layer_norm_eps": 1e-12, "max_position_embeddings": n_pos,
         "num_attention_heads": heads, "num_hidden_layers": n_layer, "pad_token_id": 0,
         "position_embedding_type": "absolute", "type_vocab_size": n_types, "vocab_size": vocab}
    c.update(extra)
    return c


def dump(d, name, obj):
    p = os.path.join(d, name)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)


def sbert_files(d, pooling, max_seq, prompts=None, default_prompt=None):
    dump(d, "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}])
    dump(d, "1_Pooling/config.json", {"word_embedding_dimension": 0, "pooling_mode_cls_token": pooling == "cls",
                                      "pooling_mode_mean_tokens": pooling == "mean",
                                      "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False})
    dump(d, "sentence_bert_config.json", {"max_seq_length": max_seq, "do_lower_case": False})
    cst = {"__version__": {"sentence_transformers": "3.0.0"}, "prompts": prompts or {},
           "default_prompt_name": default_prompt, "similarity_fn_name": "cosine"}
    dump(d, "config_sentence_transformers.json", cst)


def copy_shared(d, model, *names):
    for n in names:
        shutil.copy(os.path.join(SHARED, "models", model, n), os.path.join(d, n))


def vocab_size_of(tokenizer_json):
    with open(tokenizer_json, encoding="utf-8") as f:
        return len(json.load(f)["model"]["vocab"])


# --- XLM-R vocabulary -------------------------------------------------------------------------
XLMR_VOCAB = 250002  # xlm-roberta-base / bge-m3: 250000 pieces + <s>/<pad>/</s>/<unk> realigned + <mask>


def xlmr_tokenizer_files(d):
    """tokenizer.json (HF Unigram form, like bge-m3's) and tokenizer_config.json from llama.cpp's
    XLM-R vocabulary GGUF (ids kept: 0 <s>, 1 <pad>, 2 </s>, 3 <unk>, ..., 250001 <mask>)."""
    # gguf_lite, not gguf-py's GGUFReader: the latter needs ~30 s for this 250k-token file
    r = GGUF(nomic_vocab_path())
    tokens = r.kv["tokenizer.ggml.tokens"][:XLMR_VOCAB]
    scores = r.kv["tokenizer.ggml.scores"][:XLMR_VOCAB].tolist()
    charsmap = r.kv["tokenizer.ggml.precompiled_charsmap"].tobytes()
    assert tokens[:4] == ["<s>", "<pad>", "</s>", "<unk>"] and tokens[XLMR_VOCAB - 1] == "<mask>", tokens[:4]

    def added(i, content, lstrip=False):
        return {"id": i, "content": content, "single_word": False, "lstrip": lstrip, "rstrip": False,
                "normalized": False, "special": True}

    def special(t):
        return {"SpecialToken": {"id": t, "type_id": 0}}

    def seq(s):
        return {"Sequence": {"id": s, "type_id": 0}}

    tj = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added(0, "<s>"), added(1, "<pad>"), added(2, "</s>"), added(3, "<unk>"),
                         added(XLMR_VOCAB - 1, "<mask>", lstrip=True)],
        # a plain Precompiled normaliser: llama.cpp's converter reads normalizer.precompiled_charsmap
        "normalizer": {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(charsmap).decode()},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [special("<s>"), seq("A"), special("</s>")],
                           "pair": [special("<s>"), seq("A"), special("</s>"), special("</s>"), seq("B"),
                                    special("</s>")],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]},
                                              "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}},
        "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
        "model": {"type": "Unigram", "unk_id": 3, "vocab": [[t, float(s)] for t, s in zip(tokens, scores)],
                  "byte_fallback": False},
    }
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    dump(d, "tokenizer_config.json", {
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>", "pad_token": "<pad>",
        "cls_token": "<s>", "mask_token": {"content": "<mask>", "lstrip": True, "normalized": False,
                                           "rstrip": False, "single_word": False, "special": True},
        "clean_up_tokenization_spaces": True, "model_max_length": 8192,
        "tokenizer_class": "XLMRobertaTokenizer"})


def xlmr_config(arch, **extra):
    n_layer, H, heads, F, n_pos, n_types = SHAPES["xlmr"]
    c = {"architectures": [arch], "model_type": "xlm-roberta", "attention_probs_dropout_prob": 0.1,
         "bos_token_id": 0, "eos_token_id": 2, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
         "hidden_size": H, "initializer_range": 0.02, "intermediate_size": F, "layer_norm_eps": 1e-05,
         "max_position_embeddings": n_pos, "num_attention_heads": heads, "num_hidden_layers": n_layer,
         "pad_token_id": 1, "position_embedding_type": "absolute", "type_vocab_size": n_types,
         "vocab_size": XLMR_VOCAB}
    c.update(extra)
    return c


# --- kinds ------------------------------------------------------------------------------------
def gen(kind, d, seed, tokenizer_from=None):
    rng = np.random.default_rng(seed)
    os.makedirs(d, exist_ok=True)
    if kind.startswith("bert"):
        n_layer, H, heads, F, n_pos, n_types = SHAPES["bert"]
    if kind == "bert":
        tok = os.path.join(SHARED, "models", "bge-small-en-v1.5", "tokenizer.json")
        V = vocab_size_of(tok)
        copy_shared(d, "bge-small-en-v1.5", "tokenizer.json", "vocab.txt")
        dump(d, "tokenizer_config.json", {"cls_token": "[CLS]", "sep_token": "[SEP]", "unk_token": "[UNK]",
                                          "pad_token": "[PAD]", "mask_token": "[MASK]", "do_lower_case": True,
                                          "model_max_length": 512, "tokenizer_class": "BertTokenizer"})
        dump(d, "config.json", bert_config("BertModel", "bert", V))
        t = encoder_weights(rng, n_layer, H, F, n_pos, n_types, V)
        t.append(("pooler.dense.weight", STD * rng.standard_normal((H, H))))
        t.append(("pooler.dense.bias", STD * rng.standard_normal(H)))
        st = [(n, a, "F32") for n, a in t]
        st.insert(0, ("embeddings.position_ids", np.arange(n_pos)[None, :], "I64"))  # old checkpoints carry it
        write_safetensors(os.path.join(d, "model.safetensors"), st, {"format": "pt"})
        sbert_files(d, "cls", 256, {"query": "Represent this sentence for searching relevant passages: ",
                                    "document": ""}, "query")
    elif kind == "bert-sharded":
        copy_shared(d, "all-MiniLM-L6-v2", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json",
                    "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")
        os.makedirs(os.path.join(d, "1_Pooling"), exist_ok=True)
        shutil.copy(os.path.join(SHARED, "models", "all-MiniLM-L6-v2", "1_Pooling", "config.json"),
                    os.path.join(d, "1_Pooling", "config.json"))
        with open(os.path.join(d, "vocab.txt"), encoding="utf-8") as f:
            V = sum(1 for _ in f)
        dump(d, "config.json", bert_config("BertModel", "bert", V))
        t = encoder_weights(rng, n_layer, H, F, n_pos, n_types, V, prefix="bert.")
        half = len(t) // 2
        shards = [("model-00001-of-00002.safetensors", t[:half]), ("model-00002-of-00002.safetensors", t[half:])]
        wm = {}
        for fn, part in shards:
            write_safetensors(os.path.join(d, fn), [(n, a, "BF16") for n, a in part])
            wm.update({n: fn for n, _ in part})
        dump(d, "model.safetensors.index.json", {"metadata": {"total_size": 0}, "weight_map": wm})
    elif kind == "bert-reranker":
        tok = os.path.join(SHARED, "models", "ms-marco-MiniLM-L-12-v2", "tokenizer.json")
        V = vocab_size_of(tok)
        copy_shared(d, "ms-marco-MiniLM-L-12-v2", "tokenizer.json", "tokenizer_config.json",
                    "special_tokens_map.json", "vocab.txt")
        with open(os.path.join(SHARED, "models", "ms-marco-MiniLM-L-12-v2", "config.json")) as f:
            real = json.load(f)
        cfg = dict(real)
        cfg.update({"hidden_size": H, "intermediate_size": F, "num_attention_heads": heads,
                    "num_hidden_layers": n_layer, "vocab_size": V})
        dump(d, "config.json", cfg)
        t = encoder_weights(rng, n_layer, H, F, n_pos, n_types, V, prefix="bert.")
        n_labels = len(real["id2label"])
        t += [("bert.pooler.dense.weight", STD * rng.standard_normal((H, H))),
              ("bert.pooler.dense.bias", STD * rng.standard_normal(H)),
              ("classifier.weight", 0.5 * rng.standard_normal((n_labels, H))),
              ("classifier.bias", STD * rng.standard_normal(n_labels))]
        write_safetensors(os.path.join(d, "model.safetensors"), [(n, a, "F32") for n, a in t])
    elif kind in ("xlmr", "xlmr-reranker"):
        n_layer, H, heads, F, n_pos, n_types = SHAPES["xlmr"]
        if tokenizer_from:  # same files as another XLM-R directory (saves rebuilding 10 MB of JSON)
            for n in ("tokenizer.json", "tokenizer_config.json"):
                shutil.copy(os.path.join(tokenizer_from, n), os.path.join(d, n))
        else:
            xlmr_tokenizer_files(d)
        if kind == "xlmr":
            dump(d, "config.json", xlmr_config("XLMRobertaModel"))
            t = encoder_weights(rng, n_layer, H, F, n_pos, n_types, XLMR_VOCAB)
            t += [("pooler.dense.weight", STD * rng.standard_normal((H, H))),
                  ("pooler.dense.bias", STD * rng.standard_normal(H))]
            write_safetensors(os.path.join(d, "model.safetensors"), [(n, a, "F16") for n, a in t])
            sbert_files(d, "mean", 512, {"query": "query: ", "passage": "passage: "})  # multilingual-e5 style
        else:
            dump(d, "config.json", xlmr_config("XLMRobertaForSequenceClassification",
                                               id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0}))
            t = encoder_weights(rng, n_layer, H, F, n_pos, n_types, XLMR_VOCAB, prefix="roberta.")
            t += [("classifier.dense.weight", 0.3 * rng.standard_normal((H, H))),
                  ("classifier.dense.bias", STD * rng.standard_normal(H)),
                  ("classifier.out_proj.weight", 0.5 * rng.standard_normal((1, H))),
                  ("classifier.out_proj.bias", STD * rng.standard_normal(1))]
            write_safetensors(os.path.join(d, "model.safetensors"), [(n, a, "F32") for n, a in t])
    else:
        raise SystemExit(f"unknown kind {kind!r}")


KINDS = ("bert", "bert-sharded", "bert-reranker", "xlmr", "xlmr-reranker")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    gen(a.kind, a.out_dir, a.seed)


if __name__ == "__main__":
    main()
