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

/// Threads per cube.
const CUBE: u32 = 256;

#[cube(launch)]
fn dequantize_double(
    codes: &Array<u32>,
    absmax_codes: &Array<u32>,
    absmax_scales: &Array<f32>,
    nf4: &Array<f32>,
    dynamic: &Array<f32>,
    out: &mut Array<f32>,
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
        out[i] = nf4[usize::cast_from(q)] * scale;
    }
}

#[cube(launch)]
fn dequantize_single(
    codes: &Array<u32>,
    absmax: &Array<f32>,
    nf4: &Array<f32>,
    out: &mut Array<f32>,
    n: usize,
    block: usize,
) {
    let i = ABSOLUTE_POS;
    if i < n {
        let q = (codes[i / 8] >> u32::cast_from(28 - 4 * (i % 8))) & 15;
        out[i] = nf4[usize::cast_from(q)] * absmax[i / block];
    }
}

/// Enough cubes of [`CUBE`] threads for `n` values, spread over two
/// dimensions past CUDA's 65 535 per dimension.
fn cube_count(n: usize) -> CubeCount {
    let cubes = n.div_ceil(CUBE as usize).max(1) as u32;
    let x = cubes.min(65_535);
    CubeCount::Static(x, cubes.div_ceil(x), 1)
}

/// Dequantizes `q` on the runtime's device; the values come back to the
/// host (for tests and export; training keeps them on the device).
pub fn dequantize<R: Runtime>(client: &ComputeClient<R>, q: &Nf4) -> Vec<f32> {
    let n = q.len;
    let codes = be_words(&q.packed, 0x77);
    let codes_h = client.create_from_slice(u32::as_bytes(&codes));
    let table = nf4_code();
    let table_h = client.create_from_slice(f32::as_bytes(&table));
    let out_h = client.empty(n.max(1) * core::mem::size_of::<f32>());
    let dim = CubeDim::new_1d(CUBE);
    match &q.absmax {
        Absmax::Double {
            codes: scale_codes,
            scales,
            offset,
        } => {
            let sc = be_words(scale_codes, 0);
            let sc_h = client.create_from_slice(u32::as_bytes(&sc));
            let s_h = client.create_from_slice(f32::as_bytes(scales));
            let dynamic = dynamic_code();
            let d_h = client.create_from_slice(f32::as_bytes(&dynamic));
            // SAFETY: each handle was created just above from a slice of
            // exactly the length given with it.
            #[allow(unsafe_code)]
            unsafe {
                dequantize_double::launch::<R>(
                    client,
                    cube_count(n),
                    dim,
                    ArrayArg::from_raw_parts(codes_h, codes.len()),
                    ArrayArg::from_raw_parts(sc_h, sc.len()),
                    ArrayArg::from_raw_parts(s_h, scales.len()),
                    ArrayArg::from_raw_parts(table_h, 16),
                    ArrayArg::from_raw_parts(d_h, 256),
                    ArrayArg::from_raw_parts(out_h.clone(), n),
                    n,
                    q.block,
                    *offset,
                )
            }
        }
        Absmax::F32(absmax) => {
            let a_h = client.create_from_slice(f32::as_bytes(absmax));
            // SAFETY: as above.
            #[allow(unsafe_code)]
            unsafe {
                dequantize_single::launch::<R>(
                    client,
                    cube_count(n),
                    dim,
                    ArrayArg::from_raw_parts(codes_h, codes.len()),
                    ArrayArg::from_raw_parts(a_h, absmax.len()),
                    ArrayArg::from_raw_parts(table_h, 16),
                    ArrayArg::from_raw_parts(out_h.clone(), n),
                    n,
                    q.block,
                )
            }
        }
    }
    let bytes = client.read_one_unchecked(out_h);
    f32::from_bytes(&bytes)[..n].to_vec()
}

/// The kernel on a Burn CubeCL backend's own buffers (the CUDA backend):
/// the weight's codes and scales as they sit on the device in, a dense
/// `[out, in]` f32 tensor out — nothing crosses to the host.
pub fn dequantize_on_device<R: burn_cubecl::CubeRuntime>(
    codes: burn_cubecl::tensor::CubeTensor<R>,
    scales: DeviceScales<R>,
    shape: [usize; 2],
    block: usize,
) -> burn_cubecl::tensor::CubeTensor<R> {
    use burn_cubecl::kernel::into_contiguous;
    let n = shape[0] * shape[1];
    let codes = into_contiguous(codes);
    let client = codes.client.clone();
    let device = codes.device.clone();
    let words = codes.meta.num_elements();
    let table_h = client.create_from_slice(f32::as_bytes(&nf4_code()));
    let out_h = client.empty(n.max(1) * core::mem::size_of::<f32>());
    let dim = CubeDim::new_1d(CUBE);
    match scales {
        DeviceScales::Double {
            codes: scale_codes,
            scales,
            offset,
        } => {
            let (sc, s) = (into_contiguous(scale_codes), into_contiguous(scales));
            let (sc_len, s_len) = (sc.meta.num_elements(), s.meta.num_elements());
            let d_h = client.create_from_slice(f32::as_bytes(&dynamic_code()));
            // SAFETY: each length is its contiguous tensor's element count
            // (32-bit elements throughout) or the table's size.
            #[allow(unsafe_code)]
            unsafe {
                dequantize_double::launch::<R>(
                    &client,
                    cube_count(n),
                    dim,
                    ArrayArg::from_raw_parts(codes.handle.clone(), words),
                    ArrayArg::from_raw_parts(sc.handle.clone(), sc_len),
                    ArrayArg::from_raw_parts(s.handle.clone(), s_len),
                    ArrayArg::from_raw_parts(table_h, 16),
                    ArrayArg::from_raw_parts(d_h, 256),
                    ArrayArg::from_raw_parts(out_h.clone(), n),
                    n,
                    block,
                    offset,
                )
            }
        }
        DeviceScales::F32(absmax) => {
            let a = into_contiguous(absmax);
            let a_len = a.meta.num_elements();
            // SAFETY: as above.
            #[allow(unsafe_code)]
            unsafe {
                dequantize_single::launch::<R>(
                    &client,
                    cube_count(n),
                    dim,
                    ArrayArg::from_raw_parts(codes.handle.clone(), words),
                    ArrayArg::from_raw_parts(a.handle.clone(), a_len),
                    ArrayArg::from_raw_parts(table_h, 16),
                    ArrayArg::from_raw_parts(out_h.clone(), n),
                    n,
                    block,
                )
            }
        }
    }
    burn_cubecl::tensor::CubeTensor::new_contiguous(
        client,
        device,
        shape.into(),
        out_h,
        burn::tensor::DType::F32,
    )
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
