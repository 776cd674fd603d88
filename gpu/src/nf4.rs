//! NF4 quantization as in the QLoRA paper and bitsandbytes: blocks of
//! `block` values scaled by their absolute maximum and rounded to the
//! nearest of 16 NormalFloat4 values (bitsandbytes' bucketize over the
//! midpoints), two 4-bit codes per byte (first in the high nibble); with
//! double quantization the block maxima are stored as 8-bit codes of the
//! signed dynamic map (blocks of 256, minus their mean) with f32 scales,
//! rounded as bitsandbytes' CPU kernel rounds them (measured thresholds).
//! The tables are bitsandbytes' own (`nf4_tables.rs`).

use crate::nf4_tables::{DYNAMIC_BITS, DYNAMIC_THRESHOLD_BITS, NF4_BITS};

/// A quantized tensor (flattened; the caller keeps the shape).
#[derive(Clone, Debug, PartialEq)]
pub struct Nf4 {
    pub len: usize,
    pub block: usize,
    /// `ceil(len / 2)` bytes.
    pub packed: Vec<u8>,
    pub absmax: Absmax,
}

/// The per-block scales.
#[derive(Clone, Debug, PartialEq)]
pub enum Absmax {
    F32(Vec<f32>),
    /// Double quantization: `dynamic[codes[i]] * scales[i / 256] + offset`.
    Double {
        codes: Vec<u8>,
        scales: Vec<f32>,
        offset: f32,
    },
}

pub fn nf4_code() -> [f32; 16] {
    NF4_BITS.map(f32::from_bits)
}

pub fn dynamic_code() -> [f32; 256] {
    DYNAMIC_BITS.map(f32::from_bits)
}

pub fn dynamic_thresholds() -> [f32; 255] {
    DYNAMIC_THRESHOLD_BITS.map(f32::from_bits)
}

/// Index of the bucket `v` falls in: how many bounds are below it
/// (`torch.bucketize`, right = false).
fn bucket(v: f32, bounds: &[f32]) -> usize {
    bounds.iter().take_while(|b| **b < v).count()
}

/// bitsandbytes' 8-bit code for `v` in [-1, 1]: how many of its
/// thresholds are at or below `v` (see `DYNAMIC_THRESHOLD_BITS`).
fn dynamic_index(v: f32, thresholds: &[f32; 255]) -> u8 {
    thresholds.partition_point(|t| *t <= v) as u8
}

/// The f32 mean as torch's vectorised sum computes it on a CPU: eight
/// lanes, then the lanes, then the rest (equal to bitsandbytes' offset to
/// the last bit on the reference tensors).
fn mean_like_torch(v: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let full = v.len() - v.len() % 8;
    for chunk in v[..full].chunks_exact(8) {
        for (l, x) in lanes.iter_mut().zip(chunk) {
            *l += x;
        }
    }
    let mut sum = lanes.iter().fold(0f32, |s, l| s + l);
    for x in &v[full..] {
        sum += x;
    }
    sum / v.len().max(1) as f32
}

/// Quantizes `x` in blocks of `block` values; `double` also quantizes the
/// block maxima (bitsandbytes' `compress_statistics`).
pub fn quantize(x: &[f32], block: usize, double: bool) -> Nf4 {
    let code = nf4_code();
    let bounds: Vec<f32> = code.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect();
    let n = x.len();
    let full = n - n % block;
    let mut absmax = Vec::with_capacity(n.div_ceil(block));
    let mut q = Vec::with_capacity(n + 1);
    for chunk in x[..full].chunks(block) {
        let m = chunk.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-38);
        let inv = 1.0 / m;
        q.extend(
            chunk
                .iter()
                .map(|v| bucket((v * inv).clamp(-1.0, 1.0), &bounds) as u8),
        );
        absmax.push(m);
    }
    if full < n {
        // The last, shorter block: bitsandbytes divides here.
        let rest = &x[full..];
        let m = rest.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-38);
        q.extend(
            rest.iter()
                .map(|v| bucket((v / m).clamp(-1.0, 1.0), &bounds) as u8),
        );
        absmax.push(m);
    }
    if q.len() % 2 == 1 {
        q.push(bucket(0.0, &bounds) as u8);
    }
    let packed = q.chunks_exact(2).map(|p| (p[0] << 4) | p[1]).collect();
    let absmax = if double {
        let offset = mean_like_torch(&absmax);
        let thresholds = dynamic_thresholds();
        let mut codes = Vec::with_capacity(absmax.len());
        let mut scales = Vec::new();
        for chunk in absmax.chunks(256) {
            let centred: Vec<f32> = chunk.iter().map(|v| v - offset).collect();
            let s = centred.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-38);
            codes.extend(centred.iter().map(|v| dynamic_index(v / s, &thresholds)));
            scales.push(s);
        }
        Absmax::Double {
            codes,
            scales,
            offset,
        }
    } else {
        Absmax::F32(absmax)
    };
    Nf4 {
        len: n,
        block,
        packed,
        absmax,
    }
}

/// Big-endian 32-bit words of `bytes` (the first byte in the top bits),
/// the last padded with `fill`: how the device layouts hold packed codes.
pub fn be_words(bytes: &[u8], fill: u8) -> Vec<u32> {
    bytes
        .chunks(4)
        .map(|c| {
            let mut w = [fill; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_be_bytes(w)
        })
        .collect()
}

impl Nf4 {
    /// The block scales as f32.
    pub fn scales(&self) -> Vec<f32> {
        match &self.absmax {
            Absmax::F32(v) => v.clone(),
            Absmax::Double {
                codes,
                scales,
                offset,
            } => {
                let dynamic = dynamic_code();
                codes
                    .iter()
                    .enumerate()
                    .map(|(i, c)| dynamic[*c as usize] * scales[i / 256] + offset)
                    .collect()
            }
        }
    }

    pub fn dequantize(&self) -> Vec<f32> {
        let code = nf4_code();
        let scales = self.scales();
        (0..self.len)
            .map(|i| {
                let byte = self.packed[i / 2];
                let q = if i % 2 == 0 { byte >> 4 } else { byte & 0x0f };
                code[q as usize] * scales[i / self.block]
            })
            .collect()
    }

    /// Bytes stored per quantized value (codes + scales).
    pub fn bytes_per_value(&self) -> f64 {
        let scales = match &self.absmax {
            Absmax::F32(v) => v.len() * 4,
            Absmax::Double { codes, scales, .. } => codes.len() + scales.len() * 4 + 4,
        };
        (self.packed.len() + scales) as f64 / self.len.max(1) as f64
    }
}
