//! QLoRA's frozen base: each projection's weight kept on the device as NF4
//! codes (`nf4`), dequantized on the fly in the forward pass and again in
//! the backward pass — the dense weight is never kept, so a layer costs
//! ~0.52 bytes per parameter at rest and one transient `[out, in]` f32
//! buffer while it computes.
//!
//! Layout on the device (any backend, Burn tensor ops only):
//! - `codes`: the 4-bit codes, eight per 32-bit integer, the first value in
//!   the top bits (bitsandbytes' byte order, big-endian within the word);
//! - block scales: f32 (`absmax`), or with double quantization 8-bit codes
//!   four per integer (`absmax_codes`), one f32 per 256 blocks
//!   (`absmax_scales`) and the `offset` added back.
//!
//! Autodiff: [`QuantBackend::nf4_matmul`] is one operation with its own
//! backward (`grad_x = grad_y · W`, `W` dequantized again), so the graph
//! keeps the quantized weight, not the dense one. Gradients reach the
//! input (and through it the adapters of earlier layers), never the base.

use crate::nf4::{be_words, dynamic_code, nf4_code, quantize, Absmax, Nf4};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, FloatDType, Int, Tensor, TensorData, TensorPrimitive};

// How the base is quantized is plain data the server and the browser share.
pub use hone_protocol::train_config::QuantConfig;

/// A frozen `[out, in]` weight stored as NF4 on the device.
#[derive(Module, Debug)]
pub struct Nf4Weight<B: Backend> {
    pub codes: Tensor<B, 1, Int>,
    pub absmax: Option<Tensor<B, 1>>,
    pub absmax_codes: Option<Tensor<B, 1, Int>>,
    pub absmax_scales: Option<Tensor<B, 1>>,
    pub offset: f64,
    pub out: usize,
    pub inp: usize,
    pub block: usize,
}

/// [`be_words`] as the i32 elements Burn's integer tensors hold.
fn words(bytes: &[u8], fill: u8) -> Vec<i32> {
    be_words(bytes, fill)
        .into_iter()
        .map(|w| i32::from_ne_bytes(w.to_ne_bytes()))
        .collect()
}

/// The codes of `x` as `[len]`, one per element (0..16 or 0..256), from
/// words holding `per` of them, the first in the top bits.
fn unpack<B: Backend>(words: Tensor<B, 1, Int>, per: usize) -> Tensor<B, 1, Int> {
    let n = words.dims()[0];
    let bits = 32 / per;
    let device = words.device();
    let shifts: Vec<i32> = (0..per).rev().map(|j| (j * bits) as i32).collect();
    let shifts = Tensor::<B, 1, Int>::from_data(TensorData::new(shifts, [per]), &device);
    words
        .reshape([n, 1])
        .bitwise_right_shift(shifts.reshape([1, per]))
        .bitwise_and_scalar(((1i64 << bits) - 1).elem())
        .reshape([n * per])
}

impl<B: Backend> Nf4Weight<B> {
    /// Quantizes a dense `[out, in]` weight (row-major values).
    pub fn quantize(
        values: &[f32],
        out: usize,
        inp: usize,
        c: QuantConfig,
        device: &B::Device,
    ) -> Nf4Weight<B> {
        Nf4Weight::from_nf4(&quantize(values, c.block, c.double), out, inp, device)
    }

    /// Moves quantized values (of an `[out, in]` weight) to the device.
    pub fn from_nf4(q: &Nf4, out: usize, inp: usize, device: &B::Device) -> Nf4Weight<B> {
        let blocks = q.len.div_ceil(q.block);
        // Codes for every value of every block, whole words; the padding
        // is NF4's zero (code 7) and is cut off after scaling.
        let mut packed = q.packed.clone();
        packed.resize((blocks * q.block).div_ceil(8) * 4, 0x77);
        let codes = words(&packed, 0x77);
        let n = codes.len();
        let codes = Tensor::from_data(TensorData::new(codes, [n]), device);
        let (absmax, absmax_codes, absmax_scales, offset) = match &q.absmax {
            Absmax::F32(v) => (
                Some(Tensor::from_data(
                    TensorData::new(v.clone(), [v.len()]),
                    device,
                )),
                None,
                None,
                0.0,
            ),
            Absmax::Double {
                codes,
                scales,
                offset,
            } => {
                let mut c = codes.clone();
                c.resize(scales.len() * 256, 0);
                let w = words(&c, 0);
                let n = w.len();
                (
                    None,
                    Some(Tensor::from_data(TensorData::new(w, [n]), device)),
                    Some(Tensor::from_data(
                        TensorData::new(scales.clone(), [scales.len()]),
                        device,
                    )),
                    f64::from(*offset),
                )
            }
        };
        Nf4Weight {
            codes,
            absmax,
            absmax_codes,
            absmax_scales,
            offset,
            out,
            inp,
            block: q.block,
        }
    }

