//! Fuzz target: any bytes, in any chunking and under any line limit,
//! through the checker and the split writer. A panic, a hang or an example
//! lost between the two passes is a bug.
//!
//! cargo fuzz run check   (from dataset/; see dataset/fuzz/README.md)

#![no_main]

use hone_dataset::parse::ParseOptions;
use hone_dataset::{Checker, Options, Ratios, SplitWriter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&[first, second], bytes)) = data.split_first_chunk::<2>() else {
        return;
    };
    let chunk = usize::from(first).max(1);
    // The second byte picks the line limit: small limits reach what the
    // default 8 MiB never does in a fuzz input — over-long lines, array
    // elements, and CSV records whose open quote runs over the limit.
    let opts = Options {
        parse: ParseOptions {
            max_line_bytes: match second {
                0 => ParseOptions::default().max_line_bytes,
                n => usize::from(n) * 4,
            },
            columns: None,
        },
        max_tokens: None,
    };
    let mut checker = Checker::new(opts.clone(), None);
    for c in bytes.chunks(chunk) {
        checker.feed(c);
    }
    let report = checker.finish();
    assert!(report.examples > 0 || !report.findings.is_empty());
    let plan = report.plan(u64::from(first), Ratios::default());
    let mut written = 0u64;
    let mut writer = SplitWriter::new(opts, None, plan);
    for c in bytes.chunks(chunk) {
        writer.feed(c, &mut |_, _| written += 1);
    }
    writer.finish(&mut |_, _| written += 1);
    assert_eq!(written, report.examples, "every kept example is written once");
});
