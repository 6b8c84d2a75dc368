#!/usr/bin/env python3
"""Float64 numpy reference of Hugging Face's CLIPModel (transformers/models/clip/modeling_clip.py),
read from an HF directory's config.json and safetensors:

  CLIPVisionEmbeddings: Conv2d(3, H, p, stride=p, bias=False) -> flatten, class embedding first,
                        + position_embedding(arange(n_patches + 1))
  CLIPVisionTransformer: pre_layrnorm -> encoder -> post_layernorm(last_hidden_state[:, 0])
  CLIPTextTransformer:  token + position embeddings -> encoder with a causal mask ->
                        final_layer_norm -> the pooled token: argmax(input_ids) when
                        eos_token_id == 2 (legacy configs), else the first eos_token_id
  CLIPEncoderLayer:     x += out_proj(attn(layer_norm1(x))); x += fc2(act(fc1(layer_norm2(x))))
  CLIPModel:            visual_projection / text_projection (no bias)

Each input is computed alone (no padding). Embeddings come back L2-normalised."""
import json
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "convert"))
from gen_hf_model import read_hf_weights  # noqa: E402

_erf = np.vectorize(math.erf)

ACT = {
    "quick_gelu": lambda x: x / (1.0 + np.exp(-1.702 * x)),
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),
    "gelu_new": lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3))),
}
ACT["gelu_pytorch_tanh"] = ACT["gelu_new"]


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def l2(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


class ClipRef:
    def __init__(self, hf_dir):
        with open(os.path.join(hf_dir, "config.json")) as f:
            cfg = json.load(f)
        self.t = cfg.get("text_config", {})
        self.v = cfg.get("vision_config", {})
        self.w = read_hf_weights(hf_dir)
        self.eos = self.t.get("eos_token_id", 49407)

    def _encoder(self, prefix, cfg, x, causal):
        H, nh = x.shape[-1], cfg.get("num_attention_heads")
        dh, eps = H // nh, cfg.get("layer_norm_eps", 1e-5)
        act = ACT[cfg.get("hidden_act", "quick_gelu")]
        T = x.shape[0]
        mask = np.triu(np.full((T, T), -np.inf), 1) if causal else 0.0
        w = self.w
        for i in range(cfg.get("num_hidden_layers")):
            p = f"{prefix}.encoder.layers.{i}."

            def lin(h, name):
                return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

            h = layer_norm(x, w[p + "layer_norm1.weight"], w[p + "layer_norm1.bias"], eps)
            q = lin(h, "self_attn.q_proj").reshape(T, nh, dh).transpose(1, 0, 2) * dh ** -0.5
            k = lin(h, "self_attn.k_proj").reshape(T, nh, dh).transpose(1, 0, 2)
            v = lin(h, "self_attn.v_proj").reshape(T, nh, dh).transpose(1, 0, 2)
            s = q @ k.transpose(0, 2, 1) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            a = (s @ v).transpose(1, 0, 2).reshape(T, H)
            x = x + lin(a, "self_attn.out_proj")
            h = layer_norm(x, w[p + "layer_norm2.weight"], w[p + "layer_norm2.bias"], eps)
            x = x + lin(act(lin(h, "mlp.fc1")), "mlp.fc2")
        return x

    def pool_index(self, ids):
        ids = np.asarray(ids)
        return int(ids.argmax()) if self.eos == 2 else int((ids == self.eos).argmax())

    def text(self, ids):
        """One text's token ids (start and end tokens included) -> normalised embedding."""
        w, eps = self.w, self.t.get("layer_norm_eps", 1e-5)
        x = w["text_model.embeddings.token_embedding.weight"][ids] + \
            w["text_model.embeddings.position_embedding.weight"][: len(ids)]
        x = self._encoder("text_model", self.t, x, causal=True)
        x = layer_norm(x, w["text_model.final_layer_norm.weight"], w["text_model.final_layer_norm.bias"], eps)
        return l2(x[self.pool_index(ids)] @ w["text_projection.weight"].T)

    def image(self, pixels):
        """One preprocessed image (3, S, S) -> normalised embedding."""
        w, eps = self.w, self.v.get("layer_norm_eps", 1e-5)
        kern = w["vision_model.embeddings.patch_embedding.weight"]  # (H, 3, p, p)
        H, p = kern.shape[0], kern.shape[2]
        S = pixels.shape[-1]
        G = S // p
        patches = np.asarray(pixels, dtype=np.float64).reshape(3, G, p, G, p).transpose(1, 3, 0, 2, 4)
        x = patches.reshape(G * G, 3 * p * p) @ kern.reshape(H, -1).T
        x = np.concatenate([w["vision_model.embeddings.class_embedding"][None, :], x], 0)
        x = x + w["vision_model.embeddings.position_embedding.weight"]
        x = layer_norm(x, w["vision_model.pre_layrnorm.weight"], w["vision_model.pre_layrnorm.bias"], eps)
        x = self._encoder("vision_model", self.v, x, causal=False)
        pooled = layer_norm(x[0], w["vision_model.post_layernorm.weight"], w["vision_model.post_layernorm.bias"], eps)
        return l2(pooled @ w["visual_projection.weight"].T)

    def images(self, pixels):
        return np.stack([self.image(im) for im in pixels])


if __name__ == "__main__":
    ref = ClipRef(sys.argv[1])
    print(ref.text([49406, 320, 49407])[:8])
