#!/usr/bin/env python3
"""`embd convert`: Hugging Face directories -> GGUF, checked against llama.cpp's converter rules and
against an independent numpy reference computed from the Hugging Face weights.

Random-weight HF directories come from gen_hf_model.py (BERT, sharded BF16 BERT with only
vocab.txt, BERT cross-encoder, XLM-R, XLM-R cross-encoder), each converted to f32, f16 and q8_0.

1. Structure: the GGUF's metadata keys (names, types, values) and tensors (names, shapes, types)
   equal what llama.cpp's convert_hf_to_gguf.py would write. Its Python deps (torch,
   transformers) are not installed, so `expected_gguf` re-derives that output from the rules of
   conversion/bert.py and base.py, using gguf-py's own tensor-name map and SpecialVocab; embd's
   documented differences are spelled out there. Tensor data equals the HF weights (exact for
   f32, f16 rounding, q8_0 within half a quantisation step); XLM-R positions are the HF rows from
   padding_idx + 1 on.
2. Numbers: `embd embed` on the converted BERTs vs the float64 reference (tests/fidelity/bert_ref.py)
   loaded from the HF safetensors, by centred cosine (f32/f16 >= 0.9999, q8_0 >= 0.999); `embd
   tokenize` on the converted vocabularies gives the Hugging Face ids of the committed fixtures.
   XLM-R: token-id input through /v1/embeddings against the reference with HF's position ids
   (padding_idx + 1 + i on the original table).
3. llama.cpp: when llama-embedding is built (scripts/build-llama.sh --tools), the converted files load
   there and give the reference's vectors / cross-encoder scores (gelu tanh-f16, llama.cpp's).
4. Errors: missing config.json / weights / tokenizer, unsupported architecture, corrupt safetensors
   headers, wrong shapes, unknown tensors: exit 1, one line naming the problem, no output left.
"""
import base64
import functools
import glob
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("EMBD_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(SRC, "tests", "fidelity"))
import gen_hf_model as gen  # noqa: E402
from bert_ref import GELU, BertRef  # noqa: E402
from common import centred_cosine, import_gguf, l2_normalize, load_jsonl, truncate_ids  # noqa: E402
from gguf_lite import GGUF  # noqa: E402
import tally  # noqa: E402
from tally import check, failures  # noqa: E402

EMBD = os.environ.get("EMBD_BIN") or os.path.join(SRC, "build", "embd")
TMP = os.path.join(os.environ.get("EMBD_TEST_TMP") or "/tmp/embd-test-tmp", "convert")
TYPES = ("f32", "f16", "q8_0")
MIN_CENTRED = {"f32": 0.9999, "f16": 0.9999, "q8_0": 0.999}
FILE_TYPE = {"f32": 0, "f16": 1, "q8_0": 7}
QTYPE = {"f32": "F32", "f16": "F16", "q8_0": "Q8_0"}
TT_NORMAL, TT_UNKNOWN, TT_CONTROL, TT_USER, TT_UNUSED = 1, 2, 3, 4, 5

TEXTS = ["hello world", "The quick brown fox jumps over the lazy dog.", "What is the capital of France?",
         "Paris is the capital and most populous city of France.", "def add(a, b): return a + b",
         "a", "1 2 3 4 5 6 7 8 9 10", "Tokenizers split words into sub-word pieces.",
         " ".join(f"Sentence {i} says that batching packs texts of similar length together." for i in range(30))]

def run(args, **kw):
    return subprocess.run([EMBD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def convert(hf, out, qtype):
    p = run(["convert", hf, out, "--type", qtype, "--quiet"])
    if p.returncode != 0:
        sys.exit(f"embd convert {hf} failed ({p.returncode}): {p.stderr}")


# --- what llama.cpp's converter writes -------------------------------------------------------
_json_cache = {}


def load_json(d, name):
    """Parsed JSON file (None when absent); cached: the XLM-R tokenizer.json is 10 MB. Callers must
    not modify the result."""
    p = os.path.join(d, name)
    if not os.path.exists(p):
        return None
    key = (p, os.stat(p).st_mtime_ns)
    if key not in _json_cache:
        with open(p, encoding="utf-8") as f:
            _json_cache[key] = json.load(f)
    return _json_cache[key]


def looks_special(t):  # base.py does_token_look_special
    return (t in ("<pad>", "<mask>", "<2mass>", "[@BOS@]") or (t.startswith("<|") and t.endswith("|>"))
            or (t.startswith("<unused") and t.endswith(">")))


def tc_name(tc, kind):
    e = (tc or {}).get(f"{kind}_token")
    return e.get("content") if isinstance(e, dict) else e


def bert_vocab(d, n_vocab):
    """BertModel.set_vocab: get_vocab_base (AutoTokenizer's vocab incl. added tokens) + phantom."""
    tj, tc = load_json(d, "tokenizer.json"), load_json(d, "tokenizer_config.json")
    if tj:
        vocab = dict(tj["model"]["vocab"])
        added = {a["content"]: a for a in tj["added_tokens"]}
        vocab.update({c: a["id"] for c, a in added.items()})
    else:  # BertTokenizerFast from vocab.txt: its special tokens are the added tokens
        with open(os.path.join(d, "vocab.txt"), encoding="utf-8") as f:
            vocab = {w.rstrip("\n"): i for i, w in enumerate(f)}
        names = [tc_name(tc, k) or dflt for k, dflt in
                 (("unk", "[UNK]"), ("sep", "[SEP]"), ("pad", "[PAD]"), ("cls", "[CLS]"), ("mask", "[MASK]"))]
        added = {n: {"special": True} for n in names}
    rev = {i: t for t, i in vocab.items()}
    tokens, types = [], []
    for i in range(n_vocab):
        if i not in rev:
            tokens.append(f"[PAD{i}]")
            types.append(TT_UNUSED)
            continue
        t = rev[i]
        if t in added:
            types.append(TT_CONTROL if added[t].get("special") or looks_special(t) else TT_USER)
        else:
            types.append(TT_NORMAL)
        tokens.append(t)
    tokens = [t if ty == TT_CONTROL else (t[2:] if t.startswith("##") else "\u2581" + t)
              for t, ty in zip(tokens, types)]
    return tokens, types


def xlmr_vocab(d, cfg):
    """XLMRobertaModel._xlmroberta_set_vocab, tokenizer.json branch."""
    tj, tc = load_json(d, "tokenizer.json"), load_json(d, "tokenizer_config.json") or {}
    pieces = tj["model"]["vocab"]
    n = max(cfg.get("vocab_size", 0), len(pieces))
    tokens, scores, types = [f"[PAD{i}]" for i in range(n)], [-10000.0] * n, [TT_UNUSED] * n
    added = {a["content"]: a["id"] for a in tj["added_tokens"]}
    unk = added.get(tc.get("unk_token"), tj["model"].get("unk_id", 3))
    special_ids = {added[tc_name(tc, k)] for k in ("bos", "eos", "unk", "sep", "pad", "cls", "mask")
                   if tc_name(tc, k) in added}
    for i, (p, s) in enumerate(pieces):
        ty = TT_NORMAL
        if i == unk:
            ty = TT_UNKNOWN
        elif i in special_ids:
            ty = TT_CONTROL
        elif i in added.values():
            ty = TT_USER
        tokens[i], scores[i], types[i] = p, s, ty
    ms = tj.get("pre_tokenizer") or {}
    add_prefix = ms.get("prepend_scheme", "always") != "never" if ms.get("type") == "Metaspace" else True
    charsmap = base64.b64decode(tj["normalizer"]["precompiled_charsmap"])
    return tokens, scores, types, add_prefix, bool(tc.get("clean_up_tokenization_spaces", True)), charsmap


def pooling_of(d):
    """base.py _try_set_pooling_type"""
    mods = load_json(d, "modules.json")
    path = next((m["path"] for m in (mods or []) if m["type"].endswith("Pooling")), None)
    if path is None:
        return None
    p = load_json(d, os.path.join(path, "config.json"))
    if p.get("pooling_mode_mean_tokens"):
        return 1
    if p.get("pooling_mode_cls_token"):
        return 2
    if p.get("pooling_mode_lasttoken"):
        return 3
    return {"mean": 1, "cls": 2, "lasttoken": 3}[p["pooling_mode"]]


def ggml_shape(np_shape):
    s = list(reversed(np_shape))
    while len(s) > 1 and s[-1] == 1:  # ggml's n_dims drops trailing 1s
        s.pop()
    return s


def expected_gguf(d, qtype):
    """(kv {key: value}, tensors {name: (ggml shape, type name, data float64)}) for llama.cpp's rules
    and output type qtype."""
    kv, base = _expected_base(d)
    tensors = {}
    for new, data in base:
        nd = data.ndim
        if (nd <= 1 or new.endswith("_norm.weight") or new in ("position_embd.weight", "token_types.weight")
                or not new.endswith(".weight")):
            t = "F32"
        else:
            t = QTYPE[qtype]
            if t == "Q8_0" and data.shape[-1] % 32:  # a QuantError in gguf-py: F16 instead
                t = "F16"
        tensors[new] = (ggml_shape(data.shape), t, data)
    return dict(kv, **{"general.file_type": FILE_TYPE[qtype]}), tensors


@functools.lru_cache(maxsize=None)
def _expected_base(d):
    """Metadata (without general.file_type) and [(gguf name, data)] of llama.cpp's conversion of d.

    embd's documented differences from convert_hf_to_gguf.py:
      - BertForSequenceClassification keeps its pooler as cls.{weight,bias} (llama.cpp drops it,
        which makes the scores differ from HF); such models get pooling_type RANK (4) and always
        classifier.output_labels (llama.cpp omits the dummy LABEL_0/LABEL_1 pair);
      - tokenizer.ggml.pre is "default" (llama.cpp hashes a tokenisation made by transformers;
        the WordPiece and Unigram tokenizers ignore it);
      - with only vocab.txt, special ids are looked up in the vocabulary (SpecialVocab finds none);
      - embd.* keys from the sentence-transformers files.
    """
    gguf = import_gguf()
    cfg = load_json(d, "config.json")
    arch = cfg["architectures"][0]
    xlmr, is_cls = arch.startswith("XLMRoberta"), arch.endswith("ForSequenceClassification")
    id2label = cfg.get("id2label")
    labels = None
    if id2label and not (len(id2label) == 2 and id2label.get("0") == "LABEL_0"):
        labels = [v for _, v in sorted(id2label.items())]
    if is_cls and labels is None:
        labels = [f"LABEL_{i}" for i in range(cfg.get("num_labels", 2))]
    pos_off = cfg["pad_token_id"] + 1 if xlmr and cfg.get("pad_token_id") is not None else 0
    W = gen.read_hf_weights(d)
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, cfg["num_hidden_layers"])
    tensors = []
    for name, data in W.items():
        n = name
        if xlmr and n.startswith("roberta."):
            n = n[8:]
        if n.startswith("bert."):
            n = n[5:]
        if n.endswith(".gamma"):
            n = n[:-6] + ".weight"
        if n.endswith(".beta"):
            n = n[:-5] + ".bias"
        if n.startswith(("cls.predictions", "cls.seq_relationship")) or n == "embeddings.position_ids":
            continue
        if n in ("pooler.dense.weight", "pooler.dense.bias"):
            if not (is_cls and not xlmr):
                continue
            new = "cls" + n[len("pooler.dense"):]  # embd: the BERT classifier's pooler
        else:
            if labels and n in ("classifier.weight", "classifier.bias"):
                n = "classifier.out_proj" + n[len("classifier"):]
            new = tmap.get_name(n, try_suffixes=(".weight", ".bias"))
            assert new, f"llama.cpp cannot map {name}"
        if new == "position_embd.weight":
            data = data[pos_off:]
        tensors.append((new, data))

    kv = {"general.architecture": "bert", "general.type": "model", "general.name": os.path.basename(d),
          "bert.block_count": cfg["num_hidden_layers"],
          "bert.context_length": cfg["max_position_embeddings"] - pos_off,
          "bert.embedding_length": cfg["hidden_size"], "bert.feed_forward_length": cfg["intermediate_size"],
          "bert.attention.head_count": cfg["num_attention_heads"],
          "bert.attention.layer_norm_epsilon": float(np.float32(cfg["layer_norm_eps"])),
          "bert.attention.causal": False,
          "general.quantization_version": 2, "tokenizer.ggml.pre": "default",
          "tokenizer.ggml.token_type_count": cfg.get("type_vocab_size", 1)}
    pooling = 4 if is_cls else pooling_of(d)
    if pooling is not None:
        kv["bert.pooling_type"] = pooling
    if labels:
        kv["bert.classifier.output_labels"] = labels
    if xlmr:
        tokens, scores, types, add_prefix, rm_ws, charsmap = xlmr_vocab(d, cfg)
        kv.update({"tokenizer.ggml.model": "t5", "tokenizer.ggml.scores": [float(np.float32(s)) for s in scores],
                   "tokenizer.ggml.add_space_prefix": add_prefix, "tokenizer.ggml.remove_extra_whitespaces": rm_ws,
                   "tokenizer.ggml.precompiled_charsmap": list(charsmap)})
    else:
        tokens, types = bert_vocab(d, cfg["vocab_size"])
        kv["tokenizer.ggml.model"] = "bert"
    kv["tokenizer.ggml.tokens"] = tokens
    kv["tokenizer.ggml.token_type"] = types
    sv = gguf.SpecialVocab(d, n_vocab=len(tokens))
    ids = dict(sv.special_token_ids)
    if load_json(d, "tokenizer.json") is None:  # embd: vocab.txt specials
        tc = load_json(d, "tokenizer_config.json")
        with open(os.path.join(d, "vocab.txt"), encoding="utf-8") as f:
            words = [w.rstrip("\n") for w in f]
        for k, dflt in (("unk", "[UNK]"), ("sep", "[SEP]"), ("pad", "[PAD]"), ("cls", "[CLS]"), ("mask", "[MASK]")):
            name = tc_name(tc, k) or dflt  # BertTokenizer's defaults
            if k not in ids and name in words:
                ids[k] = words.index(name)
    keyname = {"bos": "bos", "eos": "eos", "unk": "unknown", "sep": "seperator", "pad": "padding", "cls": "cls",
               "mask": "mask"}
    for k, v in ids.items():
        kv[f"tokenizer.ggml.{keyname[k]}_token_id"] = v
    for k, v in sv.add_special_token.items():
        kv[f"tokenizer.ggml.add_{k}_token"] = v
    if sv.normalizer_lowercase is not None:
        kv["tokenizer.ggml.normalizer.lowercase"] = sv.normalizer_lowercase
    if sv.normalizer_strip_accents is not None:
        kv["tokenizer.ggml.normalizer.strip_accents"] = sv.normalizer_strip_accents
    sb, cst = load_json(d, "sentence_bert_config.json"), load_json(d, "config_sentence_transformers.json")
    if sb and sb.get("max_seq_length"):
        kv["embd.max_seq_length"] = sb["max_seq_length"]
    for name, text in ((cst or {}).get("prompts") or {}).items():
        kv[f"embd.prompts.{name}"] = text
    if cst and cst.get("default_prompt_name"):
        kv["embd.default_prompt_name"] = cst["default_prompt_name"]
    return kv, tensors


def plain(v):
    return v.tolist() if isinstance(v, np.ndarray) else v


def check_structure(label, d, path, qtype):
    kv_want, t_want = expected_gguf(d, qtype)
    g = read_gguf(path)
    got = {k: plain(v) for k, v in g.kv.items()}
    check(set(got) == set(kv_want), f"{label}: keys differ: extra {sorted(set(got) - set(kv_want))}, "
                                    f"missing {sorted(set(kv_want) - set(got))}")
    for k, v in kv_want.items():
        if k in got:
            same = (np.allclose(got[k], v, rtol=0, atol=0) if k == "tokenizer.ggml.scores" else got[k] == v)
            check(same, f"{label}: {k} = {str(got[k])[:80]}, want {str(v)[:80]}")
    # value types as llama.cpp reads them
    types = {"bert.pooling_type": "4", "bert.context_length": "4", "general.file_type": "4",
             "bert.attention.layer_norm_epsilon": "6", "bert.attention.causal": "7",
             "tokenizer.ggml.token_type": "ARRAY[5]", "tokenizer.ggml.scores": "ARRAY[6]",
             "tokenizer.ggml.precompiled_charsmap": "ARRAY[0]", "tokenizer.ggml.tokens": "ARRAY[STRING]"}
    for k, t in types.items():
        if k in g.kv_types:
            check(g.kv_types[k] == t, f"{label}: {k} stored as {g.kv_types[k]}, want {t}")
    names = [t.name for t in g.tensors]
    check(sorted(names) == sorted(t_want), f"{label}: tensors differ: extra {sorted(set(names) - set(t_want))}, "
                                           f"missing {sorted(set(t_want) - set(names))}")
    for t in g.tensors:
        if t.name not in t_want:
            continue
        shape, ty, ref = t_want[t.name]
        check(t.shape == shape and t.type_name == ty,
              f"{label}: {t.name} is {t.type_name}{t.shape}, want {ty}{shape}")
        a = g.array(t.name).reshape(ref.shape)
        if t.type_name == "F32":
            ok = np.array_equal(a, ref.astype(np.float32))
        elif t.type_name == "F16":
            ok = np.array_equal(a, ref.astype(np.float16).astype(np.float64))
        else:  # q8_0: |error| <= half a step (block max / 127) + 127 x the f16 rounding of the step
            blocks = ref.reshape(-1, 32)
            step = np.abs(blocks).max(axis=1, keepdims=True) / 127
            ok = bool(np.all(np.abs(a.reshape(-1, 32) - blocks) <= 0.6 * step + 1e-12))
        check(ok, f"{label}: {t.name} data differs from the HF weights")
    return g


# --- reference from the HF weights ------------------------------------------------------------
def hf_ref(d, gelu="erf"):
    """BertRef on the Hugging Face weights themselves (not the GGUF): HF names, HF layouts."""
    cfg = load_json(d, "config.json")
    xlmr = cfg["model_type"] == "xlm-roberta"
    W = {}
    for k, v in gen.read_hf_weights(d).items():
        for p in ("roberta.", "bert."):
            if k.startswith(p):
                k = k[len(p):]
        W[k] = v
    r = BertRef.__new__(BertRef)
    r.n_layer, r.n_embd = cfg["num_hidden_layers"], cfg["hidden_size"]
    r.n_head, r.eps = cfg["num_attention_heads"], cfg["layer_norm_eps"]
    pos = W["embeddings.position_embeddings.weight"]
    if xlmr:
        # HF create_position_ids_from_input_ids: an unpadded sequence has position ids
        # padding_idx + 1 + i, i.e. rows padding_idx + 1 ... of the table
        pos = pos[cfg["pad_token_id"] + 1 + np.arange(pos.shape[0] - cfg["pad_token_id"] - 1)]
    r.n_ctx = pos.shape[0]
    r.pooling = {1: "mean", 2: "cls", 3: "last"}.get(pooling_of(d), "cls")
    r.sep_id = 2 if xlmr else 102
    r.gelu = GELU[gelu]
    w = {"token_embd.weight": W["embeddings.word_embeddings.weight"], "position_embd.weight": pos,
         "token_types.weight": W["embeddings.token_type_embeddings.weight"],
         "token_embd_norm.weight": W["embeddings.LayerNorm.weight"],
         "token_embd_norm.bias": W["embeddings.LayerNorm.bias"]}
    hf = {"attn_q": "attention.self.query", "attn_k": "attention.self.key", "attn_v": "attention.self.value",
          "attn_output": "attention.output.dense", "attn_output_norm": "attention.output.LayerNorm",
          "ffn_up": "intermediate.dense", "ffn_down": "output.dense", "layer_output_norm": "output.LayerNorm"}
    for i in range(r.n_layer):
        for g, h in hf.items():
            wt = W[f"encoder.layer.{i}.{h}.weight"]
            w[f"blk.{i}.{g}.weight"] = np.ascontiguousarray(wt.T) if wt.ndim == 2 else wt  # (in, out)
            w[f"blk.{i}.{g}.bias"] = W[f"encoder.layer.{i}.{h}.bias"]
    r.w = w
    r.hf = W
    return r


def hf_score(r, ids, types=None):
    """Sequence-classification logits as HF computes them."""
    h = r.hidden_states(ids, keep=slice(0, 1), types=types)[0]
    W = r.hf
    if "classifier.out_proj.weight" in W:  # RobertaClassificationHead: dense -> tanh -> out_proj
        x = np.tanh(h @ W["classifier.dense.weight"].T + W["classifier.dense.bias"])
        return x @ W["classifier.out_proj.weight"].T + W["classifier.out_proj.bias"]
    x = np.tanh(h @ W["pooler.dense.weight"].T + W["pooler.dense.bias"])  # BertPooler
    return x @ W["classifier.weight"].T + W["classifier.bias"]


# --- numbers through embd ---------------------------------------------------------------------
def tokenize(model, texts):
    inp = "\n".join(json.dumps({"id": i, "text": t}) for i, t in enumerate(texts)) + "\n"
    p = run(["tokenize", "--model", model], input=inp)
    if p.returncode != 0:
        sys.exit(f"embd tokenize failed: {p.stderr}")
    return [json.loads(line)["ids"] for line in p.stdout.splitlines() if line.strip()]


def embed(model, texts, *extra):
    inp = "\n".join(json.dumps({"id": i, "text": t}) for i, t in enumerate(texts)) + "\n"
    p = run(["embed", "--model", model, "--quiet", "--threads", "2", *extra], input=inp)
    if p.returncode != 0:
        sys.exit(f"embd embed failed: {p.stderr}")
    return np.array([json.loads(line)["embedding"] for line in p.stdout.splitlines() if line.strip()])


def check_tokenizer(label, gguf_path, fixture):
    rows = load_jsonl(os.path.join(SRC, "tests", "fixtures", fixture))
    got = tokenize(gguf_path, [r["text"] for r in rows])
    bad = [r["id"] for r, g in zip(rows, got) if g != r["ids"]]  # embd tokenize does not truncate
    check(len(got) == len(rows) and not bad, f"{label}: embd tokenize differs from HF ids on {bad[:5]}")


_gguf_cache = {}


def read_gguf(path):
    if path not in _gguf_cache:
        _gguf_cache[path] = GGUF(path)
    return _gguf_cache[path]


def file_ref(hf_reference, path):
    """The HF reference with its weights replaced by the values stored in the GGUF (dequantised):
    what a perfect engine computes from this file. Separates the type's rounding from embd's."""
    g = read_gguf(path)
    r = BertRef.__new__(BertRef)
    r.__dict__.update(hf_reference.__dict__)
    r.w = {}
    for name, a in hf_reference.w.items():
        v = g.array(name).reshape(a.T.shape if (a.ndim == 2 and name.startswith("blk.")) else a.shape)
        r.w[name] = np.ascontiguousarray(v.T) if (v.ndim == 2 and name.startswith("blk.")) else v
    return r


def compare(label, qtype, got, ids, hf_reference, path):
    """embd's vectors vs the reference on the file's own weights (thresholds), and vs the HF weights
    (f32: the same threshold; f16/q8_0: printed, that gap is the type's rounding)."""
    want_hf = hf_reference.embed(ids)
    want_file = file_ref(hf_reference, path).embed(ids)
    cc_file, cc_hf = centred_cosine(got, want_file), centred_cosine(got, want_hf)
    cc_type = centred_cosine(want_file, want_hf)
    print(f"{label} {qtype}: centred cosine min: embd vs reference on the file's weights {cc_file.min():.6f}, "
          f"embd vs HF weights {cc_hf.min():.6f} (reference on file vs HF weights {cc_type.min():.6f})", flush=True)
    check(cc_file.min() >= MIN_CENTRED[qtype], f"{label} {qtype}: centred cosine {cc_file.min():.6f} "
                                               f"< {MIN_CENTRED[qtype]}")
    if qtype == "f32":
        check(cc_hf.min() >= MIN_CENTRED[qtype], f"{label} f32: centred cosine vs HF {cc_hf.min():.6f}")


def st_settings(d):
    """sentence-transformers semantics embd follows: the default prompt is prepended, and inputs
    are cut at max_seq_length."""
    def load(name):
        p = os.path.join(d, name)
        return json.load(open(p, encoding="utf-8")) if os.path.exists(p) else {}
    cst, sb = load("config_sentence_transformers.json"), load("sentence_bert_config.json")
    prompt = (cst.get("prompts") or {}).get(cst.get("default_prompt_name") or "", "")
    return prompt, sb.get("max_seq_length")


def check_bert_numbers(label, d, files):
    ref = hf_ref(d)
    prompt, max_seq = st_settings(d)
    cut = (lambda x: truncate_ids(x, min(max_seq, ref.n_ctx), ref.sep_id)) if max_seq else (lambda x: x)
    for qtype, path in files.items():
        # the type's numbers on the texts alone (a long shared prompt would leave little
        # text-dependent signal in a tiny random model for the centred cosine to measure)
        ids = [cut(x) for x in tokenize(path, TEXTS)]
        compare(label, qtype, embed(path, TEXTS, "--prompt", ""), ids, ref, path)
        if qtype == "f32" and prompt:  # by default the model's default prompt goes in front
            ids = [cut(x) for x in tokenize(path, [prompt + t for t in TEXTS])]
            compare(label + " (default prompt)", qtype, embed(path, TEXTS), ids, ref, path)


def check_rerank_numbers(label, d, files):
    """`embd rerank --raw` on (query, document) pairs against HF's sequence-classification logits with
    HF's pair encoding: BERT [CLS] q [SEP] d [SEP] with token types 0/1, XLM-R <s> q </s></s> d </s>."""
    ref = hf_ref(d)
    xlmr = "xlmr" in label
    query, docs = TEXTS[0], TEXTS[1:7]
    tol = {"f32": 1e-4, "f16": 2e-3, "q8_0": 3e-2}
    for qtype, path in files.items():
        q, *ds = tokenize(path, [query] + docs)
        pairs = [(q + [ref.sep_id] + x[1:], None) if xlmr else (q + x[1:], [0] * len(q) + [1] * (len(x) - 1))
                 for x in ds]
        want = np.array([hf_score(ref, ids, types)[0] for ids, types in pairs])
        inp = "\n".join(json.dumps({"id": i, "text": t}) for i, t in enumerate(docs)) + "\n"
        p = run(["rerank", "--model", path, "--query", query, "--raw", "--threads", "2"], input=inp)
        if p.returncode != 0:
            check(False, f"{label} {qtype}: embd rerank failed: {p.stderr.strip()}")
            continue
        got = np.array([r["score"] for r in json.loads(p.stdout)["results"]])
        err = np.abs(got - want) / (1 + np.abs(want))
        print(f"{label} {qtype}: embd rerank vs HF logits: max relative error {err.max():.2e}", flush=True)
        check(err.max() <= tol[qtype], f"{label} {qtype}: rerank logits differ from HF by {err.max():.2e}")


def random_ids(rng, n_items, bos, eos, lo, hi, max_len=60):
    out = [[bos, eos]]
    for _ in range(n_items - 1):
        n = int(rng.integers(1, max_len))
        out.append([bos] + rng.integers(lo, hi, n).tolist() + [eos])
    return out


def fake_wordpiece(path, n_vocab):
    """A WordPiece tokenizer.json with n_vocab entries: lets `embd serve` load an XLM-R GGUF for
    token-id input while embd's tokenizer has no Unigram support (ids are used as given)."""
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
    vocab.update({f"t{i}": i for i in range(5, n_vocab)})
    tj = {"version": "1.0", "added_tokens": [{"id": i, "content": c, "special": True, "single_word": False,
                                              "lstrip": False, "rstrip": False, "normalized": False}
                                             for c, i in list(vocab.items())[:5]],
          "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                         "strip_accents": None, "lowercase": True},
          "pre_tokenizer": {"type": "BertPreTokenizer"},
          "post_processor": {"type": "TemplateProcessing",
                             "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                                        {"Sequence": {"id": "A", "type_id": 0}},
                                        {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                             "pair": [], "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                                                            "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
          "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                    "max_input_chars_per_word": 100, "vocab": vocab}}
    with open(path, "w") as f:
        json.dump(tj, f)


def check_xlmr_numbers(label, d, files):
    # tests/server/common.py, loaded under another name than tests/fidelity/common.py
    spec = importlib.util.spec_from_file_location("server_common", os.path.join(SRC, "tests", "server", "common.py"))
    srv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(srv)
    ref = hf_ref(d)
    rng = np.random.default_rng(5)
    ids = random_ids(rng, 12, 0, 2, 4, 250000)
    ids.append([0] + rng.integers(4, 250000, 510).tolist() + [2])  # the whole context: 512 positions
    for qtype, path in files.items():
        args = []
        p = run(["info", "--model", path])
        if p.returncode != 0:
            if "t5" not in p.stderr:
                check(False, f"{label} {qtype}: embd cannot load the model: {p.stderr.strip()}")
                continue
            fake = os.path.join(TMP, "fake-wordpiece-xlmr.json")
            if not os.path.exists(fake):
                fake_wordpiece(fake, 250002)
            args = ["--tokenizer", fake]
        s = srv.Server(*args, model=path)
        try:
            r = s.post("/v1/embeddings", {"input": ids})
            check(r.status == 200, f"{label} {qtype}: /v1/embeddings status {r.status}: {r.body[:200]}")
            if r.status == 200:
                got = np.array([e["embedding"] for e in sorted(r.json()["data"], key=lambda e: e["index"])])
                compare(label, qtype, got, ids, ref, path)
        finally:
            s.stop()


# --- llama.cpp ----------------------------------------------------------------------------------
def find_llama_embedding():
    hits = sorted(glob.glob(os.path.expanduser("~/.cache/embd/llama.cpp-*/build-*-tools/bin/llama-embedding")))
    return hits[-1] if hits else None


def llama_rank(binary, model, texts):
    """Token ids and rank scores from llama-embedding --pooling rank. Its JSON output carries the
    score as the first value of an otherwise uninitialised n_embd row (not always valid JSON), and
    the log line rounds to 3 decimals, so the first value is taken from the JSON text."""
    cmd = [binary, "-m", model, "-p", "\n".join(texts), "--pooling", "rank", "--embd-normalize", "-1",
           "--embd-output-format", "json", "--verbose-prompt", "-t", "2", "-c", "512"]
    for _ in range(10):  # llama.cpp's asynchronous logger sometimes loses stdout at exit
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
        counts = [int(n) for n in re.findall(r"number of tokens in prompt = (\d+)", p.stderr)]
        toks = [int(m) for m in re.findall(r"^\s*(\d+) -> '", p.stdout, flags=re.M)]
        scores = [float(x) for x in re.findall(r'"embedding": \[\s*([-+0-9.eE]+)', p.stdout)]
        if len(counts) == len(texts) == len(scores) and sum(counts) == len(toks):
            ids, at = [], 0
            for n in counts:
                ids.append(toks[at:at + n])
                at += n
            return ids, np.array(scores)
    sys.exit(f"no parsable llama-embedding rank output: {p.stdout[-2000:]}")


def check_llama(hf_dirs, files):
    binary = find_llama_embedding()
    if not binary:
        print("llama-embedding not built (scripts/build-llama.sh --tools): llama.cpp load check skipped")
        return
    from check_llama_ref import run_llama  # tests/fidelity
    for kind in ("bert", "xlmr"):
        ref = hf_ref(hf_dirs[kind], gelu="tanh-f16")
        ids, got = run_llama(binary, files[kind]["f32"], TEXTS[:6], ref.pooling, ["-t", "2"])
        cc = centred_cosine(got, ref.embed(ids))
        print(f"llama.cpp {kind} f32: centred cosine vs HF reference (tanh-f16 GELU) min {cc.min():.6f}")
        check(cc.min() >= 0.9999, f"llama.cpp {kind}: centred cosine {cc.min():.6f}")
    for kind in ("bert-reranker", "xlmr-reranker"):
        ref = hf_ref(hf_dirs[kind], gelu="tanh-f16")
        ids, got = llama_rank(binary, files[kind]["f32"], TEXTS[:6])
        want = np.array([hf_score(ref, x)[0] for x in ids])
        err = np.abs(got - want).max()
        print(f"llama.cpp {kind} f32: rank scores {np.round(got, 4).tolist()}, max |diff| vs HF {err:.2e}")
        check(err <= 1e-3 * max(1.0, np.abs(want).max()), f"llama.cpp {kind}: scores differ by {err}")


# --- errors -------------------------------------------------------------------------------------
def check_error(label, hf, expect, args=(), out=None):
    out = out or os.path.join(TMP, "err-out.gguf")
    before = os.path.exists(out)
    p = run(["convert", hf, out, *args])
    lines = p.stderr.strip().splitlines()
    check(p.returncode == 1, f"{label}: exit {p.returncode}, want 1 ({p.stderr.strip()})")
    check(len(lines) == 1 and expect in p.stderr, f"{label}: stderr {p.stderr.strip()!r} lacks {expect!r}")
    check(os.path.exists(out) == before, f"{label}: output file state changed")
    left = glob.glob(out + ".tmp.*")
    check(not left, f"{label}: temporary files left: {left}")


def corrupt_copy(src, name, mutate):
    d = os.path.join(TMP, "broken", name)
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(src, d)
    mutate(d)
    return d


def set_header(d, header_bytes, data=b""):
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(len(header_bytes).to_bytes(8, "little") + header_bytes + data)


def check_errors(hf):
    bert = hf["bert"]
    check_error("missing config", corrupt_copy(bert, "noconfig", lambda d: os.remove(os.path.join(d, "config.json"))),
                "missing config.json")
    check_error("missing weights", corrupt_copy(bert, "noweights",
                                                lambda d: os.remove(os.path.join(d, "model.safetensors"))),
                "missing weights")

    def gpt2(d):
        c = load_json(d, "config.json")
        c["architectures"] = ["GPT2LMHeadModel"]
        gen.dump(d, "config.json", c)
    check_error("unsupported architecture", corrupt_copy(bert, "gpt2", gpt2), "unsupported architecture 'GPT2LMHeadModel'")

    def notok(d):
        os.remove(os.path.join(d, "tokenizer.json"))
        os.remove(os.path.join(d, "vocab.txt"))
    check_error("missing tokenizer", corrupt_copy(bert, "notok", notok), "missing tokenizer")

    def empty_vocab(d):  # a WordPiece tokenizer.json without a single token (found by fuzz_hf_tokenizer)
        tj = load_json(d, "tokenizer.json")
        tj = dict(tj, model=dict(tj["model"], vocab={}), added_tokens=[])
        gen.dump(d, "tokenizer.json", tj)
    check_error("empty vocabulary", corrupt_copy(bert, "emptyvocab", empty_vocab), "WordPiece vocabulary is empty")
    check_error("not a directory", os.path.join(TMP, "nonexistent-dir"), "is not a directory")
    check_error("bad --type", bert, "--type must be", args=("--type", "q4_0"))
    # XLM-R without tokenizer.json (sentencepiece.bpe.model alone is not read)
    def spm_only(d):
        os.remove(os.path.join(d, "tokenizer.json"))
        with open(os.path.join(d, "sentencepiece.bpe.model"), "wb") as f:
            f.write(b"\x0a\x00")
    small = corrupt_copy(hf["bert"], "xlmr-spm", lambda d: None)
    c = load_json(small, "config.json")
    c.update({"architectures": ["XLMRobertaModel"], "model_type": "xlm-roberta", "pad_token_id": 1})
    gen.dump(small, "config.json", c)
    spm_only(small)
    check_error("XLM-R sentencepiece only", small, "sentencepiece.bpe.model alone is not supported")

    hdr = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    corrupt = {
        "truncated file": lambda d: open(os.path.join(d, "model.safetensors"), "wb").write(b"\x10\x00"),
        "header length past the end": lambda d: set_header(d, b"{}" + b" " * 6, b"")
        or open(os.path.join(d, "model.safetensors"), "r+b").write((1 << 40).to_bytes(8, "little")),
        "header not JSON": lambda d: set_header(d, b"{not json", b"\0" * 16),
        "header not an object": lambda d: set_header(d, b"[1,2,3]", b""),
        "offsets past the data": lambda d: set_header(d, hdr, b"\0" * 4),
        "shape/offset mismatch": lambda d: set_header(
            d, json.dumps({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}).encode(), b"\0" * 8),
        "unknown dtype": lambda d: set_header(
            d, json.dumps({"a": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}}).encode(), b"\0" * 8),
        "duplicate name": lambda d: set_header(
            d, b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
               b'"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4),
    }
    for name, mutate in corrupt.items():
        check_error(f"corrupt safetensors: {name}", corrupt_copy(bert, "st-" + name.replace(" ", "_").replace("/", "_"),
                                                                 mutate), "safetensors")

    def wrong_shape(d):
        p = os.path.join(d, "model.safetensors")
        W = gen.read_safetensors(p)
        W["encoder.layer.0.intermediate.dense.weight"] = W["encoder.layer.0.intermediate.dense.weight"][:10]
        gen.write_safetensors(p, [(k, v, "F32") for k, v in W.items()])
    check_error("wrong shape", corrupt_copy(bert, "shape", wrong_shape), "has shape [10x64]")

    def extra(d):
        p = os.path.join(d, "model.safetensors")
        W = gen.read_safetensors(p)
        W["encoder.layer.0.mystery.weight"] = np.zeros(4)
        gen.write_safetensors(p, [(k, v, "F32") for k, v in W.items()])
    check_error("unknown tensor", corrupt_copy(bert, "extra", extra), "unexpected tensor 'encoder.layer.0.mystery")

    def missing_layer(d):
        p = os.path.join(d, "model.safetensors")
        W = gen.read_safetensors(p)
        del W["encoder.layer.1.output.LayerNorm.bias"]
        gen.write_safetensors(p, [(k, v, "F32") for k, v in W.items()])
    check_error("missing tensor", corrupt_copy(bert, "missing", missing_layer), "blk.1.layer_output_norm.bias")

    def missing_shard(d):
        os.remove(os.path.join(d, "model-00002-of-00002.safetensors"))
    check_error("missing shard", corrupt_copy(hf["bert-sharded"], "noshard", missing_shard),
                "model-00002-of-00002.safetensors")

    # Ctrl-C while the temporary file is being written: it is removed, no output appears
    out = os.path.join(TMP, "interrupted.gguf")
    for attempt in range(3):
        p = subprocess.Popen([EMBD, "convert", hf["xlmr"], out, "--type", "f32", "--quiet"], stderr=subprocess.PIPE)
        seen = False
        while p.poll() is None and not seen:
            seen = bool(glob.glob(out + ".tmp.*"))
            time.sleep(0.005)
        if seen:
            p.send_signal(signal.SIGINT)
        rc = p.wait()
        p.stderr.close()
        if seen and rc == -signal.SIGINT:
            check(not os.path.exists(out) and not glob.glob(out + ".tmp.*"),
                  "interrupted conversion left files behind")
            break
        for f in glob.glob(out + "*"):
            os.remove(f)
    else:
        print("interrupt check: the conversion finished before it could be interrupted (3 tries)")

    # a failed conversion leaves an existing output file as it was
    keep = os.path.join(TMP, "keep.gguf")
    with open(keep, "wb") as f:
        f.write(b"previous")
    check_error("existing output kept", os.path.join(TMP, "broken", "noweights"), "missing weights", out=keep)
    with open(keep, "rb") as f:
        check(f.read() == b"previous", "existing output file was modified by a failed conversion")


# --- main -----------------------------------------------------------------------------------------
def main():
    t0 = time.time()
    shutil.rmtree(TMP, ignore_errors=True)
    os.makedirs(TMP)
    hf, files = {}, {}
    for kind in gen.KINDS:
        hf[kind] = os.path.join(TMP, kind)
        gen.gen(kind, hf[kind], seed=len(kind), tokenizer_from=hf["xlmr"] if kind == "xlmr-reranker" else None)
        files[kind] = {}
        for q in TYPES:
            files[kind][q] = os.path.join(TMP, f"{kind}-{q}.gguf")
            convert(hf[kind], files[kind][q], q)
    print(f"generated and converted {len(hf)} models x {len(TYPES)} types in {time.time() - t0:.1f} s", flush=True)

    # gguf_lite reads what gguf-py reads
    gguf = import_gguf()
    r, lite = gguf.GGUFReader(files["bert-reranker"]["q8_0"]), GGUF(files["bert-reranker"]["q8_0"])
    same = all(plain(lite.kv[k]) == (f.contents() if k != "bert.attention.layer_norm_epsilon" else
                                     float(np.float32(f.contents())))
               for k, f in r.fields.items() if not k.startswith("GGUF."))
    same = same and [t.name for t in r.tensors] == [t.name for t in lite.tensors] and all(
        np.array_equal(lite.array(t.name).reshape(-1),
                       np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), np.float64).reshape(-1))
        for t in r.tensors)
    check(same and len(r.fields) - 3 == len(lite.kv), "gguf_lite and gguf-py disagree")

    for kind in gen.KINDS:
        for q in TYPES:
            check_structure(f"{kind} {q}", hf[kind], files[kind][q], q)
    g = GGUF(files["xlmr"]["f32"])
    cfg = load_json(hf["xlmr"], "config.json")
    orig = gen.read_hf_weights(hf["xlmr"])["embeddings.position_embeddings.weight"]
    check(np.array_equal(g.array("position_embd.weight"), orig[cfg["pad_token_id"] + 1:].astype(np.float32)) and
          g.kv["bert.context_length"] == 512, "XLM-R: GGUF positions are not HF rows padding_idx+1..")
    print(f"structure checks done at {time.time() - t0:.1f} s", flush=True)

    check_tokenizer("bert (tokenizer.json)", files["bert"]["f16"], "tokens_bge-small-en-v1.5.jsonl")
    check_tokenizer("bert-sharded (vocab.txt)", files["bert-sharded"]["f16"], "tokens_all-MiniLM-L6-v2.jsonl")
    check_bert_numbers("bert", hf["bert"], files["bert"])
    check_bert_numbers("bert-sharded", hf["bert-sharded"], files["bert-sharded"])
    check_xlmr_numbers("xlmr", hf["xlmr"], files["xlmr"])
    check_rerank_numbers("bert-reranker", hf["bert-reranker"], files["bert-reranker"])
    check_rerank_numbers("xlmr-reranker", hf["xlmr-reranker"], files["xlmr-reranker"])
    print(f"numeric checks done at {time.time() - t0:.1f} s", flush=True)
    _gguf_cache.clear()
    check_llama(hf, files)
    print(f"llama.cpp checks done at {time.time() - t0:.1f} s", flush=True)
    check_errors(hf)

    print(f"convert: {tally.passed} checks passed, {len(failures)} failed, {time.time() - t0:.1f} s")
    if failures:
        sys.exit(1)
    shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
