//! Incremental parsing: bytes in (any chunking), records out, each already
//! normalised. Detects the format from the first bytes. Holds at most one
//! line (or one JSON-array element) in memory, never the file.

use crate::example::{self, Normalised};
use crate::finding::{quoted, Code, Finding};
use crate::pii;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How examples are written in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per line (OpenAI chat, Alpaca or ShareGPT records).
    Jsonl,
    /// One JSON array of such objects.
    JsonArray,
    Csv,
    Tsv,
}

impl Format {
    pub fn label(self) -> &'static str {
        match self {
            Format::Jsonl => "JSON Lines",
            Format::JsonArray => "JSON array",
            Format::Csv => "CSV",
            Format::Tsv => "TSV",
        }
    }
}

/// Which record shape the examples use (JSON formats).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    OpenAi,
    Alpaca,
    ShareGpt,
    Columns,
}

/// Which CSV columns hold the prompt, the response and the category.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Columns {
    pub prompt: String,
    pub response: String,
    pub category: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ParseOptions {
    /// Lines (and JSON-array elements) longer than this are refused.
    pub max_line_bytes: usize,
    /// CSV columns chosen by the user; detected by name when absent.
    pub columns: Option<Columns>,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            max_line_bytes: 8 * 1024 * 1024,
            columns: None,
        }
    }
}

/// One parsed record, or a finding about the file itself.
#[derive(Debug)]
pub enum Parsed {
    Record {
        line: u64,
        normalised: Normalised,
        /// The first bytes of the raw record, for an excerpt if a finding
        /// needs one ([`excerpt`] masks personal data).
        head: Vec<u8>,
    },
    Finding(Finding),
}

impl Parsed {
    /// A record that cannot become an example, with the finding that says why.
    fn rejected(line: u64, finding: Finding, head: Vec<u8>) -> Parsed {
        Parsed::Record {
            line,
            normalised: Normalised {
                findings: vec![finding],
                ..Normalised::default()
            },
            head,
        }
    }

    /// A blank line (or row) in a line-based file.
    fn blank(line: u64, fix: &str) -> Parsed {
        Parsed::Finding(
            Finding::new(Code::BlankLine, format!("Line {line} is blank."), fix).at(line),
        )
    }
}

const EXCERPT_CHARS: usize = 160;

/// The first bytes of a record: enough for an excerpt, cheap to copy.
fn head(bytes: &[u8]) -> Vec<u8> {
    bytes[..bytes.len().min(EXCERPT_CHARS * 4)].to_vec()
}

/// The start of a record as shown to people, personal data masked.
pub fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(EXCERPT_CHARS * 4)]);
    let short: String = text.chars().take(EXCERPT_CHARS).collect();
    pii::masked(short.trim_end())
}

const PROMPT_NAMES: [&str; 7] = [
    "prompt",
    "question",
    "input",
    "instruction",
    "query",
    "user",
    "human",
];
const RESPONSE_NAMES: [&str; 7] = [
    "response",
    "answer",
    "output",
    "completion",
    "assistant",
    "reply",
    "gpt",
];
const CATEGORY_NAMES: [&str; 4] = ["category", "label", "topic", "class"];
/// Columns a finding lists by name; the rest are counted.
const MAX_LISTED_COLUMNS: usize = 20;

#[derive(Debug)]
enum State {
    /// Nothing but whitespace seen yet; those bytes are kept to replay.
    Start,
    Jsonl,
    Array(ArrayState),
    Csv(CsvState),
    /// The file cannot be read as examples; the reason was reported.
    Failed,
}

#[derive(Debug, Default)]
struct ArrayState {
    opened: bool,
    closed: bool,
    depth: u32,
    in_string: bool,
    escaped: bool,
    element: Vec<u8>,
    element_line: u64,
    element_offset: u64,
    too_long: bool,
    trailing_reported: bool,
    /// Inside a bare scalar element (already reported): skip to , or ].
    scalar: bool,
}

