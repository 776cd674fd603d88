#!/usr/bin/env python3
"""NF4 reference from bitsandbytes itself (its CPU path), run once by hand:

    pip install torch bitsandbytes safetensors
    python3 gpu/tests/make_nf4_fixture.py

Writes `fixtures/nf4/reference.safetensors`: for a few shapes (some not a
multiple of the block size) the input, bitsandbytes' packed NF4 codes, the
8-bit quantized absmax with its offset and second-level absmax (double
quantization, block 256), and the dequantized values; plus both code
tables and the 8-bit rounding thresholds of bitsandbytes' CPU kernel (see
below). `hone-gpu`'s quantizer must reproduce the codes bit for bit.
"""
from pathlib import Path

import numpy as np
import torch
from bitsandbytes.functional import dequantize_4bit, quantize_4bit, quantize_blockwise
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parent / "fixtures" / "nf4"
OUT.mkdir(parents=True, exist_ok=True)
torch.manual_seed(4)
tensors = {}
for name, shape in [("a", (8, 64)), ("b", (3, 100)), ("c", (1, 2000)), ("d", (130, 130))]:
    x = torch.randn(*shape, dtype=torch.float32) * 0.05
    q, st = quantize_4bit(x, quant_type="nf4", blocksize=64, compress_statistics=True)
    d = dequantize_4bit(q, st)
    tensors[f"{name}.input"] = x.contiguous()
    tensors[f"{name}.packed"] = q.reshape(-1).contiguous()
    tensors[f"{name}.absmax_q"] = st.absmax.contiguous()
    tensors[f"{name}.offset"] = torch.tensor([float(st.offset)], dtype=torch.float32)
    tensors[f"{name}.absmax2"] = st.state2.absmax.float().contiguous()
    tensors[f"{name}.dequantized"] = d.float().contiguous()
    tensors["nf4_code"] = st.code.float().contiguous()
    tensors["dynamic_code"] = st.state2.code.float().contiguous()


# bitsandbytes' CPU kernel rounds the 8-bit absmax codes with an
# approximate search (BinSearch "Direct2", then the nearer of two
# neighbours), not at the midpoints between codes: near zero whole codes
# are skipped. Its choice is monotone in the normalised value, so it is
# fully described by 255 thresholds: the smallest f32 that gets code j or
# above. Found here by bisection over f32 bit patterns, then checked on
# 12 M random values.
code8 = st.state2.code.float().clone()


def bnb8(vals):
    """bitsandbytes' 8-bit code of each value in [-1, 1] (block maximum 1)."""
    vals = np.asarray(vals, np.float32)
    n, width = len(vals), 4095
    v = np.concatenate([vals, np.zeros((-n) % width, np.float32)]).reshape(-1, width)
    v = np.concatenate([np.ones((v.shape[0], 1), np.float32), v], axis=1).reshape(-1)
    q, _ = quantize_blockwise(torch.tensor(v), code=code8.clone(), blocksize=4096)
    return q.numpy().reshape(-1, 4096)[:, 1:].reshape(-1)[:n].astype(np.int64)


def to_ord(f):
    b = np.asarray(f, np.float32).view(np.int32).astype(np.int64)
    return np.where(b >= 0, b, -(b & 0x7FFFFFFF))


def from_ord(o):
    return np.where(o >= 0, o, (-o) | 0x80000000).astype(np.uint32).view(np.float32)


wanted = np.arange(1, 256)
lo = np.full(255, to_ord([-1.0])[0])
hi = np.full(255, to_ord([1.0])[0])
assert (bnb8(from_ord(lo)) < wanted).all() and (bnb8(from_ord(hi)) >= wanted).all()
while (hi - lo > 1).any():
    mid = (lo + hi) // 2
    up = bnb8(from_ord(mid)) >= wanted
    hi, lo = np.where(up, mid, hi), np.where(up, lo, mid)
thresholds = from_ord(hi)
for seed, scale in [(1, 1.0), (2, 0.01), (3, 0.0001)]:
    torch.manual_seed(seed)
    x = ((torch.rand(4_000_000) * 2 - 1) * scale).numpy()
    assert (bnb8(x) == np.searchsorted(thresholds, x, side="right")).all()
tensors["dynamic_thresholds"] = torch.tensor(thresholds)
print("dynamic thresholds (f32 bits):")
print(", ".join(f"0x{b:08x}" for b in thresholds.view(np.uint32)))

save_file(tensors, OUT / "reference.safetensors")
print({k: tuple(v.shape) for k, v in tensors.items() if k.startswith("d.") or "code" in k})
