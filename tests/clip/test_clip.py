#!/usr/bin/env python3
"""CLIP: `embd convert` of Hugging Face CLIPModel directories and `embd clip-embed` against the
float64 numpy reference (clip_ref.py) on random weights.

1. Conversion: tiny (quick_gelu, legacy argmax pooling, F32 source) to f32/f16/q8_0, tiny-gelu
   (gelu, pooling at the first eos, BF16 source) to f16, tiny-1layer to f32, and openai/clip-vit-base-patch32's real
   shapes (F16 source) to f16. The GGUF holds llama.cpp's clip keys and tensor names with the
   expected shapes and types, the image processor settings and the whole tokenizer.json.
2. Numbers: text (via --text and --ids) and image (pixel .npy) embeddings vs the reference:
   cosine >= 0.9999 for f32/f16, >= 0.999 for q8_0; inputs stay apart (the check can fail).
3. Batches: one pass over texts of different lengths / several images equals one pass each, and
   padded texts are pooled at their own eos (or argmax) row.
4. Errors: bad GGUFs (missing tensor, wrong shape, vision-only, no tokenizer, other
   architecture, truncated) and bad HF directories fail with one clear line.
"""
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("EMBD_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
SHARED = os.environ.get("EMBD_SHARED_DIR") or os.path.normpath(os.path.join(SRC, "..", "shared"))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(SRC, "tests", "convert"))
import gen_hf_clip as gen  # noqa: E402
from clip_ref import ClipRef  # noqa: E402
from gguf_lite import GGUF, STRING, ARRAY  # noqa: E402
import tally  # noqa: E402
from tally import check, failures  # noqa: E402

EMBD = os.environ.get("EMBD_BIN") or os.path.join(SRC, "build", "embd")
TMP = os.path.join(os.environ.get("EMBD_TEST_TMP") or "/tmp/embd-test-tmp", "clip")
MIN_COS = {"f32": 0.9999, "f16": 0.9999, "q8_0": 0.999}
TEXTS = ["a photo of a cat", "A DOG running on the beach!", "naïve café — 東京 🙂",
         " ".join(f"word{i} and more words to go past the context" for i in range(30))]

ENV = dict(os.environ)


