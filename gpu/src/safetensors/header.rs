//! The safetensors header, parsed and checked with no IO, so that a hostile
//! or damaged file is refused before anything the size of a tensor is
//! allocated or read — and so that a fuzz target can drive it directly.
//!
//! The format: a `u64` little-endian header length, that many bytes of JSON
//! (`{"name": {"dtype", "shape", "data_offsets": [start, end]}, …}`, with an
//! optional `__metadata__`), then the data section the offsets count from.

use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

/// The largest header accepted: the reference implementation's limit.
/// Real headers are kilobytes (a few hundred tensors per shard).
pub const MAX_HEADER_LEN: u64 = 100_000_000;

/// The most dimensions a tensor may have (NumPy's limit), so that a shape
/// never costs more than a few hundred bytes to hold.
pub const MAX_RANK: usize = 64;

/// What is wrong with a header. Each variant names the tensor concerned;
/// [`crate::safetensors::WeightsError::Header`] adds the file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("{len} bytes is shorter than the 8-byte header length")]
    TooShort { len: u64 },
    #[error("the header length {len} exceeds the file's {file_len} bytes")]
    PastEnd { len: u64, file_len: u64 },
    #[error("the header length {len} exceeds the {MAX_HEADER_LEN}-byte limit")]
    TooLong { len: u64 },
    #[error("the header is not a safetensors JSON object: {0}")]
    Json(String),
    #[error("tensor {tensor:?}: {why}")]
    Field { tensor: String, why: String },
    #[error("tensor {tensor:?} appears twice in the header")]
    Duplicate { tensor: String },
    #[error("tensor {tensor:?}: dtype {dtype:?} is not a safetensors dtype")]
    UnknownDtype { tensor: String, dtype: String },
    #[error("tensor {tensor:?}: shape {shape:?} of {dtype} holds more than 2^64 bytes")]
    ShapeOverflow {
        tensor: String,
        dtype: &'static str,
        shape: Vec<u64>,
    },
    #[error(
        "tensor {tensor:?}: data_offsets [{start}, {end}] lie outside the data section ({data_len} bytes)"
    )]
    Offsets {
        tensor: String,
        start: u64,
        end: u64,
        data_len: u64,
    },
    #[error(
        "tensor {tensor:?}: shape {shape:?} of {dtype} takes {expected} bytes, but data_offsets [{start}, {end}] span {actual}"
    )]
    ByteLength {
        tensor: String,
        dtype: &'static str,
        shape: Vec<u64>,
        expected: u64,
        start: u64,
        end: u64,
        actual: u64,
    },
    #[error(
        "tensors {first:?} (bytes {first_start}..{first_end}) and {second:?} (bytes {second_start}..{second_end}) overlap"
    )]
    Overlap {
        first: String,
        first_start: u64,
        first_end: u64,
        second: String,
        second_start: u64,
        second_end: u64,
    },
    #[error("tensor {tensor:?}: {bytes} bytes do not fit in this machine's memory addresses")]
    TooLarge { tensor: String, bytes: u64 },
}

/// The element types of the safetensors format (sub-byte ones excepted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    Bool,
    U8,
    I8,
    F8E5M2,
    F8E4M3,
    F8E8M0,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    C64,
    I64,
    U64,
}

impl Dtype {
    const ALL: [Dtype; 17] = [
        Dtype::Bool,
        Dtype::U8,
        Dtype::I8,
        Dtype::F8E5M2,
        Dtype::F8E4M3,
        Dtype::F8E8M0,
        Dtype::I16,
        Dtype::U16,
        Dtype::F16,
        Dtype::BF16,
        Dtype::I32,
        Dtype::U32,
        Dtype::F32,
        Dtype::F64,
        Dtype::C64,
        Dtype::I64,
        Dtype::U64,
    ];

