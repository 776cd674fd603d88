//! The whole check of one file: parse, normalise, look for duplicates and
//! personal data, measure, advise. Feed chunks, then `finish` for the
//! [`Report`]. Per example it keeps ~40 bytes, never the text.

use crate::example::Example;
use crate::finding::{Code, Finding, Severity};
use crate::parse::{Columns, Format, ParseOptions, Parsed, Parser, Shape};
use crate::pii;
use crate::similar;
use crate::split::{self, Item, Ratios, Split};
use crate::stats::Distribution;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Below this many examples, prompting is the better tool.
pub const TOO_FEW: u64 = 100;
/// Below this many, fine-tuning may work but results may be weak.
pub const FEW: u64 = 500;
/// A category smaller than this share of the largest is "imbalanced".
pub const IMBALANCE_SHARE: f64 = 0.10;
/// Findings kept per code (all are counted).
pub const MAX_FINDINGS_PER_CODE: usize = 1000;
/// Distinct categories counted and split one by one; examples of further
/// categories are split together ([`OTHER_CATEGORIES`]).
pub const MAX_CATEGORIES: usize = 1000;
/// Category names are counted, shown and split by this many characters.
pub const MAX_CATEGORY_CHARS: usize = 100;
/// The split's category id shared by the categories past [`MAX_CATEGORIES`]
/// (`u32::MAX` is "no category").
const OTHER_CATEGORIES: u32 = u32::MAX - 1;

/// Token lengths from the base model's tokenizer and chat template.
pub trait Measure: Sync {
    /// `(all tokens, assistant tokens)` of one example as training sees it,
    /// or why the model's chat template refused the example.
    fn measure(&self, example: &Example) -> Result<(u32, u32), String>;
}

/// What lengths are counted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Tokens,
    Characters,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Options {
    pub parse: ParseOptions,
    /// The base model's context length in tokens (needs a [`Measure`]).
    pub max_tokens: Option<u32>,
}

impl Options {
    pub fn with_columns(mut self, columns: Columns) -> Options {
        self.parse.columns = Some(columns);
        self
    }
}

/// "Should you fine-tune?" in one word and a sentence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advice {
    pub verdict: Verdict,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    TryPromptingFirst,
    MayBeWeak,
    GoodToTrain,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub unit: Option<Unit>,
    pub messages_per_example: Distribution,
    pub length: Distribution,
    pub assistant_length: Distribution,
    pub duplicates: u64,
    pub near_duplicates: u64,
    pub personal_data: BTreeMap<pii::Kind, u64>,
    pub categories: BTreeMap<String, u64>,
}

/// Everything a person (or the server) needs to know about a file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub format: Option<Format>,
    pub shape: Option<Shape>,
    pub bytes: u64,
    pub lines: u64,
    /// CSV/TSV: the header row, for choosing columns.
    pub columns: Option<Vec<String>>,
    /// Examples without errors: these are what a split contains.
    pub examples: u64,
    /// Records with at least one error (dropped if the user chooses).
    pub rejected: u64,
    pub errors: u64,
    pub warnings: u64,
    /// Findings per code, all of them counted.
    pub counts: BTreeMap<Code, u64>,
    /// The findings, by line; at most [`MAX_FINDINGS_PER_CODE`] per code.
    pub findings: Vec<Finding>,
    pub stats: Stats,
    pub advice: Advice,
    /// For the split: one item per kept example, in file order.
    #[serde(skip)]
    pub items: Vec<Item>,
}

impl Report {
    /// Whether anything blocks the upload as it is.
    pub fn has_errors(&self) -> bool {
        self.errors > 0
    }

    /// The split of the kept examples (file order), for [`SplitWriter`].
    pub fn plan(&self, seed: u64, ratios: Ratios) -> Vec<Split> {
        split::assign(&self.items, seed, ratios)
    }

    /// Examples per split for a plan.
    pub fn split_counts(plan: &[Split]) -> [u64; 3] {
        let mut c = [0u64; 3];
        for s in plan {
            c[*s as usize] += 1;
        }
        c
    }
}

/// Per kept example, what the end-of-file checks need besides its
/// duplicate keys (those live in their own vector, handed to
/// `similar::find` as they are, without a copy).
struct Kept {
    line: u64,
    category: u32,
}