#[derive(Debug)]
struct CsvState {
    delimiter: u8,
    header: Option<Vec<String>>,
    /// Column indexes: prompt, response, category.
    map: Option<(usize, usize, Option<usize>)>,
    /// A record spanning lines (an open quoted field).
    record: Vec<u8>,
    record_line: u64,
    /// Whether `record` holds an odd number of quotes, kept line by line
    /// so a long record is not counted again on each of its lines.
    open_quote: bool,
}

/// The incremental parser. Feed chunks, then `finish`.
#[derive(Debug)]
pub struct Parser {
    opts: ParseOptions,
    state: State,
    /// Bytes of the current, incomplete line (line-based formats), or in
    /// `Start` the first bytes after leading whitespace, held until there
    /// are enough to tell the format ([`DETECT_BYTES`] and a newline).
    pending: Vec<u8>,
    /// Whether `pending` holds a newline (`Start`), kept chunk by chunk.
    pending_newline: bool,
    /// Lines completed so far.
    line: u64,
    /// Bytes consumed so far.
    offset: u64,
    /// The current line is over the limit: drop bytes up to its end.
    skipping: bool,
    shape: Option<Shape>,
    format: Option<Format>,
    saw_content: bool,
    leading_blank_lines: u64,
    /// The CSV/TSV header row, once read (for the column-mapping step).
    header: Option<Vec<String>>,
}

/// Blank lines before the first record are reported up to this many.
const MAX_REPORTED_LEADING_BLANKS: usize = 1000;
/// The format is told from the first bytes: at least this many (the sample
/// checked for binary data) and the whole first line, so the answer does
/// not depend on how the bytes arrive.
const DETECT_BYTES: usize = 4096;

impl Parser {
    pub fn new(opts: ParseOptions) -> Parser {
        Parser {
            opts,
            state: State::Start,
            pending: Vec::new(),
            pending_newline: false,
            line: 0,
            offset: 0,
            skipping: false,
            shape: None,
            format: None,
            saw_content: false,
            leading_blank_lines: 0,
            header: None,
        }
    }

    pub fn format(&self) -> Option<Format> {
        self.format
    }

    pub fn shape(&self) -> Option<Shape> {
        self.shape
    }

    pub fn bytes(&self) -> u64 {
        self.offset
    }

    /// The CSV/TSV header row, once read.
    pub fn header(&self) -> Option<&[String]> {
        self.header.as_deref()
    }

    pub fn lines(&self) -> u64 {
        self.line
    }

