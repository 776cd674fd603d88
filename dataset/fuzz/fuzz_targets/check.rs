//! Fuzz target: any bytes, in any chunking, through the checker and the
//! split writer. A panic, a hang or an example lost between the two passes
//! is a bug.
//!
//! cargo fuzz run check   (from dataset/; see dataset/fuzz/README.md)

#![no_main]

use hone_dataset::{Checker, Options, Ratios, SplitWriter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, bytes)) = data.split_first() else { return };
    let chunk = usize::from(first).max(1);
    let mut checker = Checker::new(Options::default(), None);
    for c in bytes.chunks(chunk) {
        checker.feed(c);
    }
    let report = checker.finish();
    assert!(report.examples > 0 || !report.findings.is_empty());
    let plan = report.plan(u64::from(first), Ratios::default());
    let mut written = 0u64;
    let mut writer = SplitWriter::new(Options::default(), None, plan);
    for c in bytes.chunks(chunk) {
        writer.feed(c, &mut |_, _| written += 1);
    }
    writer.finish(&mut |_, _| written += 1);
    assert_eq!(written, report.examples, "every kept example is written once");
});
