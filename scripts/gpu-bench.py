#!/usr/bin/env python3
"""Issue 5's GPU check, as one run on a lent NVIDIA machine.

Here first (no GPU needed): `scripts/gpu-pack` builds the binaries into
`.gpu/`. There (the device tool's `run`, carrying `.gpu`), from the
repository root:

    python3 scripts/gpu-bench.py            # the full check, ~6-9 minutes
    python3 scripts/gpu-bench.py --smoke    # tiny sizes; no GPU needed

It runs, each part with its own time limit, going on when one fails:
  1. the GPU and driver (nvidia-smi), and the workers' live figures:
     `hone devices` (NVML, loaded at run time) against nvidia-smi's
     memory total and free (within 64 MiB) and utilisation (0-100);
  2. the measured bf16 matmul rate: torch, 8192^3 on random data, the mean
     of 10 products after 3 warm-ups (the MFU's denominator);
  3. the kernel test binary on CUDA (`gpu/tests/kernel.rs`: the NF4
     kernel in f32 and bf16 against the CPU dequantizer, QLoRA's loss and
     adapter gradients on CUDA in f32 and bf16 against the CPU engine);
  4. a random Llama of ~1.04 B parameters (hidden 2048, 16 layers,
     intermediate 8192, 32/8 heads, vocab 32000) written by
     make_bench_model;
  5. `hone-train train` on it, LoRA, QLoRA, then QLoRA with gradient
     checkpointing (r 16 on all seven projections, bf16 products; each
     stopped after 150 s, the last skipped when the 560 s budget is
     spent), batch x sequence tokens per step on
     examples that all fill the sequence: tokens/s over the steady steps
     (from when each step's event arrived; the first steps compile
     kernels), peak GPU memory (nvidia-smi every 50 ms, minus the idle
     reading) beside `hone-train estimate`'s figure, and model FLOPs
     utilisation against part 2's rate.

Model FLOPs per token, frozen base (no weight gradients):
4 * N + 12 * L * S * H, N the parameters in matrix products (projections
and head), L layers, S the sequence, H the attention width; the 4 is the
forward (2) and the input gradients (2); attention's scores and values
are 2 * 2 * S * H per layer forward, three times that with its backward.

Writes gpu-bench.json and gpu-bench.txt to $OUT (else ./gpu-bench-out).
"""

import json
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path("/tmp/hone-gpu-bin")
OUT = pathlib.Path(os.environ.get("OUT", ROOT / "gpu-bench-out"))
SMOKE = "--smoke" in sys.argv
WORK = pathlib.Path("/tmp/hone-gpu-bench")

# hidden, layers, intermediate, heads, kv heads, vocab
SIZE = (256, 2, 512, 4, 2, 2048) if SMOKE else (2048, 16, 8192, 32, 8, 32000)
BATCH, SEQ, STEPS = (2, 64, 5) if SMOKE else (8, 512, 10)
# Steps before the steady state (kernels compile and autotune in these).
WARM = 3
# Seconds each training run may take (killed after; its steps so far count).
TRAIN_LIMIT = 150
# The whole run's budget (a device command may run 600 s): a part that
# would not fit is skipped and says so.
BUDGET = 560
STARTED = time.monotonic()


def left():
    return BUDGET - (time.monotonic() - STARTED)

results = {"smoke": SMOKE, "size": SIZE, "batch": BATCH, "seq": SEQ}
lines = []


def say(text):
    print(text, flush=True)
    lines.append(text)


def sh(cmd, limit, **kw):
    """Runs cmd (a list); returns (exit code, output), never raises."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, **kw)
        return p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return 124, out + f"\n(stopped after {limit} s)"
    except OSError as e:
        return 127, str(e)


def libraries():
    """Where libcuda and libnvrtc are, for the binaries' dynamic loading."""
    dirs = ["/usr/local/nvidia/lib64", "/usr/local/cuda/lib64", "/usr/lib/x86_64-linux-gnu"]
    code, out = sh(
        [sys.executable, "-c",
         "import nvidia, pathlib; [print(p) for p in pathlib.Path(nvidia.__path__[0]).glob('*/lib')]"],
        60,
    )
    if code == 0:
        dirs += out.split()
    found = [d for d in dirs if pathlib.Path(d).is_dir()]
    os.environ["LD_LIBRARY_PATH"] = ":".join(found + [os.environ.get("LD_LIBRARY_PATH", "")])
    # CubeCL compiles its kernels with NVRTC against the toolkit's headers.
    nvcc = shutil.which("nvcc")
    if "CUDA_PATH" not in os.environ and not pathlib.Path("/usr/local/cuda").exists() and nvcc:
        os.environ["CUDA_PATH"] = str(pathlib.Path(nvcc).resolve().parent.parent)
    if not SMOKE:
        say(f"CUDA_PATH {os.environ.get('CUDA_PATH', '/usr/local/cuda')}, nvcc {nvcc}")
        say(f"LD_LIBRARY_PATH {os.environ['LD_LIBRARY_PATH']}")