/// The incremental checker.
pub struct Checker<'m> {
    opts: Options,
    measure: Option<&'m dyn Measure>,
    parser: Parser,
    scratch: Vec<Parsed>,
    kept: Vec<Kept>,
    /// Per kept example: exact key and MinHash signature.
    keys: Vec<(u64, Option<similar::Signature>)>,
    rejected: u64,
    counts: BTreeMap<Code, u64>,
    findings: Vec<Finding>,
    stats: Stats,
    /// Category name (cut to [`MAX_CATEGORY_CHARS`]) → split id.
    categories: HashMap<String, u32>,
    /// Which caps have been reported (once per file each).
    noted_long_category: bool,
    noted_many_categories: bool,
    messages: Vec<u32>,
    lengths: Vec<u32>,
    assistant_lengths: Vec<u32>,
}

impl<'m> Checker<'m> {
    pub fn new(opts: Options, measure: Option<&'m dyn Measure>) -> Checker<'m> {
        Checker {
            parser: Parser::new(opts.parse.clone()),
            opts,
            measure,
            scratch: Vec::new(),
            kept: Vec::new(),
            keys: Vec::new(),
            rejected: 0,
            counts: BTreeMap::new(),
            findings: Vec::new(),
            stats: Stats::default(),
            categories: HashMap::new(),
            noted_long_category: false,
            noted_many_categories: false,
            messages: Vec::new(),
            lengths: Vec::new(),
            assistant_lengths: Vec::new(),
        }
    }

    /// Bytes consumed so far (for progress).
    pub fn bytes(&self) -> u64 {
        self.parser.bytes()
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        let mut parsed = std::mem::take(&mut self.scratch);
        self.parser.feed(chunk, &mut parsed);
        self.absorb(&mut parsed);
        self.scratch = parsed;
    }

    fn note(&mut self, f: Finding) {
        let n = self.counts.entry(f.code).or_insert(0);
        *n += 1;
        if *n as usize <= MAX_FINDINGS_PER_CODE {
            self.findings.push(f);
        }
    }

    fn absorb(&mut self, parsed: &mut Vec<Parsed>) {
        for p in parsed.drain(..) {
            match p {
                Parsed::Finding(f) => {
                    // An over-long line is an example that was dropped.
                    if f.code == Code::LineTooLong {
                        self.rejected += 1;
                    }
                    self.note(f);
                }
                Parsed::Record {
                    line,
                    normalised,
                    head,
                } => {
                    // Excerpts are made only where a finding shows one.
                    let mut excerpt = None;
                    for mut f in normalised.findings {
                        f.excerpt = Some(
                            excerpt
                                .get_or_insert_with(|| crate::parse::excerpt(&head))
                                .clone(),
                        );
                        self.note(f);
                    }
                    // Past the record's cap, findings are only counted.
                    for (code, n) in normalised.more {
                        *self.counts.entry(code).or_insert(0) += n;
                    }
                    match normalised.example {
                        Some(ex) => self.keep(line, &ex, &head),
                        None => self.rejected += 1,
                    }
                }
            }
        }
    }

    fn keep(&mut self, line: u64, ex: &Example, head: &[u8]) {
        let text = ex.text();
        let hits = pii::scan(&text);
        if !hits.is_empty() {
            // Each kind once per example, however often and wherever it occurs.
            let mut kinds: Vec<pii::Kind> = hits.iter().map(|h| h.kind).collect();
            kinds.sort_unstable();
            kinds.dedup();
            for k in &kinds {
                *self.stats.personal_data.entry(*k).or_insert(0) += 1;
            }
            let labels: Vec<&str> = kinds.iter().map(|k| k.label()).collect();
            let mut f = Finding::new(Code::PersonalData, format!("Line {line} seems to contain {}.", labels.join(", ")), "Remove or replace personal data (e.g. with [EMAIL]) unless the model must learn it.").at(line);
            f.excerpt = Some(crate::parse::excerpt(head));
            self.note(f);
        }
        let (tokens, assistant) = match self.measure {
            Some(m) => match m.measure(ex) {
                Ok(counts) => counts,
                Err(why) => {
                    let mut f = Finding::new(Code::ChatTemplate, format!("The model's chat template cannot render the example on line {line}: {why}"), "Change the example so it fits the chosen model's conversation format (roles and their order), or choose another model.").at(line);
                    f.excerpt = Some(crate::parse::excerpt(head));
                    self.note(f);
                    self.rejected += 1;
                    return;
                }
            },
            None => {
                let chars = |assistant_only: bool| {
                    ex.messages
                        .iter()
                        .filter(|m| !assistant_only || m.role == "assistant")
                        .map(|m| m.content.as_deref().map_or(0, |c| c.chars().count()))
                        .sum::<usize>() as u32
                };
                (chars(false), chars(true))
            }
        };
        if let (Some(max), Some(_)) = (self.opts.max_tokens, self.measure) {
            if tokens > max {
                let mut f = Finding::new(Code::TooLong, format!("The example on line {line} has {tokens} tokens; the model reads at most {max}."), "Shorten it or split it into several examples; otherwise training cuts it off.").at(line);
                f.excerpt = Some(crate::parse::excerpt(head));
                self.note(f);
                self.rejected += 1;
                return;
            }
        }
        let category = match &ex.category {
            Some(c) => self.category(c, line),
            None => u32::MAX,
        };
        self.messages.push(ex.messages.len() as u32);
        self.lengths.push(tokens);
        self.assistant_lengths.push(assistant);
        self.kept.push(Kept { line, category });
        self.keys
            .push((similar::exact_key(&text), similar::signature(&text)));
    }

    /// The split id of an example's category, counting it in the stats.
    /// Names are cut to [`MAX_CATEGORY_CHARS`]; past [`MAX_CATEGORIES`]
    /// distinct ones, the rest share one id and are not counted by name.
    fn category(&mut self, name: &str, line: u64) -> u32 {
        let name = crate::finding::cut(name, MAX_CATEGORY_CHARS);
        if matches!(name, std::borrow::Cow::Owned(_)) && !self.noted_long_category {
            self.noted_long_category = true;
            self.note(Finding::new(Code::LimitReached, format!("The category on line {line} is longer than {MAX_CATEGORY_CHARS} characters: categories are counted and split by their first {MAX_CATEGORY_CHARS} characters."), "Use short category names, such as billing or login.").at(line));
        }
        if let Some(&id) = self.categories.get(name.as_ref()) {
            if let Some(n) = self.stats.categories.get_mut(name.as_ref()) {
                *n += 1;
            }
            return id;
        }
        if self.categories.len() >= MAX_CATEGORIES {
            if !self.noted_many_categories {
                self.noted_many_categories = true;
                self.note(Finding::new(Code::LimitReached, format!("The file has more than {MAX_CATEGORIES} categories (the {}st is on line {line}): the first {MAX_CATEGORIES} are counted and split one by one, the rest are split together.", MAX_CATEGORIES + 1), "Check the category column: a category is a label shared by many examples, such as billing or login, not a text of its own.").at(line));
            }
            return OTHER_CATEGORIES;
        }
        let id = self.categories.len() as u32;
        self.categories.insert(name.clone().into_owned(), id);
        self.stats.categories.insert(name.into_owned(), 1);
        id
    }

    pub fn finish(mut self) -> Report {
        let mut parsed = std::mem::take(&mut self.scratch);
        self.parser.finish(&mut parsed);
        self.absorb(&mut parsed);

        let (mut groups, pairs) = similar::find(&self.keys);
        for p in &pairs {
            let (earlier, later) = (
                self.kept[p.earlier as usize].line,
                self.kept[p.later as usize].line,
            );
            let f = if p.exact {
                self.stats.duplicates += 1;
                Finding::new(Code::Duplicate, format!("Line {later} repeats the example on line {earlier}."), "Remove the repeat: duplicates make the model over-learn them (they are kept in the same split).")
            } else {
                self.stats.near_duplicates += 1;
                Finding::new(Code::NearDuplicate, format!("Line {later} is nearly the same as line {earlier}."), "Check whether both are needed; near-copies add little and are kept in the same split.")
            };
            self.note(f.at(later));
        }
        let n = self.kept.len() as u64;
        if n > 0 && n < TOO_FEW {
            self.note(Finding::new(Code::TooFewExamples, format!("Only {n} usable examples."), "With fewer than 100 examples, write a good prompt with a few examples in it instead; fine-tuning pays from about 500."));
        } else if (TOO_FEW..FEW).contains(&n) {
            self.note(Finding::new(
                Code::FewExamples,
                format!("{n} usable examples: fine-tuning may work, but results may be weak."),
                "Aim for 500 or more varied examples.",
            ));
        }
        if self.stats.categories.len() >= 2 {
            let largest = self.stats.categories.values().max().copied().unwrap_or(0);
            let (smallest_name, smallest) = self
                .stats
                .categories
                .iter()
                .min_by_key(|(_, c)| **c)
                .map(|(n, c)| (n.clone(), *c))
                .unwrap_or_default();
            if (smallest as f64) < IMBALANCE_SHARE * largest as f64 {
                self.note(Finding::new(Code::CategoryImbalance, format!("The category \"{smallest_name}\" has {smallest} examples, under a tenth of the largest ({largest})."), "Add examples to the small categories, or expect the model to be weaker on them."));
            }
        }
        // Categories: stable ids in name order are not needed for the split
        // (each category is split on its own), only distinct ones.
        let items: Vec<Item> = self
            .kept
            .iter()
            .zip(&self.keys)
            .enumerate()
            .map(|(i, (k, (exact, _)))| Item {
                group: groups.of(i as u32),
                category: k.category,
                key: *exact,
            })
            .collect();

        // Stable: findings on one line stay in the order the rules found them.
        self.findings.sort_by_key(|f| f.line.unwrap_or(0));
        let errors = self
            .counts
            .iter()
            .filter(|(c, _)| c.severity() == Severity::Error)
            .map(|(_, n)| n)
            .sum();
        let warnings = self
            .counts
            .iter()
            .filter(|(c, _)| c.severity() == Severity::Warning)
            .map(|(_, n)| n)
            .sum();
        let advice = advice(n);
        self.stats.unit = Some(if self.measure.is_some() {
            Unit::Tokens
        } else {
            Unit::Characters
        });
        self.stats.messages_per_example = Distribution::of(self.messages);
        self.stats.length = Distribution::of(self.lengths);
        self.stats.assistant_length = Distribution::of(self.assistant_lengths);
        Report {
            format: self.parser.format(),
            shape: self.parser.shape(),
            bytes: self.parser.bytes(),
            lines: self.parser.lines(),
            columns: self.parser.header().map(<[String]>::to_vec),
            examples: n,
            rejected: self.rejected,
            errors,
            warnings,
            counts: self.counts,
            findings: self.findings,
            stats: self.stats,
            advice,
            items,
        }
    }
}

fn advice(n: u64) -> Advice {
    if n < TOO_FEW {
        Advice { verdict: Verdict::TryPromptingFirst, message: format!("{n} examples is too few to fine-tune well. Try a good prompt with a handful of these examples first; come back with 500 or more.") }
    } else if n < FEW {
        Advice { verdict: Verdict::MayBeWeak, message: format!("{n} examples can work for a narrow task, but results may be weak. 500 or more is where fine-tuning pays.") }
    } else {
        Advice {
            verdict: Verdict::GoodToTrain,
            message: format!("{n} examples: enough to fine-tune."),
        }
    }
}

/// Checks a whole in-memory file (tests, small files, the CLI on a buffer).
pub fn check_bytes(bytes: &[u8], opts: Options, measure: Option<&dyn Measure>) -> Report {
    let mut c = Checker::new(opts, measure);
    c.feed(bytes);
    c.finish()
}

/// The second pass: re-reads the file and writes each kept example, as a
/// normalised JSONL line, to its split.
pub struct SplitWriter<'m> {
    parser: Parser,
    plan: Vec<Split>,
    measure: Option<&'m dyn Measure>,
    max_tokens: Option<u32>,
    next: usize,
    scratch: Vec<Parsed>,
}

