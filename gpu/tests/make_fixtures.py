#!/usr/bin/env python3
"""Tiny random Hugging Face checkpoints and transformers' logits for them.

Run once, by hand (CI never needs torch):

    pip install torch transformers peft safetensors
    python3 gpu/tests/make_fixtures.py

For each case below it writes `gpu/tests/fixtures/<case>/` with the files a
real model folder has (`config.json`, `model.safetensors` or shards with
`model.safetensors.index.json`, `generation_config.json`) and
`reference.safetensors`: `input_ids` (int64, batch 2 × 9) and `logits`
(f32, batch × seq × vocab) computed by transformers in float32 from the saved
weights (so f16/bf16 checkpoints are compared after the same rounding). The
Rust parity tests load each folder and must match the logits within 1e-4.
It also writes `fixtures/peft_counts.json`: PEFT's trainable-parameter
counts for a few LoRA settings, which the engine must reproduce exactly.
Seeds are fixed: running it again gives the same tensors.
"""
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM

OUT = Path(__file__).resolve().parent / "fixtures"

BASE = dict(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    rms_norm_eps=1e-6,
    bos_token_id=1,
    eos_token_id=2,
)

CASES = {
    # Llama 3 style: GQA, llama3 rope scaling, tied embeddings, f32.
    "llama": dict(model_type="llama", rope_theta=500000.0, tie_word_embeddings=True,
                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
                  dtype="float32", shards=1),
    # Linear rope scaling, untied head, bf16 weights in two shards.
    "llama-bf16-sharded": dict(model_type="llama", rope_theta=10000.0, tie_word_embeddings=False,
                               rope_scaling={"rope_type": "linear", "factor": 2.0},
                               dtype="bfloat16", shards=2),
    # Mistral: untied, f16.
    "mistral": dict(model_type="mistral", rope_theta=1000000.0, tie_word_embeddings=False,
                    sliding_window=None, dtype="float16", shards=1),
    # Qwen2: q/k/v biases, tied embeddings.
    "qwen2": dict(model_type="qwen2", rope_theta=1000000.0, tie_word_embeddings=True,
                  use_sliding_window=False, dtype="float32", shards=1),
}


def save_sharded(state, folder, shards, meta):
    names = sorted(state)
    if shards == 1:
        save_file(state, folder / "model.safetensors", metadata=meta)
        return
    per = (len(names) + shards - 1) // shards
    weight_map = {}
    for s in range(shards):
        part = names[s * per:(s + 1) * per]
        file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: state[n] for n in part}, folder / file, metadata=meta)
        weight_map.update({n: file for n in part})
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def main():
    torch.manual_seed(0)
    for i, (name, case) in enumerate(CASES.items()):
        case = dict(case)
        dtype = getattr(torch, case.pop("dtype"))
        shards = case.pop("shards")
        model_type = case.pop("model_type")
        config = AutoConfig.for_model(model_type, **BASE, **case)
        torch.manual_seed(1000 + i)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.08)
        model = model.to(dtype)
        folder = OUT / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        config.torch_dtype = dtype
        model.config.save_pretrained(folder)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        if config.tie_word_embeddings:
            state.pop("lm_head.weight", None)
        save_sharded(state, folder, shards, {"format": "pt"})
        model.generation_config.save_pretrained(folder)

        # The reference: reload what was saved, in float32.
        reloaded = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        g = torch.Generator().manual_seed(7 + i)
        ids = torch.randint(3, BASE["vocab_size"], (2, 9), generator=g)
        with torch.no_grad():
            logits = reloaded(input_ids=ids).logits.float().contiguous()
        save_file({"input_ids": ids.contiguous(), "logits": logits}, folder / "reference.safetensors")
        print(f"{name}: {sum(p.numel() for p in reloaded.parameters())} parameters, {dtype}, "
              f"{shards} shard(s), logits {tuple(logits.shape)}")


def peft_counts():
    """PEFT's trainable-parameter counts for LoRA settings on the fixtures,
    which `hone-gpu` must reproduce exactly."""
    from peft import LoraConfig, get_peft_model

    settings = [
        ("llama", 8, ["q_proj", "k_proj", "v_proj", "o_proj"]),
        ("llama", 4, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
        ("qwen2", 16, ["q_proj", "v_proj"]),
        ("mistral", 2, ["down_proj"]),
    ]
    out = []
    for name, r, targets in settings:
        model = AutoModelForCausalLM.from_pretrained(OUT / name, dtype=torch.float32)
        peft = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets,
                                                lora_dropout=0.0, task_type="CAUSAL_LM"))
        trainable = sum(p.numel() for p in peft.parameters() if p.requires_grad)
        out.append({"model": name, "r": r, "target_modules": targets, "trainable": trainable})
    (OUT / "peft_counts.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"PEFT counts: {[o['trainable'] for o in out]}")


def peft_adapter_logits():
    """PEFT loads the adapter `hone-gpu` exported
    (`cargo run -p hone-gpu --example make_adapter_fixture` first) and
    records base + adapter logits on the llama fixture's input ids."""
    from peft import PeftModel
    from safetensors.torch import load_file

    folder = OUT / "peft-adapter"
    if not (folder / "adapter_model.safetensors").exists():
        print("no exported adapter yet: run the make_adapter_fixture example first")
        return
    base = AutoModelForCausalLM.from_pretrained(OUT / "llama", dtype=torch.float32)
    model = PeftModel.from_pretrained(base, folder).eval()
    ids = load_file(OUT / "llama" / "reference.safetensors")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float().contiguous()
    save_file({"logits": logits}, folder / "peft_logits.safetensors")
    print(f"PEFT adapter logits {tuple(logits.shape)}")
    merged = OUT / "merged"
    if (merged / "model.safetensors").exists():
        m = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
        with torch.no_grad():
            ml = m(input_ids=ids).logits.float().contiguous()
        save_file({"logits": ml}, merged / "transformers_logits.safetensors")
        print(f"merged: max |transformers(merged) - PEFT(base + adapter)| = {(ml - logits).abs().max().item():.3g}")


def greedy_generation():
    """transformers' greedy `generate` on the llama fixture: 12 new tokens
    after the first reference prompt, no early stop."""
    from safetensors.torch import load_file

    model = AutoModelForCausalLM.from_pretrained(OUT / "llama", dtype=torch.float32).eval()
    ids = load_file(OUT / "llama" / "reference.safetensors")["input_ids"][:1]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=12, min_new_tokens=12, do_sample=False,
                             pad_token_id=0)
    new = out[0, ids.shape[1]:].tolist()
    (OUT / "llama" / "greedy.json").write_text(json.dumps({"prompt": ids[0].tolist(), "new": new}) + "\n")
    print(f"greedy: {new}")


if __name__ == "__main__":
    main()
    peft_counts()
    peft_adapter_logits()
    greedy_generation()
