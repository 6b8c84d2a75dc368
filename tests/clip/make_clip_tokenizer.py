#!/usr/bin/env python3
"""Writes a CLIP BPE tokenizer in the layout of openai/clip-vit-base-patch32 to OUTDIR:
tokenizer.json, vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json.

No reachable source (Debian, npm) ships the real CLIP vocabulary, so the merges are learned here,
deterministically, from the shared corpus (shared/corpus: edge_cases.jsonl and numpy_chunks.jsonl)
and the whole words of shared/models/bge-small-en-v1.5/vocab.txt, with CLIP's own pre-tokenization (whitespace collapsed, lowercased, CLIP's split regex, byte-level
characters, "</w>" on each word's last symbol). The layout is the real one: ids 0-255 are the
byte-level characters in bytes_to_unicode order, 256-511 the same with "</w>", then one token per
merge, then <|startoftext|> and <|endoftext|>; 49408 entries as the real vocabulary has, so the
text tower keeps its real shape (training stops early only if the corpus runs out of pairs).

  make_clip_tokenizer.py OUTDIR [--shared DIR] [--merges N]

Same corpus and N give byte-identical files. Standard library only.
"""
import argparse
import heapq
import json
import os
import sys
import unicodedata

N_MERGES = 48894  # new symbols: 49408 - 512 byte tokens - 2 special tokens, as openai/clip-vit-base-patch32
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
SPLIT_REGEX = (r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"
               r"[^\s\p{L}\p{N}]+")


