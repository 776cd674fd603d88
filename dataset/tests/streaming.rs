//! The incremental API gives the same answer however the bytes arrive, and
//! never panics on arbitrary input.

use hone_dataset::{check_bytes, Checker, Options, Ratios, Report, SplitWriter};
use proptest::prelude::*;

fn in_chunks(bytes: &[u8], sizes: &[usize]) -> Report {
    let mut c = Checker::new(Options::default(), None);
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

    #[test]
    fn json_like_noise_never_panics(lines in proptest::collection::vec("[{}\\[\\]\":, a-z0-9\\\\]{0,40}", 0..30)) {
        let text = lines.join("\n");
        let r = in_chunks(text.as_bytes(), &[17]);
        prop_assert!(r.examples > 0 || !r.findings.is_empty());
    }
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
