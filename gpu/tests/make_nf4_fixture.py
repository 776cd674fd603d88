#!/usr/bin/env python3
"""NF4 reference from bitsandbytes itself (its CPU path), run once by hand:

    pip install torch bitsandbytes safetensors
    python3 gpu/tests/make_nf4_fixture.py

Writes `fixtures/nf4/reference.safetensors`: for a few shapes (some not a
multiple of the block size) the input, bitsandbytes' packed NF4 codes, the
8-bit quantized absmax with its offset and second-level absmax (double
quantization, block 256), and the dequantized values; plus both code
tables. `hone-gpu`'s quantizer must reproduce the codes bit for bit.
"""
from pathlib import Path

import torch
from bitsandbytes.functional import dequantize_4bit, quantize_4bit
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
save_file(tensors, OUT / "reference.safetensors")
print({k: tuple(v.shape) for k, v in tensors.items() if k.startswith("d.") or "code" in k})
