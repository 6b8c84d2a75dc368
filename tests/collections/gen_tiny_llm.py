#!/usr/bin/env python3
"""Writes a tiny random-weight generative GGUF (llama architecture, byte-level BPE vocabulary,
ChatML template) that llama-server can serve on /v1/chat/completions: the enrichment tests need a
real chat endpoint, not a mock. Usage: gen_tiny_llm.py OUT.gguf [--seed N]

The weights are random except for one rigged direction: every token embedding carries a large
constant in dimension 0 and the attention/FFN weights are small, so after the final RMSNorm
dimension 0 of the hidden state is always large and positive. The output rows of printable ASCII
tokens have +1 there, every other token (end-of-generation, ChatML markers, non-ASCII bytes) -1,
so sampling never stops early and the reply is always max_tokens of printable ASCII: the tests
can count on a non-empty, valid-UTF-8 context from every successful call.

Needs gguf-py from the llama.cpp source (env GGUF_PY_DIR, set for ctest) and numpy."""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.environ.get("GGUF_PY_DIR", ""))
import gguf  # noqa: E402

N_EMBD, N_FF, N_HEAD, N_LAYER, N_CTX = 64, 128, 4, 2, 4096
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def byte_chars():
    """GPT-2's byte -> printable character map (what byte-level BPE vocabularies store)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def vocab():
    m = byte_chars()
    tokens = [m[b] for b in range(256)]
    printable = [32 <= b < 127 for b in range(256)]
    merges = []
    for a, b in [("t", "h"), ("e", "r"), ("Ġ", "t"), ("i", "n"), ("a", "n")]:  # a few merges: BPE needs some
        merges.append(f"{a} {b}")
        tokens.append(a + b)
        printable.append(True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    types = [gguf.TokenType.NORMAL] * len(tokens) + [gguf.TokenType.CONTROL] * len(specials)
    printable += [False] * len(specials)
    tokens += specials
    return tokens, types, merges, np.array(printable), {s: tokens.index(s) for s in specials}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    tokens, types, merges, printable, sp = vocab()
    V = len(tokens)

    def rnd(*shape, scale=0.02):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    w = gguf.GGUFWriter(a.out, "llama")
    w.add_name("tiny-random-llm")
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF)
    w.add_block_count(N_LAYER)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD)
    w.add_rope_dimension_count(N_EMBD // N_HEAD)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(sp["<|endoftext|>"])
    w.add_eos_token_id(sp["<|im_end|>"])
    w.add_add_bos_token(False)
    w.add_chat_template(CHATML)

    emb = rnd(V, N_EMBD, scale=0.5)
    emb[:, 0] = 50.0  # the rigged direction (see the module docstring)
    out = rnd(V, N_EMBD, scale=0.05)
    out[:, 0] = np.where(printable, 1.0, -1.0)
    w.add_tensor("token_embd.weight", emb)
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, np.float32))
    w.add_tensor("output.weight", out)
    for i in range(N_LAYER):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(N_EMBD, np.float32))
        for t in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(p + t + ".weight", rnd(N_EMBD, N_EMBD))
        w.add_tensor(p + "ffn_norm.weight", np.ones(N_EMBD, np.float32))
        w.add_tensor(p + "ffn_gate.weight", rnd(N_FF, N_EMBD))
        w.add_tensor(p + "ffn_up.weight", rnd(N_FF, N_EMBD))
        w.add_tensor(p + "ffn_down.weight", rnd(N_EMBD, N_FF))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