def bytes_to_unicode():
    """GPT-2/CLIP byte -> printable character map, in CLIP's vocabulary order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def is_space(c):
    return c.isspace() or c in "\u180e\ufeff"


def words(text):
    """CLIP's pre-tokenization of one text (approximates the JS \\s and \\p classes closely
    enough for training; the tokenizer itself is checked against transformers.js)."""
    text = unicodedata.normalize("NFC", text)
    text = " ".join(text.split()).lower()
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if is_space(c):
            i += 1
            continue
        cat = unicodedata.category(c)
        if text.startswith(SOT, i) or text.startswith(EOT, i):
            j = i + len(SOT if text.startswith(SOT, i) else EOT)
        elif c == "'" and text[i + 1:i + 3] in ("re", "ve", "ll"):
            j = i + 3
        elif c == "'" and text[i + 1:i + 2] in ("s", "t", "m", "d"):
            j = i + 2
        elif cat[0] == "L":
            j = i + 1
            while j < n and unicodedata.category(text[j])[0] == "L":
                j += 1
        elif cat[0] == "N":
            j = i + 1
        else:
            j = i + 1
            while j < n and not is_space(text[j]) and unicodedata.category(text[j])[0] not in "LN":
                j += 1
        out.append(text[i:j])
        i = j
    return out


def texts(shared):
    for name in ("edge_cases.jsonl", "numpy_chunks.jsonl"):
        with open(os.path.join(shared, "corpus", name), encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)["text"]
    # English words beyond the code corpus: the whole-word entries of a BERT vocabulary
    with open(os.path.join(shared, "models", "bge-small-en-v1.5", "vocab.txt"), encoding="utf-8") as f:
        yield " ".join(w for w in f.read().split("\n") if w and not w.startswith(("##", "[")))


def corpus_words(shared):
    b2u = bytes_to_unicode()
    freq = {}
    for text in texts(shared):
        for w in words(text):
            if w in (SOT, EOT):
                continue
            u = "".join(b2u[b] for b in w.encode("utf-8", "surrogatepass"))
            freq[u] = freq.get(u, 0) + 1
    return freq


def learn(freq, n_new, known):
    """Classic BPE training: repeatedly merge the most frequent adjacent pair (ties: the
    lexicographically smallest pair), updating only the words that contain it, until n_new
    symbols not in known were made (two merges can make the same symbol: "ab c", "a bc")."""
    known = set(known)
    words_ = []
    counts = []
    for w in sorted(freq):
        sym = list(w)
        sym[-1] += "</w>"
        words_.append(sym)
        counts.append(freq[w])
    pairs, where = {}, {}
    for wi, sym in enumerate(words_):
        for a, b in zip(sym, sym[1:]):
            pairs[(a, b)] = pairs.get((a, b), 0) + counts[wi]
            where.setdefault((a, b), set()).add(wi)
    heap = [(-c, p) for p, c in pairs.items()]
    heapq.heapify(heap)
    merges = []
    while heap and n_new > 0:
        negc, p = heapq.heappop(heap)
        if pairs.get(p, 0) != -negc or negc == 0:
            continue  # stale entry
        merges.append(p)
        a, b = p
        ab = a + b
        if ab not in known:
            known.add(ab)
            n_new -= 1
        touched = {}
        for wi in sorted(where.pop(p, ())):
            sym, c = words_[wi], counts[wi]
            for x, y in zip(sym, sym[1:]):
                pairs[(x, y)] -= c
                touched[(x, y)] = 1
            new, i = [], 0
            while i < len(sym):
                if i + 1 < len(sym) and sym[i] == a and sym[i + 1] == b:
                    new.append(ab)
                    i += 2
                else:
                    new.append(sym[i])
                    i += 1
            words_[wi] = new
            for x, y in zip(new, new[1:]):
                pairs[(x, y)] = pairs.get((x, y), 0) + c
                where.setdefault((x, y), set()).add(wi)
                touched[(x, y)] = 1
        pairs.pop(p, None)
        for q in touched:
            if q == p:
                continue
            if pairs.get(q, 0) > 0:
                heapq.heappush(heap, (-pairs[q], q))
            else:
                pairs.pop(q, None)
                where.pop(q, None)
    return merges


def added(content, tid):
    return {"id": tid, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": True, "special": True}


def added_cfg(content):
    return {"content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": True, "__type": "AddedToken"}


def build(shared, n_merges):
    b2u = bytes_to_unicode()
    base = list(b2u.values())
    vocab_list = base + [c + "</w>" for c in base]
    merges = learn(corpus_words(shared), n_merges, vocab_list)
    seen = set(vocab_list)
    for a, b in merges:
        if a + b not in seen:  # two merges can make the same symbol ("ab c", "a bc")
            seen.add(a + b)
            vocab_list.append(a + b)
    vocab_list += [SOT, EOT]
    vocab = {t: i for i, t in enumerate(vocab_list)}
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [added(SOT, vocab[SOT]), added(EOT, vocab[EOT])],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
            {"type": "Lowercase"}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": SPLIT_REGEX}, "behavior": "Removed", "invert": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "RobertaProcessing", "sep": [EOT, vocab[EOT]], "cls": [SOT, vocab[SOT]],
                           "trim_offsets": False, "add_prefix_space": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": EOT, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "</w>", "fuse_unk": False, "byte_fallback": False,
                  "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
    }
    cfg = {"add_prefix_space": False, "bos_token": added_cfg(SOT), "do_lower_case": True,
           "eos_token": added_cfg(EOT), "errors": "replace", "model_max_length": 77,
           "pad_token": EOT, "tokenizer_class": "CLIPTokenizer", "unk_token": added_cfg(EOT)}
    special = {"bos_token": added_cfg(SOT), "eos_token": added_cfg(EOT), "pad_token": EOT,
               "unk_token": added_cfg(EOT)}
    return tok, vocab, merges, cfg, special


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--shared", default=os.environ.get("EMBD_SHARED_DIR",
                                                        os.path.join(here, "..", "..", "..", "shared")))
    ap.add_argument("--merges", type=int, default=N_MERGES, help="symbols to learn")
    a = ap.parse_args()
    corpus = os.path.join(a.shared, "corpus", "numpy_chunks.jsonl")
    if not os.path.exists(corpus):
        sys.exit(f"make_clip_tokenizer: {corpus} not found (set --shared or EMBD_SHARED_DIR)")
    tok, vocab, merges, cfg, special = build(a.shared, a.merges)
    os.makedirs(a.outdir, exist_ok=True)

    def dump(name, obj, **kw):
        with open(os.path.join(a.outdir, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, **kw)
            f.write("\n")

    dump("tokenizer.json", tok, indent=2)
    dump("vocab.json", vocab, separators=(",", ":"))
    with open(os.path.join(a.outdir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for x, y in merges:
            f.write(f"{x} {y}\n")
    dump("tokenizer_config.json", cfg, indent=2)
    dump("special_tokens_map.json", special, indent=2)
    print(f"{a.outdir}: {len(vocab)} tokens, {len(merges)} merges", file=sys.stderr)


if __name__ == "__main__":
    main()
