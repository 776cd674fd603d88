//! Fuzz target: any bytes through the safetensors header parser, twice —
//! as a whole file (length prefix, JSON, data), and as bare header JSON
//! after two bytes giving the data section's length, so that the fuzzer
//! need not guess a matching length prefix to reach the JSON checks. A
//! panic, or a header accepted with a tensor outside the data section, a
//! byte count that does not match its shape, or two tensors sharing a
//! byte, is a bug.
//!
//! cargo fuzz run safetensors_header   (from gpu/; see gpu/fuzz/README.md)

#![no_main]

use hone_gpu::safetensors::header::{parse_header, parse_json, Header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = parse_header(data) {
        let data_len = data.len() as u64 - h.data_start;
        assert_sound(&h, data_len);
    }
    if let Some((&[lo, hi], json)) = data.split_first_chunk::<2>() {
        let data_len = u64::from(u16::from_le_bytes([lo, hi]));
        let data_start = 8 + json.len() as u64;
        if let Ok(h) = parse_json(json, data_start, data_len) {
            assert_eq!(h.data_start, data_start);
            assert_sound(&h, data_len);
        }
    }
});

/// What an accepted header promises the reader.
fn assert_sound(h: &Header, data_len: u64) {
    let mut ranges = Vec::new();
    for (name, t) in &h.tensors {
        assert!(t.start <= t.end && t.end <= data_len, "{name}: {t:?}");
        let elements = t
            .shape
            .iter()
            .try_fold(1u128, |n, &d| n.checked_mul(d as u128));
        let bytes = elements.and_then(|n| n.checked_mul(u128::from(t.dtype.size())));
        assert_eq!(bytes, Some(u128::from(t.end - t.start)), "{name}: {t:?}");
        assert_eq!(t.len() as u64, t.end - t.start);
        if !t.is_empty() {
            ranges.push((t.start, t.end));
        }
    }
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "overlap: {pair:?}");
    }
}