def run(args):
    return subprocess.run([EMBD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def tokenizer_dir():
    """make_clip_tokenizer.py's output, cached by the script's hash (it takes ~30 s)."""
    script = os.path.join(HERE, "make_clip_tokenizer.py")
    with open(script, "rb") as f:
        d = os.path.join(TMP, "tok-" + hashlib.sha1(f.read()).hexdigest()[:12])
    if not os.path.exists(os.path.join(d, "tokenizer.json")):
        subprocess.run([sys.executable, script, d + ".tmp"], check=True, stdout=subprocess.DEVNULL)
        shutil.rmtree(d, ignore_errors=True)
        os.rename(d + ".tmp", d)
    return d


def convert(hf, out, qtype):
    r = run(["convert", hf, out, "--type", qtype, "--quiet"])
    if r.returncode:
        raise SystemExit(f"embd convert {hf} --type {qtype} failed: {r.stderr}")
    return out


def embed(model, texts=(), ids=(), pixels=None, one_by_one=False):
    args = ["clip-embed", "--model", model, "--threads", "2"]
    for t in texts:
        args += ["--text", t]
    for i in ids:
        args += ["--ids", ",".join(map(str, i))]
    if pixels is not None:
        args += ["--pixels", pixels]
    if one_by_one:
        args.append("--one-by-one")
    r = run(args)
    if r.returncode:
        raise SystemExit(f"embd clip-embed failed ({r.returncode}): {r.stderr}")
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    txt = [r for r in rows if "text" in r]
    img = [r for r in rows if "image" in r]
    return txt, img


def cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


# ---- 1. structure ----------------------------------------------------------------------------
def check_structure(hf, path, qtype, cfg):
    g = GGUF(path)
    kv = g.kv
    t, v = cfg["text_config"], cfg["vision_config"]
    expect = {
        "general.architecture": "clip", "clip.has_text_encoder": True, "clip.has_vision_encoder": True,
        "clip.vision.image_size": v["image_size"], "clip.vision.patch_size": v["patch_size"],
        "clip.vision.embedding_length": v["hidden_size"], "clip.vision.block_count": v["num_hidden_layers"],
        "clip.vision.attention.head_count": v["num_attention_heads"],
        "clip.vision.feed_forward_length": v["intermediate_size"], "clip.vision.projection_dim": cfg["projection_dim"],
        "clip.text.embedding_length": t["hidden_size"], "clip.text.block_count": t["num_hidden_layers"],
        "clip.text.attention.head_count": t["num_attention_heads"], "clip.text.context_length": 77,
        "clip.text.feed_forward_length": t["intermediate_size"], "clip.text.projection_dim": cfg["projection_dim"],
        "clip.text.hidden_act": t["hidden_act"], "clip.vision.hidden_act": v["hidden_act"],
        "clip.text.eos_token_id": t["eos_token_id"], "clip.text.pool_argmax": t["eos_token_id"] == 2,
        "embd.image.shortest_edge": 224, "embd.image.crop_height": 224, "embd.image.crop_width": 224,
        "embd.image.resample": 3, "general.file_type": {"f32": 0, "f16": 1, "q8_0": 7}[qtype],
    }
    for k, want in expect.items():
        check(k in kv and kv[k] == want, f"{path}: {k} = {kv.get(k)!r}, expected {want!r}")
    check(abs(kv.get("clip.vision.attention.layer_norm_epsilon", 0) - 1e-5) < 1e-9, f"{path}: vision eps")
    check(abs(kv.get("embd.image.rescale_factor", 0) - 1 / 255) < 1e-7, f"{path}: rescale_factor")
    check(np.allclose(kv.get("clip.vision.image_mean"), gen.MEAN) and np.allclose(kv.get("clip.vision.image_std"), gen.STD),
          f"{path}: image mean/std")
    with open(os.path.join(hf, "tokenizer.json"), encoding="utf-8") as f:
        check(kv.get("tokenizer.huggingface.json") == f.read(), f"{path}: tokenizer.huggingface.json is tokenizer.json")
    names = set(g.by_name)
    H, F = v["hidden_size"], v["intermediate_size"]
    n_pos = (224 // 32) ** 2 + 1
    shapes = {"v.patch_embd.weight": [32, 32, 3, H], "v.class_embd": [H], "v.position_embd.weight": [H, n_pos],
              "v.blk.0.ffn_up.weight": [H, F], "v.blk.0.ffn_down.weight": [F, H],
              "v.projection.weight": [H, cfg["projection_dim"]], "t.token_embd.weight": [t["hidden_size"], 49408],
              "t.position_embd.weight": [t["hidden_size"], 77], "t.projection.weight": [t["hidden_size"], cfg["projection_dim"]]}
    for n, s in shapes.items():
        check(n in names and g.by_name[n].shape == s, f"{path}: {n} shape {g.by_name[n].shape if n in names else None} != {s}")
    n_layers = t["num_hidden_layers"] + v["num_hidden_layers"]
    check(len(names) == 13 + 16 * n_layers, f"{path}: {len(names)} tensors, expected {13 + 16 * n_layers}")
    mat = {"f32": "F32", "f16": "F16", "q8_0": "Q8_0"}[qtype]
    types = {"v.blk.0.attn_q.weight": mat, "t.blk.1.ffn_down.weight": mat, "t.token_embd.weight": mat,
             "v.projection.weight": mat, "v.patch_embd.weight": "F32" if qtype == "f32" else "F16",
             "v.position_embd.weight": "F32", "v.class_embd": "F32", "t.post_ln.bias": "F32", "v.blk.0.ln1.weight": "F32"}
    for n, ty in types.items():
        check(g.by_name[n].type_name == ty, f"{path}: {n} is {g.by_name[n].type_name}, expected {ty}")
    # the data is the HF weights (fc1 -> ffn_up, the patch kernel in ggml order)
    ref = ClipRef(hf)
    tol = {"f32": 1e-6, "f16": 2e-3, "q8_0": 2e-2}[qtype]
    for n, hfn in (("v.blk.0.ffn_up.weight", "vision_model.encoder.layers.0.mlp.fc1.weight"),
                   ("v.patch_embd.weight", "vision_model.embeddings.patch_embedding.weight"),
                   ("t.blk.0.attn_out.bias", "text_model.encoder.layers.0.self_attn.out_proj.bias")):
        a, b = g.array(n), ref.w[hfn]
        err = np.abs(a.reshape(b.shape) - b).max() / (np.abs(b).max() + 1e-30)
        check(err < tol, f"{path}: {n} differs from {hfn} by {err:.2e}")


# ---- 2/3. numbers ----------------------------------------------------------------------------
def check_numbers(label, model, ref, pixels_path, pixels, qtype, ids_lists):
    lim = MIN_COS[qtype]
    txt, img = embed(model, texts=TEXTS, ids=ids_lists, pixels=pixels_path)
    check(len(txt) == len(TEXTS) + len(ids_lists) and len(img) == len(pixels), f"{label}: output count")
    for r in txt:
        toks = r["tokens"]
        check(1 <= len(toks) <= 77, f"{label}: text {r['text']} has {len(toks)} tokens")
        c = cos(r["embedding"], ref.text(toks))
        check(c >= lim, f"{label}: text {r['text']} cosine {c:.6f} < {lim}")
        check(abs(np.linalg.norm(r["embedding"]) - 1) < 1e-4, f"{label}: text {r['text']} not L2-normalised")
    for r in img:
        c = cos(r["embedding"], ref.image(pixels[r["image"]]))
        check(c >= lim, f"{label}: image {r['image']} cosine {c:.6f} < {lim}")
    # different inputs stay apart, so the cosine checks above could fail
    E = np.array([r["embedding"] for r in img + txt[: len(TEXTS)]])
    off = (E @ E.T)[~np.eye(len(E), dtype=bool)]
    check(off.max() < 0.99, f"{label}: two different inputs have cosine {off.max():.4f}")
    # batch == one pass per input (texts padded to the longest in the batch)
    txt1, img1 = embed(model, texts=TEXTS, ids=ids_lists, pixels=pixels_path, one_by_one=True)
    for a, b in zip(txt + img, txt1 + img1):
        c = cos(a["embedding"], b["embedding"])
        check(c >= 0.999999, f"{label}: batched vs single {'text' if 'text' in a else 'image'} cosine {c:.7f}")
    print(f"{label}: {len(txt)} texts, {len(img)} images ok", flush=True)
    return txt


def check_pooling(label, model, ref, argmax):
    """Padded batches pool each text at its own row: eos (or the largest id) may sit mid-sequence."""
    if argmax:  # pooled at the first maximum: 49407 at 2, then 49406 (first) when there is no 49407
        lists = [[49406, 320, 49407, 5, 5, 7], [49406, 100, 200], [49406, 320, 49407], [49406] + [7] * 70 + [49407]]
        want = [2, 0, 2, 71]
    else:  # pooled at the first 49407; none: row 0
        lists = [[49406, 5, 49407, 9, 9], [49406, 5, 6, 7], [49406, 320, 49407], [49406] + [7] * 70 + [49407]]
        want = [2, 0, 2, 71]
    check([ref.pool_index(i) for i in lists] == want, f"{label}: reference pool rows {[ref.pool_index(i) for i in lists]}")
    txt, _ = embed(model, ids=lists)
    for r, ids in zip(txt, lists):
        c = cos(r["embedding"], ref.text(ids))
        check(c >= 0.9999, f"{label}: padded text {r['text']} (pooled at {ref.pool_index(ids)}) cosine {c:.6f}")
    # the tokens after the pooled row do not matter (causal mask)
    check(cos(txt[0]["embedding"], embed(model, ids=[lists[0][:3]])[0][0]["embedding"]) > 0.99999,
          f"{label}: tokens after the pooled row changed the embedding")


# ---- 4. errors -------------------------------------------------------------------------------
_SCALAR_FMT = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_NP_CODE = {"uint8": 0, "int8": 1, "uint16": 2, "int16": 3, "uint32": 4, "int32": 5, "float32": 6, "uint64": 10,
            "int64": 11, "float64": 12}


def write_gguf(g, path, drop_kv=(), set_kv=None, drop_tensors=(), shrink=None, f16=(), rename=None):
    """Rewrites an f32 GGUF read with gguf_lite: keys dropped or replaced (same type), tensors dropped,
    one tensor's outermost dimension cut by one (shrink), tensors stored as f16, tensors renamed."""
    set_kv = set_kv or {}
    rename = rename or {}

    def s(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b

    out = bytearray()
    kvs = [(k, v) for k, v in g.kv.items() if k not in drop_kv]
    tens = [t for t in g.tensors if t.name not in drop_tensors]
    out += b"GGUF" + struct.pack("<IQQ", 3, len(tens), len(kvs))
    for k, v in kvs:
        v = set_kv.get(k, v)
        ty = g.kv_types[k]
        out += s(k)
        if ty == "STRING":
            out += struct.pack("<I", STRING) + s(v)
        elif ty == "ARRAY[STRING]":
            out += struct.pack("<IIQ", ARRAY, STRING, len(v)) + b"".join(s(x) for x in v)
        elif ty.startswith("ARRAY"):
            out += struct.pack("<IIQ", ARRAY, _NP_CODE[v.dtype.name], len(v)) + v.tobytes()
        else:
            out += struct.pack("<I", int(ty)) + struct.pack(_SCALAR_FMT[int(ty)], v)
    blobs, off = [], 0
    for t in tens:
        data = g.array(t.name).astype("<f2" if t.name in f16 else "<f4")
        shape = list(t.shape)
        if t.name == shrink:
            shape[-1] -= 1
            data = data[:-1]
        out += s(rename.get(t.name, t.name)) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
        out += struct.pack("<IQ", 1 if t.name in f16 else 0, off)
        b = data.tobytes()
        b += b"\0" * (-len(b) % 32)
        blobs.append(b)
        off += len(b)
    out += b"\0" * (-len(out) % 32)
    with open(path, "wb") as f:
        f.write(out)
        for b in blobs:
            f.write(b)


def expect_fail(args, needle, what, code=None):
    r = run(args)
    ok = r.returncode != 0 and (code is None or r.returncode == code) and needle in r.stderr
    ok = ok and len(r.stderr.strip().splitlines()) == 1
    check(ok, f"{what}: exit {r.returncode}, stderr {r.stderr.strip()[:300]!r} (wanted {needle!r})")


def check_bad_gguf(f32_path, hf):
    g = GGUF(f32_path)
    d = os.path.join(TMP, "bad")
    os.makedirs(d, exist_ok=True)
    ok_copy = os.path.join(d, "same.gguf")
    write_gguf(g, ok_copy)  # the rewriter itself keeps a loadable file
    txt, _ = embed(ok_copy, ids=[[49406, 320, 49407]])
    check(len(txt) == 1, "rewritten GGUF loads")
    # llama.cpp's legacy converter: fc1 named ffn_down (and fc2 ffn_up), HF's projection names
    legacy = {"v.projection.weight": "visual_projection.weight", "t.projection.weight": "text_projection.weight"}
    for t in g.tensors:
        for a, b in (("ffn_up", "ffn_down"), ("ffn_down", "ffn_up")):
            if f".{a}." in t.name:
                legacy[t.name] = t.name.replace(f".{a}.", f".{b}.")
    lp = os.path.join(d, "legacy.gguf")
    write_gguf(g, lp, rename=legacy)
    ids = [[49406, 320, 1000, 49407]]
    px = os.path.join(TMP, "pixels.npy")
    a, b = embed(f32_path, ids=ids, pixels=px), embed(lp, ids=ids, pixels=px)
    for x, y in zip(a[0] + a[1], b[0] + b[1]):
        check(cos(x["embedding"], y["embedding"]) > 0.999999, "legacy tensor names (swapped ffn, HF projections)")
    cases = [
        ("missing.gguf", dict(drop_tensors=("t.blk.1.ffn_down.bias",)), "model has no tensor 't.blk.1.ffn_down.bias'"),
        ("shape.gguf", dict(shrink="v.position_embd.weight"), "tensor 'v.position_embd.weight' has shape"),
        ("mmproj.gguf", dict(set_kv={"clip.has_text_encoder": False},
                             drop_tensors=tuple(t.name for t in g.tensors if t.name.startswith("t."))), "no text tower"),
        ("notok.gguf", dict(drop_kv=("tokenizer.huggingface.json",)), "no tokenizer.huggingface.json"),
        ("noproj.gguf", dict(drop_kv=("clip.text.projection_dim",)), "projection_dim"),
        ("posf16.gguf", dict(f16=("t.position_embd.weight",)), "tensor 't.position_embd.weight' must be f32"),
        ("lnf16.gguf", dict(f16=("v.blk.0.ln2.bias",)), "tensor 'v.blk.0.ln2.bias' must be f32"),
    ]
    for name, kw, needle in cases:
        p = os.path.join(d, name)
        write_gguf(g, p, **kw)
        expect_fail(["clip-embed", "--model", p, "--ids", "49406,49407"], needle, f"bad GGUF {name}", code=2)
    with open(f32_path, "rb") as f:
        raw = f.read()
    trunc = os.path.join(d, "truncated.gguf")
    with open(trunc, "wb") as f:
        f.write(raw[: len(raw) // 2])
    expect_fail(["clip-embed", "--model", trunc, "--ids", "49406,49407"], "truncated", "truncated GGUF", code=2)
    bert = os.path.join(SHARED, "models", "bge-small-random")
    berts = sorted(x for x in os.listdir(bert) if x.endswith(".gguf")) if os.path.isdir(bert) else []
    if berts:
        expect_fail(["clip-embed", "--model", os.path.join(bert, berts[0]), "--ids", "1,2"],
                    "architecture 'bert' is not CLIP", "BERT GGUF as CLIP", code=2)
    # bad inputs to a good model
    expect_fail(["clip-embed", "--model", f32_path, "--ids", "49406,99999"], "token id 99999 out of range", "bad id")
    expect_fail(["clip-embed", "--model", f32_path, "--ids", ",".join(["7"] * 78)], "78 tokens", "text over context")
    wrong = os.path.join(d, "px-wrong.npy")
    np.save(wrong, np.zeros((1, 3, 112, 112), np.float32))
    expect_fail(["clip-embed", "--model", f32_path, "--pixels", wrong], "the model takes (n, 3, 224, 224)", "wrong pixels")
    np.save(wrong, np.zeros((1, 3, 224, 224), np.float64))
    expect_fail(["clip-embed", "--model", f32_path, "--pixels", wrong], "float32", "float64 pixels")


def check_bad_hf(good):
    d = os.path.join(TMP, "badhf")

    def variant(name, edit):
        p = os.path.join(d, name)
        shutil.rmtree(p, ignore_errors=True)
        shutil.copytree(good, p)
        edit(p)
        return p

    def edit_json(fn, f):
        def e(p):
            with open(os.path.join(p, fn)) as fh:
                j = json.load(fh)
            f(j)
            with open(os.path.join(p, fn), "w") as fh:
                json.dump(j, fh)
        return e

    cases = [
        ("notok", lambda p: os.remove(os.path.join(p, "tokenizer.json")), "tokenizer.json"),
        ("act", edit_json("config.json", lambda j: j["vision_config"].update(hidden_act="relu")), "hidden_act 'relu'"),
        ("resample", edit_json("preprocessor_config.json", lambda j: j.update(resample=2)), "resample 2"),
        ("width", edit_json("config.json", lambda j: j["text_config"].update(hidden_size=128, num_attention_heads=4)),
         "config.json implies"),
        ("crop", edit_json("preprocessor_config.json", lambda j: j.update(crop_size={"height": 200, "width": 200})),
         "crop 200x200"),
        ("vocab", edit_json("config.json", lambda j: j["text_config"].update(vocab_size=1000)), "vocab_size is 1000"),
    ]
    for name, edit, needle in cases:
        p = variant(name, edit)
        out = os.path.join(d, name + ".gguf")
        expect_fail(["convert", p, out, "--type", "f16"], needle, f"bad HF dir {name}", code=1)
        check(not os.path.exists(out) and not [x for x in os.listdir(d) if ".tmp." in x], f"bad HF dir {name}: output left")


def main():
    shutil.rmtree(os.path.join(TMP, "bad"), ignore_errors=True)
    os.makedirs(TMP, exist_ok=True)
    tok = tokenizer_dir()
    rng = np.random.default_rng(7)
    pixels = rng.standard_normal((3, 3, 224, 224)).astype(np.float32)
    px_path = os.path.join(TMP, "pixels.npy")
    np.save(px_path, pixels)
    ids_extra = [[49406, 320, 1000, 49407], [49406] + list(range(500, 575)) + [49407]]

    hf = {k: os.path.join(TMP, "hf-" + k) for k in ("tiny", "tiny-gelu", "tiny-1layer", "real")}
    for k, d in hf.items():
        if k == "real" and os.environ.get("CLIP_SKIP_REAL"):
            continue
        gen.gen(k, d, seed={"tiny": 1, "tiny-gelu": 2, "tiny-1layer": 4, "real": 3}[k], tok_dir=tok)

    ref = ClipRef(hf["tiny"])
    cfg = json.load(open(os.path.join(hf["tiny"], "config.json")))
    models = {}
    for q in ("f32", "f16", "q8_0"):
        models[q] = convert(hf["tiny"], os.path.join(TMP, f"tiny-{q}.gguf"), q)
        check_structure(hf["tiny"], models[q], q, cfg)
        check_numbers(f"tiny {q}", models[q], ref, px_path, pixels, q, ids_extra)
    # q8_0 multiplies as bf16 on AVX512-BF16 CPUs (engine/bf16.h); the file's own type too
    ENV["EMBD_WEIGHTS"] = "native"
    check_numbers("tiny q8_0 EMBD_WEIGHTS=native", models["q8_0"], ref, px_path, pixels, "q8_0", ids_extra)
    ENV["EMBD_WEIGHTS"] = "bf16"
    check_numbers("tiny f32 EMBD_WEIGHTS=bf16", models["f32"], ref, px_path, pixels, "f16", ids_extra)
    del ENV["EMBD_WEIGHTS"]
    check_pooling("tiny f32 (argmax pooling)", models["f32"], ref, argmax=True)

    gref = ClipRef(hf["tiny-gelu"])
    gm = convert(hf["tiny-gelu"], os.path.join(TMP, "tiny-gelu-f16.gguf"), "f16")
    check_structure(hf["tiny-gelu"], gm, "f16", json.load(open(os.path.join(hf["tiny-gelu"], "config.json"))))
    check_numbers("tiny-gelu f16", gm, gref, px_path, pixels, "f16", ids_extra)
    check_pooling("tiny-gelu f16 (eos pooling)", gm, gref, argmax=False)

    oref = ClipRef(hf["tiny-1layer"])
    om = convert(hf["tiny-1layer"], os.path.join(TMP, "tiny-1layer-f32.gguf"), "f32")
    check_numbers("tiny-1layer f32", om, oref, px_path, pixels, "f32", ids_extra)

    check_bad_gguf(models["f32"], hf["tiny"])
    check_bad_hf(hf["tiny"])

    if not os.environ.get("CLIP_SKIP_REAL"):
        rref = ClipRef(hf["real"])
        rm = convert(hf["real"], os.path.join(TMP, "real-f16.gguf"), "f16")
        check_structure(hf["real"], rm, "f16", json.load(open(os.path.join(hf["real"], "config.json"))))
        two = os.path.join(TMP, "pixels2.npy")  # the float64 reference takes ~8 s per image at this size
        np.save(two, pixels[:2])
        check_numbers("real f16", rm, rref, two, pixels[:2], "f16", ids_extra)
        shutil.rmtree(hf["real"], ignore_errors=True)  # 300 MB
        os.remove(rm)

    print(f"{tally.passed} checks passed, {len(failures)} failed")
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