    /// Parses `chunk`, appending records and findings to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Parsed>) {
        if let State::Start = self.state {
            let mut rest = chunk;
            if self.pending.is_empty() {
                // Leading whitespace is counted, not kept.
                let first = chunk.iter().position(|b| !b.is_ascii_whitespace());
                let blank = &chunk[..first.unwrap_or(chunk.len())];
                let newlines = blank.iter().filter(|b| **b == b'\n').count() as u64;
                self.line += newlines;
                self.leading_blank_lines += newlines;
                self.offset += blank.len() as u64;
                let Some(first) = first else { return };
                rest = &chunk[first..];
            }
            self.pending_newline |= rest.contains(&b'\n');
            self.pending.extend_from_slice(rest);
            let enough = self.pending.len() >= DETECT_BYTES && self.pending_newline
                || self.pending.len() > self.opts.max_line_bytes.max(DETECT_BYTES);
            if enough {
                self.start(out);
            }
            return;
        }
        self.dispatch(chunk, out);
    }

    /// Tells the format from the bytes held in `pending` and parses them.
    fn start(&mut self, out: &mut Vec<Parsed>) {
        let head = std::mem::take(&mut self.pending);
        self.pending_newline = false;
        self.detect(&head, out);
        if matches!(self.state, State::Jsonl | State::Csv(_)) {
            for line in (1..=self.leading_blank_lines).take(MAX_REPORTED_LEADING_BLANKS) {
                out.push(Parsed::blank(line, "Delete the empty line."));
            }
        }
        self.dispatch(&head, out);
    }

    fn dispatch(&mut self, chunk: &[u8], out: &mut Vec<Parsed>) {
        match self.state {
            State::Array(_) => self.feed_array(chunk, out),
            State::Jsonl | State::Csv(_) => self.feed_lines(chunk, out),
            State::Start | State::Failed => self.offset += chunk.len() as u64,
        }
    }

    /// Picks the format from the first bytes (`head` starts at the first
    /// non-whitespace byte).
    fn detect(&mut self, head: &[u8], out: &mut Vec<Parsed>) {
        let fail = |s: &mut Parser, out: &mut Vec<Parsed>, f: Finding| {
            out.push(Parsed::Finding(f.at(s.line + 1).offset(s.offset)));
            s.state = State::Failed;
        };
        if head.starts_with(b"PK\x03\x04") {
            return fail(
                self,
                out,
                Finding::new(
                    Code::BinaryFile,
                    "This is a zip archive (perhaps an .xlsx or .docx file), not a text file.",
                    "Unzip it, or export the spreadsheet as CSV UTF-8, and upload that file.",
                ),
            );
        }
        if head.starts_with(&[0x1F, 0x8B]) {
            return fail(
                self,
                out,
                Finding::new(
                    Code::BinaryFile,
                    "This file is gzip-compressed.",
                    "Decompress it (e.g. gunzip) and upload the .jsonl or .csv inside.",
                ),
            );
        }
        if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) || looks_utf16(head) {
            return fail(self, out, Finding::new(Code::Utf16, "This file is saved as UTF-16 text; Hone reads UTF-8.", "Save it again as \"UTF-8\" (in Excel: Save As → CSV UTF-8; in a text editor: Encoding → UTF-8)."));
        }
        let sample = &head[..head.len().min(4096)];
        if sample.contains(&0) {
            return fail(
                self,
                out,
                Finding::new(
                    Code::BinaryFile,
                    "This file contains binary data, not text.",
                    "Upload a text file: JSON Lines (.jsonl), JSON (.json) or CSV (.csv).",
                ),
            );
        }
        let body = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
        let Some(&first) = body.iter().find(|b| !b.is_ascii_whitespace()) else {
            return;
        };
        match first {
            b'{' => {
                self.format = Some(Format::Jsonl);
                self.state = State::Jsonl;
            }
            b'[' => {
                self.format = Some(Format::JsonArray);
                self.state = State::Array(ArrayState::default());
            }
            _ => {
                let header_end = body.iter().position(|b| *b == b'\n').unwrap_or(body.len());
                let header = &body[..header_end];
                let tabs = header.iter().filter(|b| **b == b'\t').count();
                let commas = header.iter().filter(|b| **b == b',').count();
                let delimiter = if tabs > 0 && tabs >= commas {
                    b'\t'
                } else if commas > 0 {
                    b','
                } else {
                    let seen: String = String::from_utf8_lossy(&header[..header.len().min(40)])
                        .chars()
                        .take(40)
                        .collect();
                    return fail(self, out, Finding::new(
                        Code::UnknownFormat,
                        format!("Hone cannot tell what format this is: it starts with \"{}\".", pii::masked(seen.trim())),
                        "Use JSON Lines (one {\"messages\": […]} object per line; Alpaca and ShareGPT objects work too), a JSON array of such objects, or a CSV/TSV file with a header row such as prompt,response.",
                    ));
                };
                self.format = Some(if delimiter == b'\t' {
                    Format::Tsv
                } else {
                    Format::Csv
                });
                self.shape = Some(Shape::Columns);
                self.state = State::Csv(CsvState {
                    delimiter,
                    header: None,
                    map: None,
                    record: Vec::new(),
                    record_line: 0,
                    open_quote: false,
                });
            }
        }
    }

    fn feed_lines(&mut self, mut chunk: &[u8], out: &mut Vec<Parsed>) {
        while !chunk.is_empty() {
            match chunk.iter().position(|b| *b == b'\n') {
                Some(nl) => {
                    let (part, rest) = chunk.split_at(nl + 1);
                    let line_start = self.offset - self.pending.len() as u64;
                    self.offset += part.len() as u64;
                    self.line += 1;
                    if self.skipping {
                        self.skipping = false;
                    } else {
                        let mut line = std::mem::take(&mut self.pending);
                        line.extend_from_slice(&part[..part.len() - 1]);
                        if line.len() > self.opts.max_line_bytes {
                            self.too_long(line_start, out);
                        } else {
                            self.on_line(&line, line_start, out);
                        }
                    }
                    chunk = rest;
                }
                None => {
                    self.offset += chunk.len() as u64;
                    if !self.skipping {
                        if self.pending.len() + chunk.len() > self.opts.max_line_bytes {
                            let line_start =
                                self.offset - chunk.len() as u64 - self.pending.len() as u64;
                            self.pending.clear();
                            self.skipping = true;
                            self.too_long(line_start, out);
                        } else {
                            self.pending.extend_from_slice(chunk);
                        }
                    }
                    chunk = &[];
                }
            }
        }
    }

    fn too_long(&mut self, offset: u64, out: &mut Vec<Parsed>) {
        let limit = self.opts.max_line_bytes;
        out.push(Parsed::Finding(
            Finding::new(
                Code::LineTooLong,
                format!(
                    "Line {} is longer than the {} limit for one example.",
                    self.line + u64::from(self.skipping),
                    human(limit)
                ),
                "Check that each example is on its own line; split or shorten very long examples.",
            )
            .at(self.line + u64::from(self.skipping))
            .offset(offset),
        ));
        self.saw_content = true;
    }

    /// One complete line (without its `\n`), starting at byte `start`.
    fn on_line(&mut self, raw: &[u8], start: u64, out: &mut Vec<Parsed>) {
        if matches!(self.state, State::Failed) {
            return;
        }
        let line_no = self.line;
        let mut line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if start == 0 {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if let State::Csv(_) = self.state {
            return self.on_csv_line(line, line_no, out);
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            out.push(Parsed::blank(line_no, "Delete the empty line."));
            return;
        }
        self.saw_content = true;
        self.on_json(line, line_no, start, out);
    }

    /// One JSON record (a JSONL line or an array element).
    fn on_json(&mut self, bytes: &[u8], line: u64, start: u64, out: &mut Vec<Parsed>) {
        if let Err(e) = std::str::from_utf8(bytes) {
            let at = start + e.valid_up_to() as u64;
            let finding = Finding::new(Code::InvalidUtf8, format!("Line {line} has bytes that are not valid UTF-8 text (at byte {at})."), "Save the file as UTF-8; look for characters pasted from another program around that position.")
                .at(line)
                .offset(at);
            out.push(Parsed::rejected(line, finding, head(bytes)));
            return;
        }
        let value: Value = match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(e) => {
                // serde_json counts lines and columns inside this record.
                let within = byte_of(bytes, e.line(), e.column());
                let at = start + within as u64;
                let err_line = line + e.line().saturating_sub(1) as u64;
                let finding = Finding::new(Code::InvalidJson, format!("Line {err_line} is not valid JSON: {} (at byte {at}).", plain_json_error(&e)), "Check the quotes, commas and brackets near that position; each line must be one complete JSON object.")
                    .at(err_line)
                    .offset(at);
                out.push(Parsed::rejected(line, finding, head(bytes)));
                return;
            }
        };
        let normalised = match &value {
            Value::Object(obj) => {
                let shape = if obj.contains_key("messages") {
                    Shape::OpenAi
                } else if obj.contains_key("conversations") {
                    Shape::ShareGpt
                } else if obj.contains_key("instruction") || obj.contains_key("output") {
                    Shape::Alpaca
                } else {
                    self.shape.unwrap_or(Shape::OpenAi)
                };
                self.shape.get_or_insert(shape);
                match shape {
                    Shape::OpenAi | Shape::Columns => example::from_openai(obj, line),
                    Shape::Alpaca => example::from_alpaca(obj, line),
                    Shape::ShareGpt => example::from_sharegpt(obj, line),
                }
            }
            other => {
                let kind = match other {
                    Value::Array(_) => "a list",
                    Value::String(_) => "a string",
                    Value::Number(_) => "a number",
                    Value::Bool(_) => "true/false",
                    _ => "null",
                };
                Normalised {
                    findings: vec![Finding::new(
                        Code::NotObject,
                        format!("Line {line} is {kind}, not a JSON object."),
                        "Write each example as one object: {\"messages\": [ … ]}.",
                    )
                    .at(line)],
                    ..Normalised::default()
                }
            }
        };
        out.push(Parsed::Record {
            line,
            normalised,
            head: head(bytes),
        });
    }

    fn on_csv_line(&mut self, line: &[u8], line_no: u64, out: &mut Vec<Parsed>) {
        let State::Csv(csv) = &mut self.state else {
            return;
        };
        if csv.record.is_empty() {
            if line.iter().all(u8::is_ascii_whitespace) {
                out.push(Parsed::blank(line_no, "Delete the empty row."));
                return;
            }
            csv.record_line = line_no;
        } else {
            csv.record.push(b'\n');
        }
        csv.record.extend_from_slice(line);
        // An odd number of quotes: a quoted field continues on the next line.
        crate::work::add(line.len());
        let quotes = line.iter().filter(|b| **b == b'"').count();
        csv.open_quote ^= quotes % 2 == 1;
        if csv.open_quote {
            if csv.record.len() > self.opts.max_line_bytes {
                csv.record.clear();
                csv.open_quote = false;
                let start = self.offset;
                self.too_long(start, out);
            }
            return;
        }
        let record = std::mem::take(&mut csv.record);
        let record_line = csv.record_line;
        self.saw_content = true;
        self.on_csv_record(&record, record_line, out);
    }

    fn on_csv_record(&mut self, record: &[u8], line: u64, out: &mut Vec<Parsed>) {
        let State::Csv(csv) = &mut self.state else {
            return;
        };
        let fields: Vec<String> = {
            let mut reader = ::csv::ReaderBuilder::new()
                .has_headers(false)
                .delimiter(csv.delimiter)
                .flexible(true)
                .from_reader(record);
            match reader.byte_records().next() {
                Some(Ok(r)) => r
                    .iter()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect(),
                Some(Err(e)) => {
                    let finding = Finding::new(Code::CsvRow, format!("Row at line {line} cannot be read: {e}."), "Check the quotes in this row: a quote inside a field is written twice (\"\").").at(line);
                    out.push(Parsed::rejected(line, finding, head(record)));
                    return;
                }
                None => return,
            }
        };
        if std::str::from_utf8(record).is_err() {
            out.push(Parsed::rejected(
                line,
                Finding::new(
                    Code::InvalidUtf8,
                    format!("Row at line {line} has bytes that are not valid UTF-8 text."),
                    "Save the file as CSV UTF-8.",
                )
                .at(line),
                head(record),
            ));
            return;
        }
        let Some(header) = &csv.header else {
            let header: Vec<String> = fields.iter().map(|f| f.trim().to_owned()).collect();
            let find = |names: &[&str], chosen: Option<&str>| match chosen {
                Some(c) => header.iter().position(|h| h == c),
                None => header
                    .iter()
                    .position(|h| names.contains(&h.to_lowercase().as_str())),
            };
            let cols = self.opts.columns.clone();
            let prompt = find(&PROMPT_NAMES, cols.as_ref().map(|c| c.prompt.as_str()));
            let response = find(&RESPONSE_NAMES, cols.as_ref().map(|c| c.response.as_str()));
            let category = match cols.as_ref() {
                Some(c) => c
                    .category
                    .as_deref()
                    .and_then(|name| header.iter().position(|h| h == name)),
                None => find(&CATEGORY_NAMES, None),
            };
            match (prompt, response) {
                (Some(p), Some(r)) if p != r => csv.map = Some((p, r, category)),
                _ => {
                    let mut listed = header
                        .iter()
                        .take(MAX_LISTED_COLUMNS)
                        .map(|h| format!("\"{}\"", quoted(h)))
                        .collect::<Vec<_>>()
                        .join(", ");
                    if header.len() > MAX_LISTED_COLUMNS {
                        listed
                            .push_str(&format!(" and {} more", header.len() - MAX_LISTED_COLUMNS));
                    }
                    let known = prompt.is_some() || response.is_some() || category.is_some();
                    let mut fix = String::from("Name the columns prompt and response (and optionally category), or choose them in the column-mapping step.");
                    if !known {
                        fix.push_str(" If this is not a spreadsheet: Hone reads JSON Lines (one {\"messages\": […]} object per line), a JSON array of examples, or CSV/TSV with a header row.");
                    }
                    out.push(Parsed::Finding(Finding::new(Code::CsvColumns, format!("Hone cannot tell which column is the prompt and which is the response. The columns are {listed}."), fix).at(line)));
                    self.header = Some(header);
                    self.state = State::Failed;
                    return;
                }
            }
            csv.header = Some(header.clone());
            self.header = Some(header);
            return;
        };
        let Some((p, r, c)) = csv.map else { return };
        if fields.len() != header.len() {
            out.push(Parsed::rejected(
                line,
                Finding::new(
                    Code::CsvRow,
                    format!(
                        "Row at line {line} has {} cells; the header has {}.",
                        fields.len(),
                        header.len()
                    ),
                    "Check for a missing or extra delimiter, or an unquoted comma inside a cell.",
                )
                .at(line),
                head(record),
            ));
            return;
        }
        let normalised =
            example::from_columns(&fields[p], &fields[r], c.map(|c| fields[c].as_str()), line);
        out.push(Parsed::Record {
            line,
            normalised,
            head: head(record),
        });
    }

    fn feed_array(&mut self, chunk: &[u8], out: &mut Vec<Parsed>) {
        let max = self.opts.max_line_bytes;
        for &b in chunk {
            let offset = self.offset;
            self.offset += 1;
            let State::Array(a) = &mut self.state else {
                return;
            };
            if b == b'\n' {
                self.line += 1;
            }
            let line = self.line + 1;
            if a.closed {
                if !b.is_ascii_whitespace() && !a.trailing_reported {
                    a.trailing_reported = true;
                    out.push(Parsed::Finding(Finding::new(Code::InvalidJson, format!("There is text after the closing ] of the JSON array on line {line}."), "Remove everything after the final ].").at(line).offset(offset)));
                }
                continue;
            }
            if !a.opened {
                if b == b'[' {
                    a.opened = true;
                }
                continue;
            }
            if a.depth == 0 {
                if a.scalar {
                    match b {
                        b',' => a.scalar = false,
                        b']' => a.closed = true,
                        _ => {}
                    }
                    continue;
                }
                match b {
                    b',' => {}
                    b']' => {
                        a.closed = true;
                    }
                    _ if b.is_ascii_whitespace() => {}
                    _ => {
                        a.depth = 1;
                        a.element.clear();
                        a.element.push(b);
                        a.element_line = line;
                        a.element_offset = offset;
                        a.too_long = false;
                        if b == b'"' {
                            a.in_string = true;
                        } else if b != b'{' && b != b'[' {
                            // A bare scalar: ends at the next , or ].
                            a.depth = 0;
                            a.scalar = true;
                            self.array_scalar(b, out);
                        }
                    }
                }
                continue;
            }
            if !a.too_long {
                if a.element.len() >= max {
                    a.too_long = true;
                    a.element.clear();
                    let (l, o) = (a.element_line, a.element_offset);
                    out.push(Parsed::Finding(
                        Finding::new(
                            Code::LineTooLong,
                            format!(
                                "The example starting on line {l} is larger than the {} limit.",
                                human(max)
                            ),
                            "Split or shorten very long examples.",
                        )
                        .at(l)
                        .offset(o),
                    ));
                } else {
                    a.element.push(b);
                }
            }
            if a.in_string {
                if a.escaped {
                    a.escaped = false;
                } else if b == b'\\' {
                    a.escaped = true;
                } else if b == b'"' {
                    a.in_string = false;
                    if a.depth == 1 && a.element.first() == Some(&b'"') {
                        a.depth = 0;
                        let (bytes, l, o) = (
                            std::mem::take(&mut a.element),
                            a.element_line,
                            a.element_offset,
                        );
                        self.saw_content = true;
                        self.on_json(&bytes, l, o, out);
                    }
                }
                continue;
            }
            match b {
                b'"' => a.in_string = true,
                b'{' | b'[' => a.depth += 1,
                b'}' | b']' => {
                    a.depth -= 1;
                    if a.depth == 0 && !a.too_long {
                        let (bytes, l, o) = (
                            std::mem::take(&mut a.element),
                            a.element_line,
                            a.element_offset,
                        );
                        self.saw_content = true;
                        self.on_json(&bytes, l, o, out);
                    }
                }
                _ => {}
            }
        }
    }

    /// A number, `true`, `false` or `null` directly inside the array.
    fn array_scalar(&mut self, first: u8, out: &mut Vec<Parsed>) {
        let line = self.line + 1;
        self.saw_content = true;
        let finding = Finding::new(Code::NotObject, format!("The array holds a bare value (starting with '{}') on line {line}, not an object.", first as char), "Make every element of the array an object such as {\"instruction\": …, \"output\": …}.").at(line);
        out.push(Parsed::rejected(line, finding, Vec::new()));
    }

    /// Ends the input: the last line, and problems only visible at the end.
    pub fn finish(&mut self, out: &mut Vec<Parsed>) {
        if matches!(self.state, State::Start) && !self.pending.is_empty() {
            self.start(out);
        }
        match &mut self.state {
            State::Start => {
                let what = if self.offset == 0 {
                    "The file is empty."
                } else {
                    "The file contains only blank lines."
                };
                out.push(Parsed::Finding(Finding::new(
                    Code::EmptyFile,
                    what,
                    "Choose the file that contains your examples.",
                )));
                return;
            }
            State::Failed => return,
            State::Array(a) => {
                if !a.closed {
                    let line = self.line + 1;
                    let msg = if a.opened {
                        "The JSON array is not closed: the file ends before its final ]."
                    } else {
                        "The file does not contain a JSON array."
                    };
                    out.push(Parsed::Finding(
                        Finding::new(
                            Code::InvalidJson,
                            msg,
                            "Check that the file was saved completely and ends with ].",
                        )
                        .at(line)
                        .offset(self.offset),
                    ));
                }
            }
            State::Jsonl | State::Csv(_) => {
                if !self.pending.is_empty() && !self.skipping {
                    let line = std::mem::take(&mut self.pending);
                    let start = self.offset - line.len() as u64;
                    self.line += 1;
                    self.on_line(&line, start, out);
                }
                if let State::Csv(csv) = &mut self.state {
                    if !csv.record.is_empty() {
                        let line = csv.record_line;
                        csv.record.clear();
                        csv.open_quote = false;
                        out.push(Parsed::Finding(Finding::new(Code::CsvRow, format!("The row starting at line {line} has a quote that is never closed."), "Close the quoted cell with \", or write a quote inside a cell as \"\".").at(line)));
                    }
                }
            }
        }
        if !self.saw_content {
            out.push(Parsed::Finding(Finding::new(
                Code::EmptyFile,
                "The file has no examples.",
                "Add examples, one per line (or one per row below the header).",
            )));
        }
    }
}

