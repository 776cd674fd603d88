#!/usr/bin/env python3
"""Hone's GGUF exports, run by llama.cpp: the reference the Rust tests hold.

Run once, by hand (CI never needs Python for it):

    pip install llama-cpp-python==0.3.36 numpy tokenizers   # builds llama.cpp, ~4 min
    cargo build -p hone-gpu --bin hone-train
    python3 gpu/tests/make_gguf_fixtures.py [path/to/hone-train]

For each tiny checkpoint below (the `llama` (query/key rows permuted, tied
head), `qwen2` (q/k/v biases, not permuted) and `mistral` (own head)
fixtures with the demo model's byte-level BPE tokenizer and chat template
copied in), it exports GGUF with `hone-train export --gguf` as f16 and
q8_0, loads each file with llama.cpp's Python binding and records in
`fixtures/gguf.json`:

- `sha256` of each file: the Rust test writes the same file again and must
  get the same bytes, so what llama.cpp ran is what Hone writes today;
- f16: the first 32 greedy token ids after `prompt` (llama.cpp's argmax of
  its logits, token by token);
- q8_0: llama.cpp's logits at every prompt position;
- the tokenizer: llama.cpp's ids for `strings` (special tokens parsed) next
  to Hugging Face `tokenizers`' ids, and each difference.

The Rust test (`gpu/tests/gguf.rs`) compares Hone's own greedy ids and
logits with these. Running this again gives the same file when the writer
has not changed.
"""
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import llama_cpp
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "gpu" / "tests" / "fixtures"
DEMO = ROOT / "models" / "hone-demo"
CASES = ["llama", "qwen2", "mistral"]
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json"]
STRINGS = [
    "What is the capital of France?",
    "<|im_start|>user\nHow do I reset my password?<|im_end|>\n<|im_start|>assistant\n",
    "Invoice 12345, amount 678.90 euros, due 2026-01-15.",
    "  two leading spaces, a tab\tand\n\nblank lines  ",
    "Grüße aus Köln — naïve café, 東京, emoji 🙂",
    "don't, we'll, they're, I'm, you've, it's",
    "",
]


def main():
    engine = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target" / "debug" / "hone-train")
    hf = Tokenizer.from_file(str(DEMO / "tokenizer.json"))
    prompt = hf.encode(STRINGS[1], add_special_tokens=False).ids
    out = {"prompt": prompt, "cases": {}, "tokenizer": []}
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            folder = Path(tmp) / case
            shutil.copytree(FIXTURES / case, folder)
            for f in TOKENIZER_FILES:
                shutil.copy(DEMO / f, folder / f)
            result = {}
            for ty in ["f16", "q8_0"]:
                path = Path(tmp) / f"{case}-{ty}.gguf"
                subprocess.run(
                    [engine, "--device", "cpu", "export", "--model", str(folder),
                     "--gguf", str(path), "--gguf-type", ty, "--name", case],
                    check=True,
                )
                data = path.read_bytes()
                llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, logits_all=True,
                                      verbose=False, n_threads=2, seed=0)
                entry = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
                llm.reset()
                llm.eval(prompt)
                if ty == "f16":
                    greedy = []
                    for _ in range(32):
                        t = int(np.argmax(np.array(llm.scores[llm.n_tokens - 1])))
                        greedy.append(t)
                        llm.eval([t])
                    entry["greedy"] = greedy
                else:
                    logits = np.array(llm.scores[: len(prompt)], dtype=np.float32)
                    entry["logits"] = [[round(float(x), 6) for x in row] for row in logits]
                if case == CASES[0] and ty == "f16":
                    for s in STRINGS:
                        ours = hf.encode(s, add_special_tokens=False).ids
                        theirs = llm.tokenize(s.encode(), add_bos=False, special=True)
                        out["tokenizer"].append(
                            {"text": s, "hugging_face": ours, "llama_cpp": theirs,
                             "equal": ours == theirs})
                result[ty] = entry
                del llm
            out["cases"][case] = result
            print(case, {k: v["sha256"][:12] for k, v in result.items()},
                  "greedy", result["f16"]["greedy"][:12])
    for t in out["tokenizer"]:
        if not t["equal"]:
            print("tokenizer differs on", repr(t["text"]), t["hugging_face"], t["llama_cpp"])
    (FIXTURES / "gguf.json").write_text(json.dumps(out, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
