//! NF4 against bitsandbytes' own output (`make_nf4_fixture.py`).
#![allow(clippy::unwrap_used)]

use hone_gpu::nf4::{dynamic_code, dynamic_thresholds, nf4_code, quantize, Absmax};
use hone_gpu::safetensors::Weights;
use std::path::Path;

#[test]
fn codes_and_scales_match_bitsandbytes() {
    let r = Weights::open_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nf4/reference.safetensors"),
    )
    .unwrap();
    assert_eq!(r.read("nf4_code").unwrap().0, nf4_code().to_vec());
    assert_eq!(r.read("dynamic_code").unwrap().0, dynamic_code().to_vec());
    assert_eq!(
        r.read("dynamic_thresholds").unwrap().0,
        dynamic_thresholds().to_vec()
    );
    for name in ["a", "b", "c", "d"] {
        let (x, _) = r.read(&format!("{name}.input")).unwrap();
        let q = quantize(&x, 64, true);
        let (packed, _) = r.read_u8(&format!("{name}.packed")).unwrap();
        assert_eq!(q.packed, packed, "{name}: packed codes");
        let Absmax::Double {
            codes,
            scales,
            offset,
        } = &q.absmax
        else {
            panic!("double quantization expected")
        };
        let (want_offset, _) = r.read(&format!("{name}.offset")).unwrap();
        let (want_scales, _) = r.read(&format!("{name}.absmax2")).unwrap();
        assert!(
            (offset - want_offset[0]).abs() <= 3e-7 * want_offset[0].abs(),
            "{name}: offset {offset} vs {}",
            want_offset[0]
        );
        assert_eq!(scales.len(), want_scales.len());
        for (a, b) in scales.iter().zip(&want_scales) {
            assert!(
                (a - b).abs() <= 3e-7 * want_offset[0].abs(),
                "{name}: scale {a} vs {b}"
            );
        }
        let (want_codes, _) = r.read_u8(&format!("{name}.absmax_q")).unwrap();
        assert_eq!(
            codes, &want_codes,
            "{name}: 8-bit codes of the block maxima"
        );
        let (want, _) = r.read(&format!("{name}.dequantized")).unwrap();
        let got = q.dequantize();
        // Within f32 rounding of bitsandbytes' values (|x| ≤ ~0.25 here).
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff <= 1e-7, "{name}: dequantized max |Δ| {diff}");
    }
}

#[test]
fn storage_is_under_0_56_bytes_per_value_with_double_quantization() {
    let x: Vec<f32> = (0..64 * 256 * 4)
        .map(|i| ((i as f32) * 0.37).sin())
        .collect();
    let single = quantize(&x, 64, false).bytes_per_value();
    let double = quantize(&x, 64, true).bytes_per_value();
    assert!((single - 0.5625).abs() < 1e-9, "{single}");
    assert!(double <= 0.56 && double > 0.5, "{double}");
}
