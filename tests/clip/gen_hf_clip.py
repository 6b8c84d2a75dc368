#!/usr/bin/env python3
"""Write a random-weight Hugging Face CLIPModel directory (config.json, model.safetensors written by
hand, preprocessor_config.json, and the CLIP BPE tokenizer of make_clip_tokenizer.py) for
`embd convert` and the CLIP tests. numpy + stdlib only.

  gen_hf_clip.py KIND OUT_DIR [--seed N] [--tokenizer-dir DIR]
  KIND: real       openai/clip-vit-base-patch32 shapes: vision 768 wide, 12 layers, 12 heads, patch
                   32 at 224; text 512 wide, 12 layers, 8 heads, context 77, vocab 49408; projection
                   512; quick_gelu, layer-norm eps 1e-5; legacy eos_token_id 2 (pool at argmax); F16
                   weights; the old preprocessor_config.json layout (ints)
        tiny       the same layout at small widths (64, 2 layers, 4 heads; projection 32), F32,
                   the current preprocessor_config.json layout (size / crop_size objects)
        tiny-gelu  tiny with hidden_act gelu in both towers and eos_token_id 49407 (pool at the
                   first <|endoftext|>), BF16 weights
        tiny-1layer  tiny with one layer per tower (the last layer is also the first)
--tokenizer-dir: a directory make_clip_tokenizer.py already wrote (else it is run into OUT_DIR).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "convert"))
from gen_hf_model import write_safetensors  # noqa: E402

TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]

# text (width, layers, heads, ffn), vision (width, layers, heads, ffn), projection, dtype
KINDS = {
    "real": ((512, 12, 8, 2048), (768, 12, 12, 3072), 512, "F16"),
    "tiny": ((64, 2, 4, 256), (64, 2, 4, 256), 32, "F32"),
    "tiny-gelu": ((64, 2, 4, 256), (64, 2, 4, 256), 32, "BF16"),
    "tiny-1layer": ((64, 1, 4, 256), (64, 1, 4, 256), 32, "F32"),
}
VOCAB, CTX, IMAGE, PATCH = 49408, 77, 224, 32


def clip_weights(rng, kind):
    (tH, tL, _, tF), (vH, vL, _, vF), P, _ = KINDS[kind]

    def normal(*shape, mean=0.0, std=0.02):
        return (mean + std * rng.standard_normal(shape)).astype(np.float32)

    def layers(prefix, n, H, F):
        t = []
        for i in range(n):
            p = f"{prefix}.encoder.layers.{i}."
            for m in ("k_proj", "v_proj", "q_proj", "out_proj"):  # HF's state-dict order
                t += [(p + f"self_attn.{m}.weight", normal(H, H, std=H ** -0.5)), (p + f"self_attn.{m}.bias", normal(H))]
            t += [(p + "layer_norm1.weight", normal(H, mean=1.0, std=0.1)), (p + "layer_norm1.bias", normal(H, std=0.1)),
                  (p + "mlp.fc1.weight", normal(F, H, std=H ** -0.5)), (p + "mlp.fc1.bias", normal(F)),
                  (p + "mlp.fc2.weight", normal(H, F, std=F ** -0.5)), (p + "mlp.fc2.bias", normal(H)),
                  (p + "layer_norm2.weight", normal(H, mean=1.0, std=0.1)), (p + "layer_norm2.bias", normal(H, std=0.1))]
        return t

    n_pos = (IMAGE // PATCH) ** 2 + 1
    t = [("text_model.embeddings.token_embedding.weight", normal(VOCAB, tH, std=0.5)),
         ("text_model.embeddings.position_embedding.weight", normal(CTX, tH, std=0.5))]
    t += layers("text_model", tL, tH, tF)
    t += [("text_model.final_layer_norm.weight", normal(tH, mean=1.0, std=0.1)),
          ("text_model.final_layer_norm.bias", normal(tH, std=0.1)),
          ("vision_model.embeddings.class_embedding", normal(vH, std=0.5)),
          ("vision_model.embeddings.patch_embedding.weight", normal(vH, 3, PATCH, PATCH, std=(3 * PATCH * PATCH) ** -0.5)),
          ("vision_model.embeddings.position_embedding.weight", normal(n_pos, vH, std=0.5)),
          ("vision_model.pre_layrnorm.weight", normal(vH, mean=1.0, std=0.1)),
          ("vision_model.pre_layrnorm.bias", normal(vH, std=0.1))]
    t += layers("vision_model", vL, vH, vF)
    t += [("vision_model.post_layernorm.weight", normal(vH, mean=1.0, std=0.1)),
          ("vision_model.post_layernorm.bias", normal(vH, std=0.1)),
          ("visual_projection.weight", normal(P, vH, std=vH ** -0.5)),
          ("text_projection.weight", normal(P, tH, std=tH ** -0.5)),
          ("logit_scale", np.array(2.6592, dtype=np.float32))]
    return t


def config(kind):
    (tH, tL, tN, tF), (vH, vL, vN, vF), P, dtype = KINDS[kind]
    gelu = kind == "tiny-gelu"
    act = "gelu" if gelu else "quick_gelu"
    text = {"model_type": "clip_text_model", "vocab_size": VOCAB, "hidden_size": tH, "intermediate_size": tF,
            "num_hidden_layers": tL, "num_attention_heads": tN, "max_position_embeddings": CTX, "hidden_act": act,
            "layer_norm_eps": 1e-5, "bos_token_id": 49406 if gelu else 0, "eos_token_id": 49407 if gelu else 2,
            "pad_token_id": 1, "projection_dim": P}
    vision = {"model_type": "clip_vision_model", "hidden_size": vH, "intermediate_size": vF, "num_hidden_layers": vL,
              "num_attention_heads": vN, "image_size": IMAGE, "patch_size": PATCH, "hidden_act": act,
              "layer_norm_eps": 1e-5, "num_channels": 3, "projection_dim": P}
    return {"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": P, "logit_scale_init_value": 2.6592,
            "initializer_factor": 1.0, "text_config": text, "vision_config": vision,
            "torch_dtype": {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[dtype],
            "transformers_version": "4.21.0.dev0" if kind == "real" else "4.40.0"}


def preprocessor(kind):
    if kind == "real":  # the layout openai/clip-vit-base-patch32 ships
        return {"crop_size": IMAGE, "do_center_crop": True, "do_normalize": True, "do_resize": True,
                "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": MEAN, "image_std": STD,
                "resample": 3, "size": IMAGE}
    return {"crop_size": {"height": IMAGE, "width": IMAGE}, "do_center_crop": True, "do_convert_rgb": True,
            "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": MEAN,
            "image_processor_type": "CLIPImageProcessor", "image_std": STD, "resample": 3,
            "rescale_factor": 1 / 255, "size": {"shortest_edge": IMAGE}}


def tokenizer_files(out_dir, tok_dir=None):
    if tok_dir is None:
        subprocess.run([sys.executable, os.path.join(HERE, "make_clip_tokenizer.py"), out_dir], check=True,
                       stdout=subprocess.DEVNULL)
        return
    for n in TOKENIZER_FILES:
        if os.path.exists(os.path.join(tok_dir, n)):
            shutil.copy(os.path.join(tok_dir, n), os.path.join(out_dir, n))


def gen(kind, out_dir, seed=0, tok_dir=None):
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    dtype = KINDS[kind][3]
    write_safetensors(os.path.join(out_dir, "model.safetensors"),
                      [(n, a, "F32" if n == "logit_scale" else dtype) for n, a in clip_weights(rng, kind)],
                      {"format": "pt"})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config(kind), f, indent=2)
    with open(os.path.join(out_dir, "preprocessor_config.json"), "w") as f:
        json.dump(preprocessor(kind), f, indent=2)
    tokenizer_files(out_dir, tok_dir)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=sorted(KINDS))
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer-dir")
    a = ap.parse_args()
    gen(a.kind, a.out_dir, a.seed, a.tokenizer_dir)


if __name__ == "__main__":
    main()
