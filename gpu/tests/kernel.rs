//! The CubeCL NF4 kernel against the CPU dequantizer, on the wgpu runtime
//! (in CI: Mesa's llvmpipe software Vulkan). Several shapes, including
//! sizes that are not a multiple of the block, block sizes that are not a
//! multiple of 8, more than 256 blocks, and both scale formats.
#![cfg(any(feature = "kernel-wgpu", feature = "cuda"))]
#![allow(clippy::unwrap_used)]

use cubecl::Runtime;
use hone_gpu::kernel::dequantize;
use hone_gpu::nf4::quantize;

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = hone_gpu::generate::Rng(seed);
    (0..n)
        .map(|_| ((rng.uniform() - 0.5) * 0.3) as f32)
        .collect()
}

/// The kernel's values of `F` against the CPU dequantizer's f32 values
/// rounded to `F`: equal, or within `ulps` of `F`'s relative precision
/// (the kernel computes in f32 and rounds once; in f32 CUDA fuses
/// `code · scale + offset` into one FMA, one rounding fewer than the CPU:
/// 1 ulp apart, seen on an H200).
fn kernel_matches_cpu<R: Runtime, F: cubecl::prelude::Float + cubecl::CubeElement>(
    client: &cubecl::prelude::ComputeClient<R>,
    to_f32: fn(F) -> f32,
    from_f32: fn(f32) -> F,
    precision: f32,
) {
    for (n, block, double) in [
        (1, 64, true),
        (63, 64, true),
        (64 * 256 + 1, 64, true),
        (130 * 130, 64, true),
        (1000, 13, true),
        (4096 * 3 + 5, 64, false),
        (777, 32, false),
        (300_007, 64, true),
    ] {
        let x = values(n, n as u64);
        let q = quantize(&x, block, double);
        let want: Vec<f32> = q
            .dequantize()
            .into_iter()
            .map(|v| to_f32(from_f32(v)))
            .collect();
        let got: Vec<f32> = dequantize::<R, F>(client, &q)
            .into_iter()
            .map(to_f32)
            .collect();
        assert_eq!(got.len(), n);
        let bad = got.iter().zip(&want).position(|(a, b)| {
            a.to_bits() != b.to_bits() && (a - b).abs() > precision * b.abs().max(1e-3)
        });
        assert!(
            bad.is_none(),
            "{}: n {n}, block {block}, double {double}: value {} is {} on the device, {} on the CPU",
            std::any::type_name::<F>(),
            bad.unwrap_or(0),
            got[bad.unwrap_or(0)],
            want[bad.unwrap_or(0)]
        );
    }
}

#[cfg(feature = "kernel-wgpu")]
#[test]
fn the_kernel_equals_the_cpu_dequantizer() {
    let client = cubecl::wgpu::WgpuRuntime::client(&Default::default());
    kernel_matches_cpu::<_, f32>(&client, |v| v, |v| v, 1e-7);
    // The generic output path (one rounding at the end) in f16, which
    // llvmpipe has; bf16 is CUDA's (WGSL has none).
    use burn::tensor::f16;
    kernel_matches_cpu::<_, f16>(&client, f16::to_f32, f16::from_f32, 1.0 / 1024.0);
}

/// On CUDA (a GPU build, `--features cuda`): f32, and bf16 — the compute
/// dtype there — to one bf16 rounding step.
#[cfg(feature = "cuda")]
#[test]
fn the_kernel_equals_the_cpu_dequantizer_on_cuda() {
    use burn::tensor::bf16;
    let client = cubecl::cuda::CudaRuntime::client(&Default::default());
    // Two f32 ulps: FMA contraction (measured: 1 ulp, e.g. 0.009306249 vs
    // 0.00930625).
    kernel_matches_cpu::<_, f32>(&client, |v| v, |v| v, 2.4e-7);
    kernel_matches_cpu::<_, bf16>(&client, bf16::to_f32, bf16::from_f32, 1.0 / 128.0);
}

