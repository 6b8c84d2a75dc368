"""End to end through the model loader: a random-weight micro BERT GGUF carrying XLM-RoBERTa's
SentencePiece Unigram vocabulary (llama.cpp's tokenizer.ggml.* "t5" keys, copied from
<llama.cpp src>/models/ggml-vocab-nomic-bert-moe.gguf) must make `embd tokenize` give the ids of
tests/fixtures/tokens_xlmr.jsonl (transformers.js), from the GGUF and with --tokenizer
tokenizer.json; a t5 vocabulary without scores is refused with a clear message."""
import json
import os
import subprocess
import sys

import numpy as np

BIN = os.environ["EMBD_BIN"]
SRC = os.environ["EMBD_SOURCE_DIR"]
GGUF_PY = os.environ["GGUF_PY_DIR"]
TMP = os.path.join(os.environ.get("EMBD_TEST_TMP", "/tmp"), "tokenize_unigram")
VOCAB = os.path.join(GGUF_PY, "..", "models", "ggml-vocab-nomic-bert-moe.gguf")

sys.path.insert(0, GGUF_PY)
sys.path.insert(0, os.path.join(SRC, "tools", "tokfix"))
import gguf  # noqa: E402
import gguf_to_tokenizer_json as g2j  # noqa: E402

failures = []


def check(name, cond, detail=""):
    print(("ok   " if cond else "FAIL ") + name + ("" if cond else ": " + detail))
    if not cond:
        failures.append(name)


def write_model(path, kv, scores=True):
    """n_layer 1, n_embd 8, n_head 1, n_ff 8, 512 positions; tensors as tools/gen_random_model.py."""
    n_vocab, n_embd, n_ff, n_ctx = len(kv["tokenizer.ggml.tokens"]), 8, 8, 512
    rng = np.random.default_rng(7)

    def normal(*shape, mean=0.0):
        return (mean + 0.02 * rng.standard_normal(shape)).astype(np.float32)

    w = gguf.GGUFWriter(path, "bert")
    w.add_name("random-bert-micro-xlmr-vocab")
    w.add_block_count(1)
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(1)
    w.add_layer_norm_eps(1e-5)
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.CLS)
    w.add_tokenizer_model("t5")
    w.add_tokenizer_pre("default")
    w.add_token_list(kv["tokenizer.ggml.tokens"])
    if scores:
        w.add_token_scores(kv["tokenizer.ggml.scores"])
    w.add_token_types(kv["tokenizer.ggml.token_type"])
    w.add_add_space_prefix(kv["tokenizer.ggml.add_space_prefix"])
    w.add_remove_extra_whitespaces(kv["tokenizer.ggml.remove_extra_whitespaces"])
    w.add_precompiled_charsmap(kv["tokenizer.ggml.precompiled_charsmap"])
    for key in ("bos", "eos", "unknown", "seperator", "padding", "mask"):
        w.add_uint32(f"tokenizer.ggml.{key}_token_id", kv[f"tokenizer.ggml.{key}_token_id"])
    w.add_tensor("token_embd.weight", normal(n_vocab, n_embd))
    w.add_tensor("token_types.weight", normal(1, n_embd))
    w.add_tensor("position_embd.weight", normal(n_ctx, n_embd))
    w.add_tensor("token_embd_norm.weight", normal(n_embd, mean=1.0))
    w.add_tensor("token_embd_norm.bias", normal(n_embd))
    p = "blk.0."
    for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
        w.add_tensor(p + name + ".weight", normal(n_embd, n_embd))
        w.add_tensor(p + name + ".bias", normal(n_embd))
    for name in ("attn_output_norm", "layer_output_norm"):
        w.add_tensor(p + name + ".weight", normal(n_embd, mean=1.0))
        w.add_tensor(p + name + ".bias", normal(n_embd))
    w.add_tensor(p + "ffn_up.weight", normal(n_ff, n_embd))
    w.add_tensor(p + "ffn_up.bias", normal(n_ff))
    w.add_tensor(p + "ffn_down.weight", normal(n_embd, n_ff))
    w.add_tensor(p + "ffn_down.bias", normal(n_embd))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def tokenize(*args, stdin):
    return subprocess.run([BIN, "tokenize", *args], input=stdin, capture_output=True, timeout=300)


def main():
    os.makedirs(TMP, exist_ok=True)
    kv = g2j.read_kv(VOCAB)
    model = os.path.join(TMP, "xlmr-vocab-micro.gguf")
    write_model(model, kv)
    tok_json = os.path.join(TMP, "tokenizer.json")
    doc = g2j.convert(VOCAB)
    with open(tok_json, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)
    # with tokenizer.json the embedding rows match its vocabulary (no llama.cpp padding rows)
    n = len(doc["model"]["vocab"])
    model_hf = os.path.join(TMP, "xlmr-vocab-micro-hf.gguf")
    write_model(model_hf, {k: v[:n] if k in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                                             "tokenizer.ggml.token_type") else v for k, v in kv.items()})

    with open(os.path.join(SRC, "tests", "fixtures", "tokens_xlmr.jsonl"), encoding="utf-8") as f:
        lines = [json.loads(x) for x in f if x.strip()][1:]
    stdin = "".join(json.dumps({"id": x["id"], "text": x["text"]}, ensure_ascii=False) + "\n" for x in lines)
    stdin = stdin.encode("utf-8", "surrogatepass")
    want = {x["id"]: x["ids"] for x in lines}
    for how, m, extra in (("gguf vocabulary", model, []),
                          ("--tokenizer tokenizer.json", model_hf, ["--tokenizer", tok_json])):
        r = tokenize("--model", m, *extra, stdin=stdin)
        check(f"{how}: exit 0", r.returncode == 0, r.stderr.decode(errors="replace")[-500:])
        got = [json.loads(x) for x in r.stdout.decode().splitlines()]
        bad = [g["id"] for g in got if g.get("ids") != want.get(g["id"])]
        check(f"{how}: {len(got)} texts, ids of transformers.js", len(got) == len(lines) and not bad,
              f"{len(got)} results, mismatches: {bad[:5]}")
        r = tokenize("--model", m, *extra, "--max-tokens", "4", stdin=b'{"id":1,"text":"a b c d e f"}\n')
        rec = json.loads(r.stdout) if r.returncode == 0 else {}
        check(f"{how}: --max-tokens keeps <s> and </s>", rec.get("tokens") == 4 and rec.get("truncated") is True and
              rec.get("ids", [None])[0] == 0 and rec.get("ids", [None])[-1] == 2, str(rec))

    broken = os.path.join(TMP, "xlmr-vocab-noscores.gguf")
    write_model(broken, kv, scores=False)
    r = tokenize("--model", broken, stdin=b"hello\n")
    err = r.stderr.decode(errors="replace")
    check("t5 vocabulary without scores: refused with a message", r.returncode != 0 and "scores" in err,
          f"exit {r.returncode}: {err[-300:]}")
    for p in (model, model_hf, broken, tok_json):
        os.remove(p)
    if failures:
        print(f"{len(failures)} failures")
        sys.exit(1)


if __name__ == "__main__":
    main()
