//! The CubeCL NF4 kernel against the CPU dequantizer, on the wgpu runtime
//! (in CI: Mesa's llvmpipe software Vulkan). Several shapes, including
//! sizes that are not a multiple of the block, block sizes that are not a
//! multiple of 8, more than 256 blocks, and both scale formats.
#![cfg(feature = "kernel-wgpu")]
#![allow(clippy::unwrap_used)]

use cubecl::wgpu::WgpuRuntime;
use cubecl::Runtime;
use hone_gpu::kernel::dequantize;
use hone_gpu::nf4::quantize;

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = hone_gpu::generate::Rng(seed);
    (0..n)
        .map(|_| ((rng.uniform() - 0.5) * 0.3) as f32)
        .collect()
}

#[test]
fn the_kernel_equals_the_cpu_dequantizer() {
    let client = WgpuRuntime::client(&Default::default());
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
        let want = q.dequantize();
        let got = dequantize(&client, &q);
        assert_eq!(got.len(), n);
        let bad = got.iter().zip(&want).position(|(a, b)| {
            a.to_bits() != b.to_bits() && (a - b).abs() > 1e-7 * b.abs().max(1e-3)
        });
        assert!(
            bad.is_none(),
            "n {n}, block {block}, double {double}: value {} is {} on the device, {} on the CPU",
            bad.unwrap_or(0),
            got[bad.unwrap_or(0)],
            want[bad.unwrap_or(0)]
        );
    }
}

/// QLoRA on Burn's wgpu backend — the kernel on Burn's own buffers, the
/// path the CUDA backend takes — gives the CPU engine's logits, loss and
/// adapter gradients.
#[test]
fn qlora_on_burns_cubecl_backend_matches_the_cpu() {
    use burn::backend::{Autodiff, Flex, Wgpu};
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
    ) -> (Model<B>, Tensor<B, 1>) {
        let device = Default::default();
        let model: Model<B> = fixed_adapter_values(
            Model::load_quantized(config, &Weights::open(dir).unwrap(), Some(quant), &device)
                .unwrap()
                .with_lora(lora, &device),
            &device,
        );
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
    ) -> (f32, Vec<Vec<f32>>) {
        let (model, loss) = loss::<B>(config, dir, lora, quant);
        let value = scalar(loss.clone());
        let grads = loss.backward();
        let mut out = Vec::new();
        for layer in &model.layers {
            for t in Target::ALL {
                let b = &layer.linear(t).lora.as_ref().unwrap().b;
                let g = b.val().grad(&grads).unwrap();
                out.push(g.into_data().convert::<f32>().to_vec().unwrap());
            }
        }
        (value, out)
    }
    let (cpu, cpu_grads) = run::<Autodiff<Flex>>(&config, &dir, &lora, quant);
    let (gpu, gpu_grads) = run::<Autodiff<Wgpu>>(&config, &dir, &lora, quant);
    assert!((cpu - gpu).abs() <= 1e-4, "loss: CPU {cpu}, wgpu {gpu}");
    assert_eq!(cpu_grads.len(), 2 * 7);
    for (i, (a, b)) in cpu_grads.iter().zip(&gpu_grads).enumerate() {
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(
            scale > 0.0 && diff <= 1e-3 * scale,
            "adapter {i}: |Δ| {diff}, scale {scale}"
        );
    }
    let plain = scalar(loss::<Wgpu>(&config, &dir, &lora, quant).1);
    assert!((plain - gpu).abs() <= 1e-5, "{plain} vs {gpu}");
}