    /// The name the header spells it with.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::Bool => "BOOL",
            Dtype::U8 => "U8",
            Dtype::I8 => "I8",
            Dtype::F8E5M2 => "F8_E5M2",
            Dtype::F8E4M3 => "F8_E4M3",
            Dtype::F8E8M0 => "F8_E8M0",
            Dtype::I16 => "I16",
            Dtype::U16 => "U16",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::I32 => "I32",
            Dtype::U32 => "U32",
            Dtype::F32 => "F32",
            Dtype::F64 => "F64",
            Dtype::C64 => "C64",
            Dtype::I64 => "I64",
            Dtype::U64 => "U64",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            Dtype::Bool | Dtype::U8 | Dtype::I8 => 1,
            Dtype::F8E5M2 | Dtype::F8E4M3 | Dtype::F8E8M0 => 1,
            Dtype::I16 | Dtype::U16 | Dtype::F16 | Dtype::BF16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::F64 | Dtype::C64 | Dtype::I64 | Dtype::U64 => 8,
        }
    }

    fn parse(name: &str) -> Option<Dtype> {
        Dtype::ALL.into_iter().find(|d| d.name() == name)
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor as the header describes it, checked: `end - start` is exactly
/// the shape's element count times the dtype's size, and lies within the
/// data section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Offsets into the data section (which starts after the header).
    pub start: u64,
    pub end: u64,
}

impl TensorInfo {
    /// The tensor's length in bytes; it fits a `usize` (checked).
    pub fn len(&self) -> usize {
        // Checked in `parse_json`, so this never saturates.
        usize::try_from(self.end - self.start).unwrap_or(usize::MAX)
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// A checked header: every tensor, no two sharing a byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Where the data section starts in the file: `8 + header length`.
    pub data_start: u64,
    pub tensors: BTreeMap<String, TensorInfo>,
}

/// The header length from a file's first 8 bytes, checked against the
/// file's length and [`MAX_HEADER_LEN`] before any of it is read.
pub fn header_len(prefix: [u8; 8], file_len: u64) -> Result<u64, HeaderError> {
    let len = u64::from_le_bytes(prefix);
    if len > MAX_HEADER_LEN {
        return Err(HeaderError::TooLong { len });
    }
    // `len` ≤ MAX_HEADER_LEN, so `8 + len` cannot overflow.
    if 8 + len > file_len {
        return Err(HeaderError::PastEnd { len, file_len });
    }
    Ok(len)
}

/// A whole safetensors file held in memory (tests, the fuzz target):
/// its header, checked against the file's length.
pub fn parse_header(file: &[u8]) -> Result<Header, HeaderError> {
    let file_len = file.len() as u64;
    let Some((prefix, rest)) = file.split_first_chunk::<8>() else {
        return Err(HeaderError::TooShort { len: file_len });
    };
    let len = header_len(*prefix, file_len)?;
    // `header_len` checked that `len` bytes follow the prefix.
    let (json, data) = rest.split_at(len as usize);
    parse_json(json, 8 + len, data.len() as u64)
}

/// The header's JSON, checked against a data section of `data_len` bytes
/// that starts at `data_start` in the file.
pub fn parse_json(json: &[u8], data_start: u64, data_len: u64) -> Result<Header, HeaderError> {
    let failure = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(json);
    let tensors = HeaderSeed {
        data_len,
        failure: &failure,
    }
    .deserialize(&mut de)
    .and_then(|tensors| de.end().map(|()| tensors))
    .map_err(|e| {
        failure
            .take()
            .unwrap_or_else(|| HeaderError::Json(e.to_string()))
    })?;
    check_overlaps(&tensors)?;
    Ok(Header {
        data_start,
        tensors,
    })
}

fn check(name: &str, t: RawTensor<'_>, data_len: u64) -> Result<TensorInfo, HeaderError> {
    let dtype = Dtype::parse(&t.dtype).ok_or_else(|| HeaderError::UnknownDtype {
        tensor: name.into(),
        dtype: t.dtype.clone().into_owned(),
    })?;
    let shape = t.shape.0;
    let expected = shape
        .iter()
        .try_fold(dtype.size(), |n, &d| n.checked_mul(d))
        .ok_or_else(|| HeaderError::ShapeOverflow {
            tensor: name.into(),
            dtype: dtype.name(),
            shape: shape.clone(),
        })?;
    let [start, end] = t.data_offsets;
    if start > end || end > data_len {
        return Err(HeaderError::Offsets {
            tensor: name.into(),
            start,
            end,
            data_len,
        });
    }
    if end - start != expected {
        return Err(HeaderError::ByteLength {
            tensor: name.into(),
            dtype: dtype.name(),
            shape,
            expected,
            start,
            end,
            actual: end - start,
        });
    }
    // Every dimension is at most the byte count unless one is zero, so
    // check each: on a 32-bit target any of them may not fit.
    let too_large = || HeaderError::TooLarge {
        tensor: name.into(),
        bytes: expected,
    };
    usize::try_from(expected).map_err(|_| too_large())?;
    let shape = shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| too_large())?;
    Ok(TensorInfo {
        dtype,
        shape,
        start,
        end,
    })
}