/// `8388608` → "8 MiB"; `100` → "100 bytes".
fn human(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// Whether the bytes look like UTF-16 without a byte-order mark (every
/// other byte zero in ASCII text).
fn looks_utf16(head: &[u8]) -> bool {
    let sample = &head[..head.len().min(64)];
    sample.len() >= 4
        && sample
            .iter()
            .skip(1)
            .step_by(2)
            .filter(|b| **b == 0)
            .count()
            * 2
            >= sample.len() / 2
        || sample.len() >= 4
            && sample.iter().step_by(2).filter(|b| **b == 0).count() * 2 >= sample.len() / 2
}

/// The byte index of serde_json's (1-based line, column) within `bytes`.
fn byte_of(bytes: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match bytes[start..].iter().position(|b| *b == b'\n') {
            Some(p) => start += p + 1,
            None => break,
        }
    }
    (start + column.saturating_sub(1)).min(bytes.len())
}

/// serde_json's message in plain words, without its position suffix.
fn plain_json_error(e: &serde_json::Error) -> String {
    let s = e.to_string();
    let bare = match s.rfind(" at line ") {
        Some(i) => &s[..i],
        None => &s,
    };
    let plain = [
        (
            "EOF while parsing",
            "it ends before the JSON is complete (a missing } or \")",
        ),
        (
            "expected ident",
            "there is unquoted text (text values need double quotes)",
        ),
        ("expected value", "a value is missing or not quoted"),
        ("expected `,` or `}`", "a comma or a closing } is missing"),
        ("expected `,` or `]`", "a comma or a closing ] is missing"),
        ("expected `:`", "a colon after a field name is missing"),
        (
            "key must be a string",
            "a field name is not in double quotes",
        ),
        (
            "trailing characters",
            "there is more text after the end of the JSON object",
        ),
        (
            "trailing comma",
            "there is a comma before a closing bracket",
        ),
        (
            "control character",
            "a text value contains a raw line break or tab (write \\n or \\t)",
        ),
        (
            "invalid escape",
            "a backslash starts an invalid escape (write \\\\ for a backslash)",
        ),
    ];
    plain
        .iter()
        .find(|(k, _)| bare.starts_with(k))
        .map_or_else(|| bare.to_owned(), |(_, p)| (*p).to_owned())
}