    /// Bytes held on the device (codes, scales, padding included).
    pub fn stored_bytes(&self) -> usize {
        let count = |t: &Option<Tensor<B, 1>>| t.as_ref().map_or(0, |t| t.dims()[0] * 4);
        // 32-bit words of packed codes; 8-bit codes are 4 per word.
        self.codes.dims()[0] * 4
            + self.absmax_codes.as_ref().map_or(0, |t| t.dims()[0] * 4)
            + count(&self.absmax)
            + count(&self.absmax_scales)
            + if self.absmax_codes.is_some() { 4 } else { 0 }
    }

    fn blocks(&self) -> usize {
        (self.out * self.inp).div_ceil(self.block)
    }

    /// The block maxima, `[blocks]`.
    fn scales(&self) -> Tensor<B, 1> {
        let blocks = self.blocks();
        if let Some(a) = &self.absmax {
            return a.clone();
        }
        let (Some(codes), Some(scales)) = (&self.absmax_codes, &self.absmax_scales) else {
            unreachable!("an NF4 weight has f32 or double-quantized scales")
        };
        let device = codes.device();
        let table =
            Tensor::<B, 1>::from_data(TensorData::new(dynamic_code().to_vec(), [256]), &device);
        let groups = scales.dims()[0];
        table
            .select(0, unpack(codes.clone(), 4))
            .reshape([groups, 256])
            .mul(scales.clone().reshape([groups, 1]))
            .add_scalar(self.offset)
            .reshape([groups * 256])
            .narrow(0, 0, blocks)
    }

    /// The dense weight `[out, in]`, with Burn tensor ops on the weight's
    /// device (the portable path; [`QuantBackend::nf4_dequantize`] may do
    /// better).
    pub fn dequantize(&self) -> Tensor<B, 2> {
        let device = self.codes.device();
        let blocks = self.blocks();
        let table = Tensor::<B, 1>::from_data(TensorData::new(nf4_code().to_vec(), [16]), &device);
        table
            .select(0, unpack(self.codes.clone(), 8))
            .narrow(0, 0, blocks * self.block)
            .reshape([blocks, self.block])
            .mul(self.scales().reshape([blocks, 1]))
            .reshape([blocks * self.block])
            .narrow(0, 0, self.out * self.inp)
            .reshape([self.out, self.inp])
    }
}

/// The dense weight computed on the host in one pass over the codes:
/// `table[code] · scale[block]`, no intermediate tensors.
fn dequantize_on_host<B: Backend>(w: &Nf4Weight<B>) -> Vec<f32> {
    let ints = |t: &Tensor<B, 1, Int>| -> Vec<i32> {
        t.clone()
            .into_data()
            .convert::<i32>()
            .to_vec()
            .unwrap_or_default()
    };
    let floats = |t: &Tensor<B, 1>| -> Vec<f32> {
        t.clone()
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap_or_default()
    };
    let blocks = w.blocks();
    let scales: Vec<f32> = match (&w.absmax, &w.absmax_codes, &w.absmax_scales) {
        (Some(a), _, _) => floats(a),
        (None, Some(codes), Some(second)) => {
            let dynamic = dynamic_code();
            let second = floats(second);
            let offset = w.offset as f32;
            ints(codes)
                .iter()
                .flat_map(|word| word.to_be_bytes())
                .take(blocks)
                .enumerate()
                .map(|(i, c)| dynamic[c as usize] * second[i / 256] + offset)
                .collect()
        }
        _ => unreachable!("an NF4 weight has f32 or double-quantized scales"),
    };
    let code = nf4_code();
    let n = w.out * w.inp;
    let mut out = Vec::with_capacity(n);
    for (k, word) in ints(&w.codes).iter().enumerate() {
        let word = *word as u32;
        for j in 0..8 {
            let i = k * 8 + j;
            if i == n {
                return out;
            }
            let q = (word >> (28 - 4 * j)) & 15;
            out.push(code[q as usize] * scales[i / w.block]);
        }
    }
    out
}

/// Backends the engine runs on: the dense weight of an NF4 one, and
/// `x · Wᵀ` with it, in the compute dtype (f32, or bf16 on CUDA). The
/// defaults use Burn tensor ops on the device; the CPU backend dequantizes
/// in one pass on the host; the CubeCL backends run the fused kernel; the
/// autodiff backend wraps the product in one operation whose backward
/// dequantizes again.
pub trait QuantBackend: Backend {
    /// The dense `[out, in]` weight, of `dtype`.
    fn nf4_dequantize(w: &Nf4Weight<Self>, dtype: FloatDType) -> Tensor<Self, 2> {
        w.dequantize().cast(dtype)
    }

    /// `x · Wᵀ` in `x`'s dtype (the caller casts `x` to the compute dtype).
    fn nf4_matmul(x: Tensor<Self, 2>, w: &Nf4Weight<Self>) -> Tensor<Self, 2> {
        let dtype = float_dtype(&x);
        x.matmul(Self::nf4_dequantize(w, dtype).transpose())
    }
}

/// A float tensor's dtype as a [`FloatDType`].
pub fn float_dtype<B: Backend, const D: usize>(x: &Tensor<B, D>) -> FloatDType {
    FloatDType::from(x.dtype())
}