/// No byte belongs to two tensors (empty tensors own no bytes).
fn check_overlaps(tensors: &BTreeMap<String, TensorInfo>) -> Result<(), HeaderError> {
    let mut ranges: Vec<(&str, &TensorInfo)> = tensors
        .iter()
        .filter(|(_, t)| !t.is_empty())
        .map(|(n, t)| (n.as_str(), t))
        .collect();
    ranges.sort_by_key(|(_, t)| (t.start, t.end));
    // Sorted by start, a range overlaps an earlier one exactly when it
    // starts before the furthest end seen so far.
    let mut furthest: Option<(&str, &TensorInfo)> = None;
    for (name, t) in ranges {
        if let Some((first, f)) = furthest {
            if t.start < f.end {
                return Err(HeaderError::Overlap {
                    first: first.into(),
                    first_start: f.start,
                    first_end: f.end,
                    second: name.into(),
                    second_start: t.start,
                    second_end: t.end,
                });
            }
        }
        if furthest.is_none_or(|(_, f)| t.end > f.end) {
            furthest = Some((name, t));
        }
    }
    Ok(())
}

/// A tensor entry as written, before its numbers are checked. Unknown keys
/// are ignored, as the reference implementation ignores them.
#[derive(Deserialize)]
struct RawTensor<'a> {
    #[serde(borrow)]
    dtype: Cow<'a, str>,
    shape: Shape,
    data_offsets: [u64; 2],
}

/// Dimensions, refused past [`MAX_RANK`] while being read.
struct Shape(Vec<u64>);

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Shape, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Shape;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an array of at most {MAX_RANK} dimensions")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
                let mut dims = Vec::new();
                while let Some(d) = seq.next_element::<u64>()? {
                    if dims.len() == MAX_RANK {
                        return Err(A::Error::custom(format!(
                            "shape has more than {MAX_RANK} dimensions"
                        )));
                    }
                    dims.push(d);
                }
                Ok(Shape(dims))
            }
        }
        d.deserialize_seq(V)
    }
}

/// The top-level object, each tensor checked as it is read, so that only
/// checked tensors are kept, an error names the tensor it was found in, and
/// `__metadata__` is skipped without being kept. A failed check is left in
/// `failure` (serde's error type cannot carry it).
struct HeaderSeed<'a> {
    data_len: u64,
    failure: &'a RefCell<Option<HeaderError>>,
}

impl HeaderSeed<'_> {
    fn fail<E: serde::de::Error>(&self, e: HeaderError) -> E {
        let message = E::custom(&e);
        *self.failure.borrow_mut() = Some(e);
        message
    }
}