#[cfg(test)]
mod work_tests {
    use super::*;

    /// A quoted cell over thousands of lines: each line's quotes are
    /// counted once, not the whole record again on every line.
    #[test]
    fn an_open_quote_over_many_lines_is_scanned_once() {
        let mut csv = String::from("prompt,response\n\"a\n");
        for _ in 0..5000 {
            csv.push_str("x\n");
        }
        csv.push_str("\",b\n");
        let mut parser = Parser::new(ParseOptions::default());
        let mut out = Vec::new();
        let ((), steps) = crate::work::count(|| {
            parser.feed(csv.as_bytes(), &mut out);
            parser.finish(&mut out);
        });
        let [Parsed::Record { normalised, .. }] = &out[..] else {
            panic!("one record expected: {out:?}");
        };
        let example = normalised
            .example
            .as_ref()
            .map(|e| e.messages[0].content.clone());
        assert_eq!(example, Some(Some(format!("a\n{}", "x\n".repeat(5000)))));
        let bound = 10 * csv.len() as u64;
        assert!(steps < bound, "{steps} steps for {} bytes", csv.len());
    }

    /// A record dropped for its length leaves no open quote behind: the
    /// rows after it are rows of their own.
    #[test]
    fn an_open_quote_over_the_limit_ends_with_its_record() {
        let csv = "prompt,response\n\"a\nbbbbbbbbbb\ncccccccc\nd,e\n";
        let mut parser = Parser::new(ParseOptions {
            max_line_bytes: 16,
            columns: None,
        });
        let mut out = Vec::new();
        parser.feed(csv.as_bytes(), &mut out);
        parser.finish(&mut out);
        let seen: Vec<String> = out
            .iter()
            .map(|p| match p {
                Parsed::Finding(f) => format!("{} {}", f.line.unwrap_or(0), f.code),
                Parsed::Record {
                    line, normalised, ..
                } => format!(
                    "{line} record {:?}",
                    normalised
                        .example
                        .as_ref()
                        .map(|e| e.messages[0].content.clone())
                ),
            })
            .collect();
        expect_test::expect![[r#"
            [
                "4 line_too_long",
                "5 record Some(Some(\"d\"))",
            ]
        "#]]
        .assert_debug_eq(&seen);
    }
}
