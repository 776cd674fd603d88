//! The fused NF4 dequantize kernel in CubeCL: one thread per value reads
//! its 4-bit code, its block's 8-bit scale code and the second-level
//! scale, and writes `nf4[code] · (dynamic[scale code] · scale₂ + offset)`
//! — codes, scales and tables in, dense values out, one pass, on any
//! CubeCL runtime (CUDA in production; wgpu, over Mesa's software Vulkan
//! in CI). Same layout as [`crate::qlora::Nf4Weight`]: eight 4-bit codes
//! per 32-bit word and four 8-bit scale codes per word, first in the top
//! bits.
//!
//! The only `unsafe` in the workspace (denied elsewhere): CubeCL's
//! `ArrayArg::from_raw_parts` trusts the length given with a handle.

use crate::nf4::{be_words, dynamic_code, nf4_code, Absmax, Nf4};
use cubecl::prelude::*;
use cubecl::server::Handle;

/// Threads per cube.
const CUBE: u32 = 256;

#[cube(launch)]
fn dequantize_double<F: Float>(
    codes: &Array<u32>,
    absmax_codes: &Array<u32>,
    absmax_scales: &Array<f32>,
    nf4: &Array<f32>,
    dynamic: &Array<f32>,
    out: &mut Array<F>,
    n: usize,
    block: usize,
    offset: f32,
) {
    let i = ABSOLUTE_POS;
    if i < n {
        let q = (codes[i / 8] >> u32::cast_from(28 - 4 * (i % 8))) & 15;
        let b = i / block;
        let c = (absmax_codes[b / 4] >> u32::cast_from(24 - 8 * (b % 4))) & 255;
        let scale = dynamic[usize::cast_from(c)] * absmax_scales[b / 256] + offset;
        out[i] = F::cast_from(nf4[usize::cast_from(q)] * scale);
    }
}

#[cube(launch)]
fn dequantize_single<F: Float>(
    codes: &Array<u32>,
    absmax: &Array<f32>,
    nf4: &Array<f32>,
    out: &mut Array<F>,
    n: usize,
    block: usize,
) {
    let i = ABSOLUTE_POS;
    if i < n {
        let q = (codes[i / 8] >> u32::cast_from(28 - 4 * (i % 8))) & 15;
        out[i] = F::cast_from(nf4[usize::cast_from(q)] * absmax[i / block]);
    }
}

/// Enough cubes of [`CUBE`] threads for `n` values, spread over two
/// dimensions past CUDA's 65 535 per dimension.
fn cube_count(n: usize) -> CubeCount {
    let cubes = n.div_ceil(CUBE as usize).max(1) as u32;
    let x = cubes.min(65_535);
    CubeCount::Static(x, cubes.div_ceil(x), 1)
}

/// A device buffer of 32-bit elements and how many it holds.
type Buffer = (Handle, usize);

/// The block scales as device buffers.
enum Scales {
    F32(Buffer),
    Double {
        codes: Buffer,
        scales: Buffer,
        offset: f32,
    },
}

/// Runs the kernel over `n` values; returns the buffer of `n` values of
/// `F` (computed in f32, rounded once at the end). Every length given must
/// be its buffer's element count.
fn launch<R: Runtime, F: Float + CubeElement>(
    client: &ComputeClient<R>,
    codes: Buffer,
    scales: Scales,
    n: usize,
    block: usize,
) -> Handle {
    let table = client.create_from_slice(f32::as_bytes(&nf4_code()));
    let out = client.empty(n.max(1) * core::mem::size_of::<F>());
    let (count, dim) = (cube_count(n), CubeDim::new_1d(CUBE));
    match scales {
        Scales::Double {
            codes: scale_codes,
            scales,
            offset,
        } => {
            let dynamic = client.create_from_slice(f32::as_bytes(&dynamic_code()));
            // SAFETY: each length is its buffer's element count (callers'
            // contract) or the table's size.
            #[allow(unsafe_code)]
            unsafe {
                dequantize_double::launch::<F, R>(
                    client,
                    count,
                    dim,
                    ArrayArg::from_raw_parts(codes.0, codes.1),
                    ArrayArg::from_raw_parts(scale_codes.0, scale_codes.1),
                    ArrayArg::from_raw_parts(scales.0, scales.1),
                    ArrayArg::from_raw_parts(table, 16),
                    ArrayArg::from_raw_parts(dynamic, 256),
                    ArrayArg::from_raw_parts(out.clone(), n),
                    n,
                    block,
                    offset,
                )
            }
        }
        Scales::F32(absmax) => {
            // SAFETY: as above.
            #[allow(unsafe_code)]
            unsafe {
                dequantize_single::launch::<F, R>(
                    client,
                    count,
                    dim,
                    ArrayArg::from_raw_parts(codes.0, codes.1),
                    ArrayArg::from_raw_parts(absmax.0, absmax.1),
                    ArrayArg::from_raw_parts(table, 16),
                    ArrayArg::from_raw_parts(out.clone(), n),
                    n,
                    block,
                )
            }
        }
    }
    out
}