impl<'de> DeserializeSeed<'de> for HeaderSeed<'_> {
    type Value = BTreeMap<String, TensorInfo>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeaderSeed<'_> {
    type Value = BTreeMap<String, TensorInfo>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of tensors")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut tensors = BTreeMap::new();
        while let Some(name) = map.next_key::<String>()? {
            if name == "__metadata__" {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if tensors.contains_key(&name) {
                return Err(self.fail(HeaderError::Duplicate { tensor: name }));
            }
            let raw = match map.next_value::<RawTensor<'de>>() {
                Ok(raw) => raw,
                Err(e) => {
                    let why = e.to_string();
                    return Err(self.fail(HeaderError::Field { tensor: name, why }));
                }
            };
            match check(&name, raw, self.data_len) {
                Ok(info) => tensors.insert(name, info),
                Err(e) => return Err(self.fail(e)),
            };
        }
        Ok(tensors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file: the length prefix, `json`, then `data_len` zero bytes.
    fn file(json: &str, data_len: usize) -> Vec<u8> {
        let mut f = (json.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(json.as_bytes());
        f.resize(f.len() + data_len, 0);
        f
    }

    fn err(json: &str, data_len: usize) -> HeaderError {
        match parse_header(&file(json, data_len)) {
            Ok(h) => panic!("accepted: {h:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_valid_header_parses() {
        let h = parse_header(&file(
            r#"{"__metadata__":{"format":"pt"},
                "a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},
                "b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]},
                "empty":{"dtype":"I64","shape":[0,5],"data_offsets":[32,32]},
                "scalar":{"dtype":"U8","shape":[],"data_offsets":[32,33]}}"#,
            40,
        ))
        .unwrap();
        assert_eq!(h.tensors.len(), 4);
        let a = &h.tensors["a"];
        assert_eq!(
            (a.dtype, &a.shape[..], a.start, a.len()),
            (Dtype::F32, &[2, 3][..], 0, 24)
        );
        assert_eq!(h.tensors["scalar"].shape, Vec::<usize>::new());
        assert!(h.tensors["empty"].is_empty());
    }

    #[test]
    fn a_file_shorter_than_the_length_prefix_is_refused() {
        assert_eq!(
            parse_header(b"\x02\0\0"),
            Err(HeaderError::TooShort { len: 3 })
        );
        assert_eq!(parse_header(b""), Err(HeaderError::TooShort { len: 0 }));
    }

    #[test]
    fn a_header_length_past_the_end_of_the_file_is_refused() {
        let mut f = file("{}", 0);
        f[0] = 3;
        assert_eq!(
            parse_header(&f),
            Err(HeaderError::PastEnd {
                len: 3,
                file_len: 10
            })
        );
        // Near the cap, still judged without reading (or allocating) it.
        assert_eq!(
            header_len(MAX_HEADER_LEN.to_le_bytes(), 1000),
            Err(HeaderError::PastEnd {
                len: MAX_HEADER_LEN,
                file_len: 1000
            })
        );
    }

    #[test]
    fn a_header_length_over_the_cap_is_refused_even_in_a_large_file() {
        for len in [MAX_HEADER_LEN + 1, u64::MAX - 7, u64::MAX] {
            assert_eq!(
                header_len(len.to_le_bytes(), u64::MAX),
                Err(HeaderError::TooLong { len })
            );
        }
        let mut f = vec![0xff; 8];
        f.extend_from_slice(b"{}");
        assert!(matches!(parse_header(&f), Err(HeaderError::TooLong { .. })));
        assert_eq!(
            header_len(MAX_HEADER_LEN.to_le_bytes(), u64::MAX),
            Ok(MAX_HEADER_LEN)
        );
    }

    #[test]
    fn headers_that_are_not_a_json_object_are_refused() {
        for json in ["", "{", "[]", "null", "\"x\"", "{} {}", "{\"a", "\u{0}"] {
            assert!(matches!(err(json, 0), HeaderError::Json(_)), "{json:?}");
        }
    }

    #[test]
    fn missing_or_mistyped_fields_name_the_tensor() {
        for entry in [
            r#"{"shape":[1],"data_offsets":[0,4]}"#,
            r#"{"dtype":"F32","data_offsets":[0,4]}"#,
            r#"{"dtype":"F32","shape":[1]}"#,
            r#"{"dtype":"F32","shape":[1],"data_offsets":[0]}"#,
            r#"{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}"#,
            r#"{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}"#,
            r#"{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}"#,
            r#"{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}"#,
            r#"{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551616]}"#,
            r#"{"dtype":7,"shape":[1],"data_offsets":[0,4]}"#,
            r#"[]"#,
        ] {
            let e = err(
                &format!(
                    r#"{{"ok":{{"dtype":"U8","shape":[],"data_offsets":[4,5]}},"w":{entry}}}"#
                ),
                8,
            );
            assert!(
                matches!(&e, HeaderError::Field { tensor, .. } if tensor == "w"),
                "{entry}: {e:?}"
            );
            assert!(e.to_string().starts_with("tensor \"w\": "), "{e}");
        }
    }

    #[test]
    fn an_unknown_dtype_is_refused() {
        assert_eq!(
            err(
                r#"{"w":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}}"#,
                1
            ),
            HeaderError::UnknownDtype {
                tensor: "w".into(),
                dtype: "F4".into()
            }
        );
    }

    #[test]
    fn shapes_whose_byte_count_overflows_are_refused() {
        // 2^32 · 2^32 elements overflow; so do 2^62 elements of four bytes.
        for (shape, dtype) in [
            ("[4294967296,4294967296]", "U8"),
            ("[4611686018427387904]", "F32"),
        ] {
            let json =
                format!(r#"{{"w":{{"dtype":"{dtype}","shape":{shape},"data_offsets":[0,4]}}}}"#);
            assert!(
                matches!(err(&json, 4), HeaderError::ShapeOverflow { tensor, .. } if tensor == "w"),
                "{json}"
            );
        }
        // A zero dimension first makes the count zero, whatever follows.
        let zero = r#"{"w":{"dtype":"U8","shape":[0,18446744073709551615],"data_offsets":[0,0]}}"#;
        assert!(parse_header(&file(zero, 0)).is_ok());
    }

    #[test]
    fn byte_ranges_must_match_the_shape() {
        assert_eq!(
            err(
                r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}"#,
                16
            ),
            HeaderError::ByteLength {
                tensor: "w".into(),
                dtype: "F32",
                shape: vec![2, 2],
                expected: 16,
                start: 0,
                end: 12,
                actual: 12
            }
        );
        assert!(matches!(
            err(
                r#"{"w":{"dtype":"F16","shape":[3],"data_offsets":[0,4]}}"#,
                4
            ),
            HeaderError::ByteLength { .. }
        ));
    }

    #[test]
    fn offsets_outside_the_data_section_are_refused() {
        for (offsets, data_len) in [
            ("[0,8]", 4),
            ("[8,4]", 16),
            ("[18446744073709551611,18446744073709551615]", 16),
            ("[4,8]", 7),
        ] {
            let json = format!(r#"{{"w":{{"dtype":"F32","shape":[1],"data_offsets":{offsets}}}}}"#);
            assert!(
                matches!(err(&json, data_len), HeaderError::Offsets { tensor, .. } if tensor == "w"),
                "{offsets}"
            );
        }
    }

    #[test]
    fn overlapping_byte_ranges_are_refused() {
        let e = err(
            r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},
                "b":{"dtype":"F32","shape":[1],"data_offsets":[16,20]},
                "c":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
            20,
        );
        assert_eq!(
            e,
            HeaderError::Overlap {
                first: "a".into(),
                first_start: 0,
                first_end: 16,
                second: "c".into(),
                second_start: 8,
                second_end: 12
            }
        );
        // Two tensors on the very same bytes.
        assert!(matches!(
            err(
                r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},
                    "b":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}"#,
                4
            ),
            HeaderError::Overlap { .. }
        ));
        // An empty tensor owns no bytes, wherever it points.
        let empty = r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},
                        "e":{"dtype":"U8","shape":[0],"data_offsets":[2,2]}}"#;
        assert!(parse_header(&file(empty, 4)).is_ok());
    }

    #[test]
    fn a_tensor_named_twice_is_refused() {
        assert_eq!(
            err(
                r#"{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},
                    "w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#,
                2
            ),
            HeaderError::Duplicate { tensor: "w".into() }
        );
    }

    #[test]
    fn too_many_dimensions_are_refused_while_reading() {
        let dims = vec!["1"; MAX_RANK + 1].join(",");
        let json = format!(r#"{{"w":{{"dtype":"U8","shape":[{dims}],"data_offsets":[0,1]}}}}"#);
        let e = err(&json, 1);
        assert!(e.to_string().contains("more than 64 dimensions"), "{e}");
        let dims = vec!["1"; MAX_RANK].join(",");
        let json = format!(r#"{{"w":{{"dtype":"U8","shape":[{dims}],"data_offsets":[0,1]}}}}"#);
        assert!(parse_header(&file(&json, 1)).is_ok());
    }
}
