//! `hone dataset check` and `hone dataset split`: the browser's checks and
//! split, run on a file from the command line (same `hone-dataset` code).

use anyhow::Context;
use hone_dataset::tokens::ChatTokenizer;
use hone_dataset::{Checker, Measure, Options, Ratios, Report, Split, SplitWriter};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::Path;

const CHUNK: usize = 1 << 20;

/// Streams `path` through `feed` in 1 MiB chunks.
fn stream(path: &Path, mut feed: impl FnMut(&[u8])) -> anyhow::Result<()> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok(());
        }
        feed(&buf[..n]);
    }
}

/// The tokenizer `--tokenizer` names (a tokenizer.json or a model folder),
/// or the built-in demo model's; with the model's context length.
pub fn load_tokenizer(path: Option<&Path>) -> anyhow::Result<(ChatTokenizer, Option<u32>)> {
    let files = match path {
        None => crate::models::tokenizer_files(Path::new(""), crate::models::DEMO)?,
        Some(p) if p.is_dir() => {
            let name = p
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            crate::models::folder_files(p, &name)?
        }
        Some(p) => {
            let dir = match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            let sibling = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
            let tokenizer_config = sibling("tokenizer_config.json");
            hone_app::api::TokenizerFiles {
                name: p.display().to_string(),
                context_length: crate::models::context_length(
                    sibling("config.json").as_deref(),
                    tokenizer_config.as_deref(),
                ),
                tokenizer: std::fs::read_to_string(p)
                    .with_context(|| format!("reading the tokenizer {}", p.display()))?,
                tokenizer_config,
                chat_template: sibling("chat_template.jinja"),
            }
        }
    };
    let context = files.context_length;
    Ok((crate::models::chat_tokenizer(&files)?, context))
}

pub fn check_file(
    path: &Path,
    opts: &Options,
    measure: Option<&dyn Measure>,
) -> anyhow::Result<Report> {
    let mut checker = Checker::new(opts.clone(), measure);
    stream(path, |chunk| checker.feed(chunk))?;
    Ok(checker.finish())
}

/// The report as people read it.
pub fn render(path: &Path, r: &Report) -> String {
    let mut out = String::new();
    let format = r.format.map_or("unknown format", |f| f.label());
    let _ = writeln!(
        out,
        "{}: {format}, {} usable examples, {} rejected",
        path.display(),
        r.examples,
        r.rejected
    );
    let _ = writeln!(out, "{} errors, {} warnings", r.errors, r.warnings);
    for f in &r.findings {
        let at = f.line.map_or(String::new(), |l| format!("line {l}: "));
        let _ = writeln!(
            out,
            "\n{at}{} [{}] {}",
            match f.severity {
                hone_dataset::Severity::Error => "error",
                hone_dataset::Severity::Warning => "warning",
            },
            f.code,
            f.message
        );
        let _ = writeln!(out, "  fix: {}", f.fix);
        if let Some(e) = &f.excerpt {
            let _ = writeln!(out, "  > {e}");
        }
    }
    let shown: u64 = r.findings.len() as u64;
    let total: u64 = r.counts.values().sum();
    if total > shown {
        let _ = writeln!(
            out,
            "\n({} more findings not listed; counts by code below)",
            total - shown
        );
    }
    let _ = writeln!(out, "\nFindings by code:");
    for (code, n) in &r.counts {
        let _ = writeln!(out, "  {code}: {n}");
    }
    let s = &r.stats;
    let unit = match s.unit {
        Some(hone_dataset::check::Unit::Tokens) => "tokens",
        _ => "characters",
    };
    let d = &s.length;
    let _ = writeln!(
        out,
        "\nLength per example ({unit}): min {} · median {} · mean {:.0} · p5 {} · p95 {} · max {}",
        d.min, d.median, d.mean, d.p5, d.p95, d.max
    );
    let a = &s.assistant_length;
    let _ = writeln!(
        out,
        "Assistant {unit} per example: min {} · median {} · mean {:.0} · max {}",
        a.min, a.median, a.mean, a.max
    );
    let m = &s.messages_per_example;
    let _ = writeln!(
        out,
        "Messages per example: min {} · median {} · max {}",
        m.min, m.median, m.max
    );
    let _ = writeln!(
        out,
        "Duplicates: {} exact, {} near",
        s.duplicates, s.near_duplicates
    );
    if !s.personal_data.is_empty() {
        let kinds: Vec<String> = s
            .personal_data
            .iter()
            .map(|(k, n)| format!("{} ×{n}", k.label()))
            .collect();
        let _ = writeln!(out, "Possible personal data: {}", kinds.join(", "));
    }
    if !s.categories.is_empty() {
        let cats: Vec<String> = s
            .categories
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        let _ = writeln!(out, "Categories: {}", cats.join(", "));
    }
    let _ = writeln!(out, "\nShould you fine-tune? {}", r.advice.message);
    out
}

/// Writes `train.jsonl`, `validation.jsonl` and `test.jsonl` into `out`;
/// returns the example count per split.
pub fn split_file(
    path: &Path,
    opts: &Options,
    measure: Option<&dyn Measure>,
    seed: u64,
    ratios: Ratios,
    out_dir: &Path,
) -> anyhow::Result<[u64; 3]> {
    let report = check_file(path, opts, measure)?;
    let plan = report.plan(seed, ratios);
    let counts = Report::split_counts(&plan);
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut files = Vec::new();
    for s in Split::ALL {
        let p = out_dir.join(s.file_name());
        let f = std::fs::File::create(&p).with_context(|| format!("creating {}", p.display()))?;
        files.push(std::io::BufWriter::new(f));
    }
    let mut failed: Option<std::io::Error> = None;
    let mut emit = |s: Split, line: &str| {
        if failed.is_none() {
            if let Err(e) = files[s as usize].write_all(line.as_bytes()) {
                failed = Some(e);
            }
        }
    };
    let mut writer = SplitWriter::new(opts.clone(), measure, plan);
    stream(path, |chunk| writer.feed(chunk, &mut emit))?;
    writer.finish(&mut emit);
    if let Some(e) = failed {
        return Err(e).context("writing the split files");
    }
    for mut f in files {
        f.flush().context("writing the split files")?;
    }
    Ok(counts)
}
