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
