#!/usr/bin/env python3
"""A random Llama-style checkpoint and a random LoRA adapter for it, for
`scripts/bench-export` (no download, deterministic: seed 0).

    python3 scripts/make_bench_model.py OUT [--size 100m|demo]

`100m`: hidden 768, 12 layers, MLP 3072, 12 heads (4 key/value heads),
the demo tokenizer's 512-token vocabulary: about 100 M parameters, f32.
`demo`: the demo model itself is copied. Both get `OUT/adapter`: PEFT
LoRA r=8 on q/k/v/o with random (non-zero) A and B.
"""
import json
import shutil
import struct
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "models" / "hone-demo"


def save(path, tensors):
    header, offset, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype=np.float32)
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        blobs.append(a)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for a in blobs:
            f.write(a.tobytes())


def main():
    out = Path(sys.argv[1])
    size = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--size" else "100m"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]:
        shutil.copy(DEMO / f, out / f)
    if size == "demo":
        for f in ["config.json", "model.safetensors"]:
            shutil.copy(DEMO / f, out / f)
        config = json.loads((DEMO / "config.json").read_text())
    else:
        config = json.loads((DEMO / "config.json").read_text())
        config.update(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                      num_attention_heads=12, num_key_value_heads=4, head_dim=64)
        (out / "config.json").write_text(json.dumps(config, indent=2))
        h, i, v = 768, 3072, config["vocab_size"]
        q, kv = 12 * 64, 4 * 64
        t = {"model.embed_tokens.weight": rng.normal(0, 0.02, (v, h)), "model.norm.weight": np.ones(h)}
        for l in range(12):
            p = f"model.layers.{l}"
            t[f"{p}.input_layernorm.weight"] = np.ones(h)
            t[f"{p}.post_attention_layernorm.weight"] = np.ones(h)
            for name, shape in [("self_attn.q_proj", (q, h)), ("self_attn.k_proj", (kv, h)),
                                ("self_attn.v_proj", (kv, h)), ("self_attn.o_proj", (h, q)),
                                ("mlp.gate_proj", (i, h)), ("mlp.up_proj", (i, h)), ("mlp.down_proj", (h, i))]:
                t[f"{p}.{name}.weight"] = rng.normal(0, 0.02, shape).astype(np.float32)
        save(out / "model.safetensors", t)
    h, layers = config["hidden_size"], config["num_hidden_layers"]
    hd = config.get("head_dim") or h // config["num_attention_heads"]
    dims = {"q_proj": (config["num_attention_heads"] * hd, h), "k_proj": (config["num_key_value_heads"] * hd, h),
            "v_proj": (config["num_key_value_heads"] * hd, h), "o_proj": (h, config["num_attention_heads"] * hd)}
    r, a = 8, {}
    for l in range(layers):
        for name, (o, n) in dims.items():
            base = f"base_model.model.model.layers.{l}.self_attn.{name}"
            a[f"{base}.lora_A.weight"] = rng.normal(0, 0.02, (r, n))
            a[f"{base}.lora_B.weight"] = rng.normal(0, 0.02, (o, r))
    (out / "adapter").mkdir(exist_ok=True)
    save(out / "adapter" / "adapter_model.safetensors", a)
    (out / "adapter" / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": str(out),
        "r": r, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": list(dims),
        "use_rslora": False, "bias": "none", "fan_in_fan_out": False, "inference_mode": True}, indent=2))


if __name__ == "__main__":
    main()