impl QuantBackend for burn::backend::Flex {
    fn nf4_dequantize(w: &Nf4Weight<Self>, dtype: FloatDType) -> Tensor<Self, 2> {
        Tensor::<Self, 2>::from_data(
            TensorData::new(dequantize_on_host(w), [w.out, w.inp]),
            &w.codes.device(),
        )
        .cast(dtype)
    }
}

/// On Burn's CubeCL backends — CUDA, and wgpu for the tests — the fused
/// CubeCL kernel (`kernel.rs`) dequantizes in one pass on the device,
/// writing the compute dtype directly.
#[cfg(any(feature = "cuda", feature = "kernel-wgpu"))]
impl<R: burn_cubecl::CubeRuntime, BT: burn_cubecl::BoolElement> QuantBackend
    for burn_cubecl::CubeBackend<R, f32, i32, BT>
{
    fn nf4_dequantize(w: &Nf4Weight<Self>, dtype: FloatDType) -> Tensor<Self, 2> {
        use crate::kernel::{dequantize_on_device, DeviceScales};
        let float = |t: &Tensor<Self, 1>| t.clone().into_primitive().tensor();
        let scales = match (&w.absmax, &w.absmax_codes, &w.absmax_scales) {
            (Some(a), _, _) => DeviceScales::F32(float(a)),
            (None, Some(codes), Some(scales)) => DeviceScales::Double {
                codes: codes.clone().into_primitive(),
                scales: float(scales),
                offset: w.offset as f32,
            },
            _ => unreachable!("an NF4 weight has f32 or double-quantized scales"),
        };
        let dense: Tensor<Self, 2> =
            Tensor::from_primitive(TensorPrimitive::Float(dequantize_on_device(
                w.codes.clone().into_primitive(),
                scales,
                [w.out, w.inp],
                w.block,
                dtype,
            )));
        // The kernel writes f32, bf16 or f16; anything else is cast.
        dense.cast(dtype)
    }
}

/// An autodiff backend over a [`QuantBackend`]: what the trainer needs.
pub trait TrainBackend: QuantBackend + AutodiffBackend<InnerBackend: QuantBackend> {}

impl<B: QuantBackend + AutodiffBackend<InnerBackend: QuantBackend>> TrainBackend for B {}

#[derive(Debug)]
struct Nf4MatmulBackward;

impl<B: QuantBackend> Backward<B, 1> for Nf4MatmulBackward {
    type State = Nf4Weight<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let w = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            let grad = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(grad));
            let dtype = float_dtype(&grad);
            grad.matmul(B::nf4_dequantize(&w, dtype))
                .into_primitive()
                .tensor()
        });
    }
}

impl<B: QuantBackend, C: CheckpointStrategy> QuantBackend for Autodiff<B, C> {
    fn nf4_dequantize(w: &Nf4Weight<Self>, dtype: FloatDType) -> Tensor<Self, 2> {
        Tensor::from_inner(B::nf4_dequantize(&w.valid(), dtype))
    }

    fn nf4_matmul(x: Tensor<Self, 2>, w: &Nf4Weight<Self>) -> Tensor<Self, 2> {
        let inner = w.valid();
        let x = x.into_primitive().tensor();
        let y = B::nf4_matmul(
            Tensor::from_primitive(TensorPrimitive::Float(x.primitive.clone())),
            &inner,
        )
        .into_primitive()
        .tensor();
        let out = match Nf4MatmulBackward
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(inner, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        Tensor::from_primitive(TensorPrimitive::Float(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    type B = Flex;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::generate::Rng(seed);
        (0..n).map(|_| (rng.uniform() as f32 - 0.5) * 0.2).collect()
    }

    #[test]
    fn device_dequantization_equals_the_reference_for_ragged_shapes() {
        let device = Default::default();
        // 7×9 = 63 values (less than one block), 130×130 (not a multiple
        // of 64, more than 256 blocks), a block size that is not a
        // multiple of 8.
        for (out, inp, block, double) in [
            (7, 9, 64, true),
            (130, 130, 64, true),
            (33, 17, 64, false),
            (5, 21, 13, true),
        ] {
            let x = values(out * inp, (out * inp) as u64);
            let q = quantize(&x, block, double);
            let want = q.dequantize();
            let w = Nf4Weight::<B>::from_nf4(&q, out, inp, &device);
            for (path, t) in [
                ("tensor ops", w.dequantize()),
                ("host", B::nf4_dequantize(&w, FloatDType::F32)),
            ] {
                assert_eq!(t.dims(), [out, inp]);
                let got: Vec<f32> = t.into_data().to_vec().unwrap_or_default();
                assert_eq!(got.len(), want.len());
                let diff = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    diff <= 1e-7,
                    "{path}, {out}×{inp} block {block}: max |Δ| {diff}"
                );
            }
        }
    }

    #[test]
    fn stored_bytes_are_about_half_a_byte_per_value() {
        let device = Default::default();
        let (out, inp) = (256, 512);
        let w = Nf4Weight::<B>::quantize(
            &values(out * inp, 1),
            out,
            inp,
            QuantConfig::default(),
            &device,
        );
        let per = w.stored_bytes() as f64 / (out * inp) as f64;
        assert!(per > 0.5 && per <= 0.52, "{per}");
    }
}