impl<'m> SplitWriter<'m> {
    /// `plan` is [`Report::plan`] of the same file with the same options.
    pub fn new(
        opts: Options,
        measure: Option<&'m dyn Measure>,
        plan: Vec<Split>,
    ) -> SplitWriter<'m> {
        SplitWriter {
            parser: Parser::new(opts.parse),
            plan,
            measure,
            max_tokens: opts.max_tokens,
            next: 0,
            scratch: Vec::new(),
        }
    }

    /// Parses `chunk`; `emit(split, line)` receives each example's line
    /// (with its trailing newline).
    pub fn feed(&mut self, chunk: &[u8], emit: &mut dyn FnMut(Split, &str)) {
        let mut parsed = std::mem::take(&mut self.scratch);
        self.parser.feed(chunk, &mut parsed);
        self.route(&mut parsed, emit);
        self.scratch = parsed;
    }

    pub fn finish(mut self, emit: &mut dyn FnMut(Split, &str)) {
        let mut parsed = std::mem::take(&mut self.scratch);
        self.parser.finish(&mut parsed);
        self.route(&mut parsed, emit);
    }

    fn route(&mut self, parsed: &mut Vec<Parsed>, emit: &mut dyn FnMut(Split, &str)) {
        for p in parsed.drain(..) {
            let Parsed::Record {
                normalised:
                    crate::example::Normalised {
                        example: Some(ex), ..
                    },
                ..
            } = p
            else {
                continue;
            };
            // Skips exactly what the checker rejected: template refusals
            // and (with a context length) over-long examples.
            if let Some(m) = self.measure {
                match m.measure(&ex) {
                    Err(_) => continue,
                    Ok((tokens, _)) if self.max_tokens.is_some_and(|max| tokens > max) => continue,
                    Ok(_) => {}
                }
            }
            let Some(split) = self.plan.get(self.next) else {
                continue;
            };
            self.next += 1;
            let mut line = ex.to_json_line();
            line.push('\n');
            emit(*split, &line);
        }
    }
}