/// QLoRA on a Burn CubeCL backend `G` — the kernel on Burn's own buffers,
/// the path the CUDA backend takes — against the CPU engine in f32: the
/// loss and every adapter gradient, with the products in f32 (to f32
/// rounding) or bf16 (to bf16's precision).
fn qlora_matches_the_cpu<G: hone_gpu::qlora::TrainBackend>(bf16: bool) {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Int, Tensor, TensorData};
    use hone_gpu::model::{causal_lm_loss, fixed_adapter_values, LoraConfig, Model, Target};
    use hone_gpu::qlora::{QuantBackend, QuantConfig, TrainBackend};
    use hone_gpu::safetensors::Weights;
    use hone_gpu::ModelConfig;
    use std::path::Path;

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen2");
    let config =
        ModelConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let lora = LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: Target::ALL.to_vec(),
        rslora: false,
        seed: 1,
    };
    // Block 48: every weight ends in a partial block.
    let quant = QuantConfig {
        block: 48,
        double: true,
    };
    fn loss<B: QuantBackend>(
        config: &ModelConfig,
        dir: &Path,
        lora: &LoraConfig,
        quant: QuantConfig,
        bf16: bool,
    ) -> (Model<B>, Tensor<B, 1>) {
        let device = Default::default();
        let model: Model<B> = fixed_adapter_values(
            Model::load_quantized(config, &Weights::open(dir).unwrap(), Some(quant), &device)
                .unwrap()
                .with_lora(lora, &device),
            &device,
        )
        .with_bf16(bf16);
        let r = Weights::open_file(&dir.join("reference.safetensors")).unwrap();
        let (ids, shape) = r.read_i64("input_ids").unwrap();
        let ids: Tensor<B, 2, Int> =
            Tensor::from_data(TensorData::new(ids, [shape[0], shape[1]]), &device);
        let mask = Tensor::<B, 2>::ones(ids.dims(), &device);
        let loss = causal_lm_loss(model.forward(ids.clone()), ids, mask);
        (model, loss)
    }
    fn scalar<B: QuantBackend>(t: Tensor<B, 1>) -> f32 {
        t.into_data().convert::<f32>().to_vec::<f32>().unwrap()[0]
    }
    /// The loss and the gradient of each adapter's `B`, in layer and
    /// target order.
    fn run<B: TrainBackend>(
        config: &ModelConfig,
        dir: &Path,
        lora: &LoraConfig,
        quant: QuantConfig,
        bf16: bool,
    ) -> (f32, Vec<Vec<f32>>) {
        let (model, loss) = loss::<B>(config, dir, lora, quant, bf16);
        let value = scalar(loss.clone());
        let grads = loss.backward();
        let mut out = Vec::new();
        for layer in &model.layers {
            for t in Target::ALL {
                let b = &layer.linear(t).lora.as_ref().unwrap().b;
                let g = b.val().grad(&grads).unwrap();
                assert_eq!(
                    g.dtype(),
                    burn::tensor::DType::F32,
                    "adapter gradients are f32"
                );
                out.push(g.into_data().convert::<f32>().to_vec().unwrap());
            }
        }
        (value, out)
    }
    let (cpu, cpu_grads) = run::<Autodiff<Flex>>(&config, &dir, &lora, quant, false);
    let (gpu, gpu_grads) = run::<G>(&config, &dir, &lora, quant, bf16);
    // f32: CUDA's matmuls sum in another order (and FMA-contract); on an
    // H200 the smallest adapter gradient (scale 8e-7) came out 1.2e-3 of
    // its scale apart, so 5e-3 there; bf16: bf16's precision.
    let (loss_tol, grad_tol) = if bf16 {
        (2e-2 * cpu.abs(), 5e-2)
    } else {
        (1e-4, 5e-3)
    };
    assert!(
        (cpu - gpu).abs() <= loss_tol,
        "loss: CPU {cpu}, device {gpu} (bf16 {bf16})"
    );
    assert_eq!(cpu_grads.len(), 2 * 7);
    let worst = cpu_grads
        .iter()
        .zip(&gpu_grads)
        .map(|(a, b)| {
            let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            diff / scale
        })
        .fold(0f32, f32::max);
    eprintln!("measured (bf16 {bf16}): loss CPU {cpu}, device {gpu}; worst adapter gradient |Δ|/scale {worst}");
    for (i, (a, b)) in cpu_grads.iter().zip(&gpu_grads).enumerate() {
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(
            scale > 0.0 && diff <= grad_tol * scale,
            "adapter {i}: |Δ| {diff}, scale {scale} (bf16 {bf16})"
        );
    }
    let plain = scalar(loss::<G::InnerBackend>(&config, &dir, &lora, quant, bf16).1);
    assert!((plain - gpu).abs() <= 1e-5, "{plain} vs {gpu}");
}

#[cfg(feature = "kernel-wgpu")]
#[test]
fn qlora_on_burns_wgpu_backend_matches_the_cpu() {
    qlora_matches_the_cpu::<burn::backend::Autodiff<burn::backend::Wgpu>>(false);
}

/// On CUDA (a GPU build): in f32, and in bf16 — the default there.
#[cfg(feature = "cuda")]
#[test]
fn qlora_on_cuda_matches_the_cpu_in_f32_and_bf16() {
    qlora_matches_the_cpu::<burn::backend::Autodiff<burn::backend::Cuda>>(false);
    qlora_matches_the_cpu::<burn::backend::Autodiff<burn::backend::Cuda>>(true);
}
