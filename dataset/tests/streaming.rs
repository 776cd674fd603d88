//! The incremental API gives the same answer however the bytes arrive, and
//! never panics on arbitrary input.

use hone_dataset::parse::ParseOptions;
use hone_dataset::{check_bytes, Checker, Options, Ratios, Report, SplitWriter};
use proptest::prelude::*;

fn in_chunks(bytes: &[u8], sizes: &[usize]) -> Report {
    in_chunks_with(bytes, sizes, Options::default())
}

fn in_chunks_with(bytes: &[u8], sizes: &[usize], opts: Options) -> Report {
    let mut c = Checker::new(opts, None);
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        c.feed(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
    c.finish()
}

fn sample() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..40 {
        s.push_str(&format!(
            "{{\"messages\":[{{\"role\":\"user\",\"content\":\"Question {i}: how do I change plan {}?\"}},{{\"role\":\"assistant\",\"content\":\"Go to billing.\"}}],\"category\":\"{}\"}}\n",
            i % 7,
            ["a", "b"][i % 2]
        ));
        if i % 13 == 0 {
            s.push_str("{\"messages\": [ broken\n\n");
        }
    }
    s.into_bytes()
}

proptest! {
    #[test]
    fn chunking_never_changes_the_report(sizes in proptest::collection::vec(1usize..200, 1..8)) {
        let bytes = sample();
        let whole = check_bytes(&bytes, Options::default(), None);
        let chunked = in_chunks(&bytes, &sizes);
        prop_assert_eq!(whole, chunked);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000), sizes in proptest::collection::vec(1usize..64, 1..4)) {
        let r = in_chunks(&bytes, &sizes);
        // Something is always said about input that yields no examples.
        prop_assert!(r.examples > 0 || !r.findings.is_empty());
    }

    /// CSV whose quotes open and close across lines, under line limits
    /// that records run over: the same report however the bytes arrive,
    /// and the split writer writes each kept example once.
    #[test]
    fn open_quotes_under_small_limits_do_not_depend_on_chunking(
        rows in proptest::collection::vec("[a-z\",]{0,12}", 0..30),
        limit in 16usize..80,
        sizes in proptest::collection::vec(1usize..32, 1..4),
    ) {
        let text = format!("prompt,response\n{}\n", rows.join("\n"));
        let opts = Options {
            parse: ParseOptions { max_line_bytes: limit, columns: None },
            max_tokens: None,
        };
        let whole = check_bytes(text.as_bytes(), opts.clone(), None);
        prop_assert_eq!(&whole, &in_chunks_with(text.as_bytes(), &sizes, opts.clone()));
        let mut written = 0u64;
        let mut writer = SplitWriter::new(opts, None, whole.plan(1, Ratios::default()));
        for c in text.as_bytes().chunks(sizes[0]) {
            writer.feed(c, &mut |_, _| written += 1);
        }
        writer.finish(&mut |_, _| written += 1);
        prop_assert_eq!(written, whole.examples);
    }

    #[test]
    fn json_like_noise_never_panics(lines in proptest::collection::vec("[{}\\[\\]\":, a-z0-9\\\\]{0,40}", 0..30)) {
        let text = lines.join("\n");
        let r = in_chunks(text.as_bytes(), &[17]);
        prop_assert!(r.examples > 0 || !r.findings.is_empty());
    }
}

/// The format is told from the same bytes however they arrive: a CSV
/// header fed a byte at a time, a NUL byte past the first chunk.
#[test]
fn the_format_does_not_depend_on_the_first_chunk() {
    let csv = b"prompt,response\nHi,Hello\n";
    let whole = check_bytes(csv, Options::default(), None);
    assert_eq!(whole.format, Some(hone_dataset::Format::Csv));
    assert_eq!(in_chunks(csv, &[1]), whole);
    let binary = [b"{\"messages\": []}".as_slice(), &[0u8; 8], b"\n"].concat();
    let whole = check_bytes(&binary, Options::default(), None);
    assert_eq!(whole.counts.get(&hone_dataset::Code::BinaryFile), Some(&1));
    assert_eq!(in_chunks(&binary, &[4]), whole);
}

#[test]
fn split_files_are_byte_identical_across_runs_and_chunkings() {
    let bytes = sample();
    let run = |chunk: usize| {
        let report = in_chunks(&bytes, &[chunk]);
        let plan = report.plan(1234, Ratios::default());
        let mut out = [String::new(), String::new(), String::new()];
        let mut w = SplitWriter::new(Options::default(), None, plan);
        for c in bytes.chunks(chunk) {
            w.feed(c, &mut |s, line| out[s as usize].push_str(line));
        }
        w.finish(&mut |s, line| out[s as usize].push_str(line));
        out
    };
    let a = run(1 << 20);
    assert_eq!(a, run(3));
    let lines: usize = a.iter().map(|s| s.lines().count()).sum();
    assert_eq!(lines, 40, "every valid example lands in exactly one split");
    assert_eq!(
        a.iter().map(|s| s.lines().count()).collect::<Vec<_>>(),
        vec![32, 4, 4]
    );
}