def gpu_memory_mib():
    code, out = sh(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"], 30)
    return int(out.split()[0]) if code == 0 and out.split() else None


class MemoryPeak:
    """Polls the GPU's used memory every 50 ms in a thread."""

    def __init__(self):
        self.peak, self.stop = 0, threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)

    def poll(self):
        while not self.stop.is_set():
            m = gpu_memory_mib()
            if m is not None:
                self.peak = max(self.peak, m)
            self.stop.wait(0.05)

    def __enter__(self):
        if not SMOKE:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()


def part_gpu():
    code, out = sh(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                    "--format=csv,noheader"], 30)
    results["gpu"] = out.strip() if code == 0 else None
    say(f"GPU: {results['gpu']}")


def part_nvml():
    """What the workers report through NVML equals nvidia-smi's view."""
    hone = BIN / "hone"
    if not hone.exists():
        say("hone devices: no `hone` binary packed")
        return
    code, out = sh([str(hone), "devices"], 60, env={**os.environ, "HONE_TRAIN_BIN": str(BIN / "hone-train")})
    try:
        report = json.JSONDecoder().raw_decode(out[out.index("["):])[0]
    except ValueError:
        say(f"hone devices: exit {code}, unreadable:\n{out[-2000:]}")
        results["nvml"] = {"exit": code}
        return
    code2, smi = sh(["nvidia-smi", "--query-gpu=index,memory.total,memory.free,utilization.gpu",
                     "--format=csv,noheader,nounits"], 30)
    rows = {int(r.split(",")[0]): [float(x) for x in r.split(",")[1:]]
            for r in smi.strip().splitlines() if r.strip()} if code2 == 0 else {}
    checks = []
    for entry in report:
        d, live = entry["device"], entry.get("live")
        if d["kind"] != "cuda":
            continue
        smi_row = rows.get(d["index"])
        ok = bool(live) and smi_row is not None \
            and abs(live["memory_total_bytes"] / 2**20 - smi_row[0]) <= 64 \
            and abs(live["memory_free_bytes"] / 2**20 - smi_row[1]) <= 64 \
            and 0 <= live["utilisation_percent"] <= 100
        checks.append({"index": d["index"], "live": live, "nvidia_smi_mib": smi_row, "ok": ok})
        say(f"NVML GPU {d['index']}: {live} vs nvidia-smi {smi_row} MiB: {'ok' if ok else 'MISMATCH'}")
    results["nvml"] = {"exit": code, "gpus": checks, "ok": bool(checks) and all(c["ok"] for c in checks)}