/// Dequantizes `q` on the runtime's device into values of `F` (f32, or
/// bf16/f16 as the compute dtype); the values come back to the host (for
/// tests and export; training keeps them on the device).
pub fn dequantize<R: Runtime, F: Float + CubeElement>(
    client: &ComputeClient<R>,
    q: &Nf4,
) -> Vec<F> {
    let upload_u32 = |v: &[u32]| (client.create_from_slice(u32::as_bytes(v)), v.len());
    let upload_f32 = |v: &[f32]| (client.create_from_slice(f32::as_bytes(v)), v.len());
    let scales = match &q.absmax {
        Absmax::Double {
            codes,
            scales,
            offset,
        } => Scales::Double {
            codes: upload_u32(&be_words(codes, 0)),
            scales: upload_f32(scales),
            offset: *offset,
        },
        Absmax::F32(absmax) => Scales::F32(upload_f32(absmax)),
    };
    let codes = upload_u32(&be_words(&q.packed, 0x77));
    let out = launch::<R, F>(client, codes, scales, q.len, q.block);
    let bytes = client.read_one_unchecked(out);
    F::from_bytes(&bytes)[..q.len].to_vec()
}

/// The kernel on a Burn CubeCL backend's own buffers (the CUDA backend):
/// the weight's codes and scales as they sit on the device in, a dense
/// `[out, in]` tensor of `dtype` out (f32, bf16 or f16; other dtypes get
/// f32) — nothing crosses to the host.
pub fn dequantize_on_device<R: burn_cubecl::CubeRuntime>(
    codes: burn_cubecl::tensor::CubeTensor<R>,
    scales: DeviceScales<R>,
    shape: [usize; 2],
    block: usize,
    dtype: burn::tensor::FloatDType,
) -> burn_cubecl::tensor::CubeTensor<R> {
    use burn::tensor::{bf16, f16, DType, FloatDType};
    // Contiguous tensors of 32-bit elements: the element count is the
    // buffer's length.
    let buffer = |t: burn_cubecl::tensor::CubeTensor<R>| {
        let t = burn_cubecl::kernel::into_contiguous(t);
        (t.handle.clone(), t.meta.num_elements())
    };
    let scales = match scales {
        DeviceScales::Double {
            codes,
            scales,
            offset,
        } => Scales::Double {
            codes: buffer(codes),
            scales: buffer(scales),
            offset,
        },
        DeviceScales::F32(absmax) => Scales::F32(buffer(absmax)),
    };
    let (client, device) = (codes.client.clone(), codes.device.clone());
    let (codes, n) = (buffer(codes), shape[0] * shape[1]);
    let (out, dtype) = match dtype {
        FloatDType::BF16 => (
            launch::<R, bf16>(&client, codes, scales, n, block),
            DType::BF16,
        ),
        FloatDType::F16 => (
            launch::<R, f16>(&client, codes, scales, n, block),
            DType::F16,
        ),
        _ => (
            launch::<R, f32>(&client, codes, scales, n, block),
            DType::F32,
        ),
    };
    burn_cubecl::tensor::CubeTensor::new_contiguous(client, device, shape.into(), out, dtype)
}

/// Block scales of a weight on a CubeCL device (built per call and moved
/// into the kernel launch, so the variants' sizes do not matter).
#[allow(clippy::large_enum_variant)]
pub enum DeviceScales<R: burn_cubecl::CubeRuntime> {
    F32(burn_cubecl::tensor::CubeTensor<R>),
    Double {
        codes: burn_cubecl::tensor::CubeTensor<R>,
        scales: burn_cubecl::tensor::CubeTensor<R>,
        offset: f32,
    },
}