def part_matmul():
    script = """
import torch, time
n = 8192
a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
for _ in range(3):
    a @ b
torch.cuda.synchronize()
t = time.perf_counter()
for _ in range(10):
    a @ b
torch.cuda.synchronize()
print(2 * n**3 * 10 / (time.perf_counter() - t) / 1e12)
"""
    code, out = sh([sys.executable, "-c", script], 180)
    try:
        rate = float(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        rate = None
    results["bf16_matmul_tflops"] = rate
    say(f"bf16 matmul 8192^3 (torch): {rate} TFLOP/s" if rate else f"bf16 matmul: failed\n{out[-2000:]}")


def part_kernel_test():
    manifest = (BIN / "manifest_dir").read_text().strip()
    here = ROOT / "gpu"
    if not pathlib.Path(manifest).exists():
        # The binary reads its fixtures from the path it was built in.
        pathlib.Path(manifest).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(here, manifest)
    code, out = sh([str(BIN / "kernel-test"), "--test-threads", "1", "--nocapture"], 150, cwd=here)
    lines = re.findall(r"(?:test |measured).*", out)
    results["kernel_test"] = {"exit": code, "summary": lines}
    say(f"kernel test on CUDA: exit {code}")
    for line in lines:
        say(f"  {line}")
    if code != 0:
        say(out[-4000:])


def make_model():
    WORK.mkdir(parents=True, exist_ok=True)
    model = WORK / "model"
    if not (model / "config.json").exists():
        code, out = sh([str(BIN / "make_bench_model"), str(model)] + [str(v) for v in SIZE], 600)
        say(f"model: exit {code}: {out.strip()[-300:]}")
    words = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex".split()
    with open(WORK / "train.jsonl", "w") as f:
        for i in range(BATCH * STEPS):
            text = " ".join(words[(i * 7 + j) % len(words)] for j in range(SEQ * 3))
            f.write(json.dumps({"messages": [
                {"role": "user", "content": text[:40]},
                {"role": "assistant", "content": text[40:]},
            ]}) + "\n")
    return model


def matmul_params():
    h, layers, inter, heads, kv, vocab = SIZE
    d = h // heads
    per_layer = h * heads * d * 2 + h * kv * d * 2 + 3 * h * inter
    return per_layer * layers + vocab * h


def part_train(model, name):
    method, checkpointing = name.removesuffix("-gc"), name.endswith("-gc")
    config = WORK / f"{name}.toml"
    config.write_text(
        f'method = "{method}"\nnum_train_epochs = 1\nper_device_train_batch_size = {BATCH}\n'
        f"max_seq_length = {SEQ}\nlogging_steps = 1\nsave_steps = 100000\nlora_r = 16\n"
        f"lora_alpha = 32\nlora_dropout = 0.0\nbf16 = true\n"
        f"gradient_checkpointing = {str(checkpointing).lower()}\n"
        'target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]\n'
    )
    out_dir = WORK / f"out-{name}"
    subprocess.run(["rm", "-rf", str(out_dir)])
    idle = gpu_memory_mib() or 0
    # On the GPU machine: CUDA or an error, never a silent CPU run.
    device = ["--device", "cpu"] if SMOKE else ["--device", "cuda"]
    cmd = [str(BIN / "hone-train")] + device + [
        "train", "--model", str(model), "--train", str(WORK / "train.jsonl"),
        "--config", str(config), "--out", str(out_dir)]
    began = time.monotonic()
    steps, events, log = [], [], []
    with MemoryPeak() as mem:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=lambda: log.extend(p.stderr), daemon=True).start()
        timer = threading.Timer(min(TRAIN_LIMIT, max(left() - 10, 1)), p.kill)
        timer.start()
        for line in p.stdout:
            now = time.monotonic()
            try:
                e = json.loads(line)
            except ValueError:
                continue
            events.append(e)
            if e.get("event") == "step":
                steps.append((now, e))
        code = p.wait()
        timer.cancel()
    r = {"exit": code, "seconds": round(time.monotonic() - began, 1)}
    started = next((e for e in events if e.get("event") == "started"), {})
    r["compute_dtype"] = started.get("compute_dtype")
    r["truncated"] = started.get("truncated")
    r["trainable_params"] = started.get("trainable_params")
    r["losses"] = [round(e["loss"], 4) for _, e in steps]
    if len(steps) >= WARM + 2:
        # Steady state: from the end of the warm-up steps to the last.
        (t0, _), (t1, _) = steps[WARM - 1], steps[-1]
        per_step = (t1 - t0) / (len(steps) - WARM)
        tps = BATCH * SEQ / per_step
        h, layers = SIZE[0], SIZE[1]
        flops = 4 * matmul_params() + 12 * layers * SEQ * h
        r["seconds_per_step"] = round(per_step, 3)
        r["tokens_per_s"] = round(tps, 1)
        r["model_tflops"] = round(tps * flops / 1e12, 2)
        rate = results.get("bf16_matmul_tflops")
        if rate:
            r["mfu"] = round(tps * flops / 1e12 / rate, 4)
    if not SMOKE:
        r["peak_gpu_mib"] = mem.peak - idle
        r["idle_gpu_mib"] = idle
    # What `estimate` predicts for the same run (bf16 as configured).
    code, out = sh([str(BIN / "hone-train"), "--device", "cpu", "estimate", "--model", str(model),
                    "--config", str(config)], 60)
    if code == 0:
        r["estimate_mib"] = round(json.loads(out[out.index("{"):])["total_bytes"] / 2**20, 1)
    if code != 0:
        r["log"] = "".join(log)[-3000:]
    results[name] = r
    say(f"{name}: {json.dumps({k: v for k, v in r.items() if k != 'log'})}")
    if code != 0:
        say(r["log"])


def save():
    """Results so far (a run stopped at its limit still returns them)."""
    (OUT / "gpu-bench.json").write_text(json.dumps(results, indent=2))
    (OUT / "gpu-bench.txt").write_text("\n".join(lines) + "\n")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    say(f"hone gpu-bench {'(smoke) ' if SMOKE else ''}{time.strftime('%Y-%m-%d %H:%M:%S')}")
    BIN.mkdir(parents=True, exist_ok=True)
    code, out = sh(["tar", "-C", str(BIN), "-xJf", str(ROOT / ".gpu" / "bin.tar.xz")], 120)
    if code != 0:
        say(f"no binaries (run scripts/gpu-pack here first, carry .gpu): {out}")
        save()
        sys.exit(1)
    libraries()
    parts = [] if SMOKE else [part_gpu, part_nvml, part_matmul, part_kernel_test]
    for part in parts:
        part()
        save()
    model = make_model()
    results["matmul_params"] = matmul_params()
    # QLoRA with gradient checkpointing last: what fits the budget.
    for name in ("lora", "qlora", "qlora-gc"):
        if left() < 60:
            say(f"{name}: skipped, {left():.0f} s of the budget left")
            continue
        part_train(model, name)
        save()


if __name__ == "__main__":
    main()
