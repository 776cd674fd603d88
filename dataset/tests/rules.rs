//! One test per rule, through the public API, with snapshot expectations:
//! each finding as `line:offset code [field] message`.

use expect_test::{expect, Expect};
use hone_dataset::{check_bytes, Options, Report};

fn render(r: &Report) -> String {
    let mut out = String::new();
    for f in &r.findings {
        let line = f.line.map_or("-".into(), |l| l.to_string());
        let offset = f.offset.map_or(String::new(), |o| format!("@{o}"));
        let field = f
            .field
            .as_deref()
            .map_or(String::new(), |x| format!(" [{x}]"));
        out.push_str(&format!("{line}{offset} {}{field} {}\n", f.code, f.message));
    }
    out.push_str(&format!(
        "examples={} rejected={} errors={} warnings={}\n",
        r.examples, r.rejected, r.errors, r.warnings
    ));
    out
}

/// Checks `input` and compares the findings, ignoring the advice about
/// dataset size (tested on its own).
fn check(input: &str, expected: Expect) {
    let r = check_bytes(input.as_bytes(), Options::default(), None);
    let text: String = render(&r)
        .lines()
        .filter(|l| !l.contains("too_few_examples"))
        .map(|l| format!("{l}\n"))
        .collect();
    expected.assert_eq(&text);
}

const OK: &str =
    r#"{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"}]}"#;

#[test]
fn a_clean_openai_file_has_no_findings() {
    check(
        &format!("{OK}\n{OK2}\n", OK2 = OK.replace("Hi", "Hey")),
        expect![[r#"
        examples=2 rejected=0 errors=0 warnings=1
    "#]],
    );
}

#[test]
fn openai_data_preparation_rules() {
    let input = [
        r#"{"prompt": "x"}"#,
        r#"[1, 2]"#,
        r#"{"messages": []}"#,
        r#"{"messages": ["hi"]}"#,
        r#"{"messages": [{"content": "x"}, {"role": "assistant", "content": "y"}]}"#,
        r#"{"messages": [{"role": "user"}, {"role": "assistant", "content": "y"}]}"#,
        r#"{"messages": [{"role": "user", "content": "x", "mood": "happy"}, {"role": "assistant", "content": "y"}]}"#,
        r#"{"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]}"#,
        r#"{"messages": [{"role": "user", "content": 42}, {"role": "assistant", "content": "y"}]}"#,
        r#"{"messages": [{"role": "user", "content": "only a question"}]}"#,
        r#"{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y", "weight": 2}]}"#,
    ]
    .join("\n");
    check(
        &input,
        expect![[r#"
        1 messages_missing [messages] This example has no `messages` list.
        2 not_object Line 2 is a list, not a JSON object.
        3 messages_empty [messages] `messages` is empty or is not a list.
        4 message_not_object [messages[0]] Message 1 is not an object.
        5 missing_role [messages[0].role] Message 1 has no `role`.
        6 missing_content [messages[0].content] The user message 1 has no `content`.
        7 unknown_message_key [messages[0].mood] Message 1 has a field `mood` that chat fine-tuning does not know.
        8 unknown_role [messages[0].role] Message 1 has the role "robot", which is not one of system, user, assistant, tool.
        9 content_not_string [messages[0].content] The content of message 1 is not text.
        10 no_assistant [messages] This example has no assistant message, so there is nothing to learn.
        11 invalid_weight [messages[1].weight] Message 2 has a `weight` that is not 0 or 1 on an assistant message.
        examples=0 rejected=11 errors=11 warnings=0
    "#]],
    );
}

#[test]
fn role_order_and_empty_content() {
    let input = [
        r#"{"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}, {"role": "assistant", "content": "c"}]}"#,
        r#"{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]}"#,
        r#"{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]}"#,
        r#"{"messages": [{"role": "user", "content": "   "}, {"role": "assistant", "content": "b"}]}"#,
    ]
    .join("\n");
    check(
        &input,
        expect![[r#"
        1 system_not_first [messages[1]] Message 2 is a system message, but only the first message may be one.
        2 roles_not_alternating [messages] Two user or two assistant messages follow each other.
        3 last_not_assistant [messages] The conversation does not end with an assistant reply; the last turn teaches nothing.
        4 empty_content [messages[0].content] The user message 1 is empty.
        examples=2 rejected=2 errors=2 warnings=3
    "#]],
    );
}

#[test]
fn tool_calls_and_weights_are_kept() {
    let line = r#"{"messages": [{"role": "user", "content": "Weather?"}, {"role": "assistant", "tool_calls": [{"id": "1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]}, {"role": "tool", "tool_call_id": "1", "content": "sunny"}, {"role": "assistant", "content": "Sunny.", "weight": 0}, {"role": "user", "content": "Thanks"}, {"role": "assistant", "content": "You're welcome."}]}"#;
    let r = check_bytes(line.as_bytes(), Options::default(), None);
    assert_eq!((r.examples, r.errors), (1, 0), "{}", render(&r));
}

#[test]
fn syntax_encoding_and_layout_problems() {
    let mut input = Vec::new();
    input.extend_from_slice(format!("{OK}\n\n").as_bytes());
    input.extend_from_slice(b"{\"messages\": [{\"role\": \"user\" \"content\": \"x\"}]}\n");
    input.extend_from_slice(b"{\"messages\": [{\"role\": \"user\", \"content\": \"caf\xE9\"}]}\n");
    input.extend_from_slice(OK.replace("Hi", "Hello there").as_bytes());
    let r = check_bytes(&input, Options::default(), None);
    expect![[r#"
        - too_few_examples Only 2 usable examples.
        2 blank_line Line 2 is blank.
        3@117 invalid_json Line 3 is not valid JSON: a comma or a closing } is missing (at byte 117).
        4@181 invalid_utf8 Line 4 has bytes that are not valid UTF-8 text (at byte 181).
        examples=2 rejected=2 errors=2 warnings=2
    "#]].assert_eq(&render(&r));
}

#[test]
fn long_lines_are_refused_without_being_kept() {
    let opts = Options {
        parse: hone_dataset::parse::ParseOptions {
            max_line_bytes: 100,
            columns: None,
        },
        ..Options::default()
    };
    let long = format!(
        r#"{{"messages": [{{"role": "user", "content": "{}"}}]}}"#,
        "x".repeat(500)
    );
    let input = format!("{long}\n{OK}\n");
    // Fed in small chunks: the long line is dropped as it streams.
    let mut c = hone_dataset::Checker::new(opts, None);
    for chunk in input.as_bytes().chunks(7) {
        c.feed(chunk);
    }
    expect![[r#"
        - too_few_examples Only 1 usable examples.
        1@0 line_too_long Line 1 is longer than the 100 bytes limit for one example.
        examples=1 rejected=1 errors=1 warnings=1
    "#]]
    .assert_eq(&render(&c.finish()));
}

#[test]
fn alpaca_json_array_and_jsonl() {
    let array = r#"[
  {"instruction": "Translate to French", "input": "cat", "output": "chat"},
  {"instruction": "Summarise", "output": ""},
  {"instruction": "Name a colour", "output": "Blue", "source": "web"},
  42
]"#;
    check(
        array,
        expect![[r#"
        3 empty_content [output] `output` is empty.
        4 unknown_field [source] The field `source` is not part of the Alpaca format and is ignored.
        5 not_object The array holds a bare value (starting with '4') on line 5, not an object.
        examples=2 rejected=2 errors=2 warnings=2
    "#]],
    );
    let r = check_bytes(
        br#"{"instruction": "Add", "input": "2+2", "output": "4", "system": "Be terse."}"#,
        Options::default(),
        None,
    );
    let ex =
        hone_dataset::SplitWriter::new(Options::default(), None, r.plan(1, Default::default()));
    let mut lines = Vec::new();
    let mut ex = ex;
    ex.feed(
        br#"{"instruction": "Add", "input": "2+2", "output": "4", "system": "Be terse."}"#,
        &mut |_, l| lines.push(l.to_owned()),
    );
    ex.finish(&mut |_, l| lines.push(l.to_owned()));
    expect![[r#"
        {"messages":[{"role":"system","content":"Be terse."},{"role":"user","content":"Add\n\n2+2"},{"role":"assistant","content":"4"}]}
    "#]].assert_eq(&lines.concat());
}

#[test]
fn sharegpt() {
    let input = [
        r#"{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}"#,
        r#"{"conversations": [{"from": "person", "value": "Hi"}, {"from": "gpt"}]}"#,
    ]
    .join("\n");
    check(
        &input,
        expect![[r#"
        2 unknown_role [conversations[0].from] Turn 1 is from "person", which is not human, gpt or system.
        2 missing_content [conversations[1].value] Turn 2 has no `value`.
        examples=1 rejected=1 errors=2 warnings=1
    "#]],
    );
}

#[test]
fn csv_and_tsv_with_detected_and_chosen_columns() {
    check("question,answer,category\n\"Hi, there\",Hello,greeting\n\"Multi\nline\",\"Yes \"\"quoted\"\"\",faq\nbad row\n,empty prompt,faq\n", expect![[r#"
        5 csv_row Row at line 5 has 1 cells; the header has 3.
        6 empty_content [prompt] The prompt cell is empty.
        examples=2 rejected=2 errors=2 warnings=1
    "#]]);
    check(
        "q\ta\nHi\tHello\n",
        expect![[r#"
        1 csv_columns Hone cannot tell which column is the prompt and which is the response. The columns are "q", "a".
        examples=0 rejected=0 errors=1 warnings=0
    "#]],
    );
    let opts = Options::default().with_columns(hone_dataset::Columns {
        prompt: "q".into(),
        response: "a".into(),
        category: None,
    });
    let r = check_bytes(b"q\ta\nHi\tHello\n", opts, None);
    assert_eq!((r.examples, r.errors), (1, 0), "{}", render(&r));
}

#[test]
fn unreadable_files_say_why() {
    let cases: [(&str, &[u8]); 8] = [
        ("empty", b""),
        ("blank", b"\n\n  \n"),
        ("utf16", b"\xFF\xFE{\x00\"\x00m\x00"),
        ("utf16 without bom", b"{\x00\"\x00m\x00e\x00s\x00"),
        ("zip", b"PK\x03\x04\x14\x00\x00\x00"),
        ("prose", b"Dear team here are the examples"),
        ("prose with a comma", b"Dear team, here are the examples"),
        (
            "unclosed array",
            b"[{\"instruction\": \"a\", \"output\": \"b\"}",
        ),
    ];
    let mut out = String::new();
    for (name, bytes) in cases {
        let r = check_bytes(bytes, Options::default(), None);
        for f in r
            .findings
            .iter()
            .filter(|f| f.code.as_str() != "too_few_examples")
        {
            out.push_str(&format!("{name}: {} {} {}\n", f.code, f.message, f.fix));
        }
    }
    expect![[r#"
        empty: empty_file The file is empty. Choose the file that contains your examples.
        blank: empty_file The file contains only blank lines. Choose the file that contains your examples.
        utf16: utf16 This file is saved as UTF-16 text; Hone reads UTF-8. Save it again as "UTF-8" (in Excel: Save As → CSV UTF-8; in a text editor: Encoding → UTF-8).
        utf16 without bom: utf16 This file is saved as UTF-16 text; Hone reads UTF-8. Save it again as "UTF-8" (in Excel: Save As → CSV UTF-8; in a text editor: Encoding → UTF-8).
        zip: binary_file This is a zip archive (perhaps an .xlsx or .docx file), not a text file. Unzip it, or export the spreadsheet as CSV UTF-8, and upload that file.
        prose: unknown_format Hone cannot tell what format this is: it starts with "Dear team here are the examples". Use JSON Lines (one {"messages": […]} object per line; Alpaca and ShareGPT objects work too), a JSON array of such objects, or a CSV/TSV file with a header row such as prompt,response.
        prose with a comma: csv_columns Hone cannot tell which column is the prompt and which is the response. The columns are "Dear team", "here are the examples". Name the columns prompt and response (and optionally category), or choose them in the column-mapping step. If this is not a spreadsheet: Hone reads JSON Lines (one {"messages": […]} object per line), a JSON array of examples, or CSV/TSV with a header row.
        unclosed array: invalid_json The JSON array is not closed: the file ends before its final ]. Check that the file was saved completely and ends with ].
    "#]].assert_eq(&out);
}

#[test]
fn duplicates_personal_data_and_categories() {
    let mut lines = Vec::new();
    let long = "Please explain how to configure the backup schedule so that it runs every night at two and keeps thirty days of history on the shared drive";
    for i in 0..30 {
        lines.push(format!(r#"{{"messages": [{{"role": "user", "content": "Question number {i} about billing"}}, {{"role": "assistant", "content": "Answer {i}"}}], "category": "billing"}}"#));
    }
    lines.push(format!(r#"{{"messages": [{{"role": "user", "content": "{long}"}}, {{"role": "assistant", "content": "Open settings."}}], "category": "backup"}}"#));
    lines.push(format!(r#"{{"messages": [{{"role": "user", "content": "{long}!"}}, {{"role": "assistant", "content": "Open  settings."}}], "category": "backup"}}"#));
    lines.push(r#"{"messages": [{"role": "user", "content": "Question number 0 about billing"}, {"role": "assistant", "content": "Answer 0"}], "category": "billing"}"#.into());
    lines.push(r#"{"messages": [{"role": "user", "content": "Mail me at ada@example.org"}, {"role": "assistant", "content": "Card 4111 1111 1111 1111 noted"}]}"#.into());
    let r = check_bytes(lines.join("\n").as_bytes(), Options::default(), None);
    let mut out = render(&r);
    for f in &r.findings {
        if let Some(e) = f
            .excerpt
            .as_deref()
            .filter(|_| f.code.as_str() == "personal_data")
        {
            out.push_str(&format!("excerpt: {e}\n"));
        }
    }
    out.push_str(&format!(
        "{:?}\n{:?}\n",
        r.stats.personal_data, r.stats.categories
    ));
    expect![[r#"
        - too_few_examples Only 34 usable examples.
        - category_imbalance The category "backup" has 2 examples, under a tenth of the largest (31).
        32 near_duplicate Line 32 is nearly the same as line 31.
        33 duplicate Line 33 repeats the example on line 1.
        34 personal_data Line 34 seems to contain an email address, a payment card number.
        examples=34 rejected=0 errors=0 warnings=5
        excerpt: {"messages": [{"role": "user", "content": "Mail me at •••••••••••••rg"}, {"role": "assistant", "content": "Card •••••••••••••••••11 noted"}]}
        {Email: 1, Card: 1}
        {"backup": 2, "billing": 31}
    "#]].assert_eq(&out);
}

/// `personal_data` counts examples: one that mentions two emails with an
/// IP address between them is one example with an email address.
#[test]
fn personal_data_counts_each_kind_once_per_example() {
    let line = r#"{"messages": [{"role": "user", "content": "ada@example.org on 10.0.0.1, or bob@example.org"}, {"role": "assistant", "content": "Noted."}]}"#;
    let r = check_bytes(line.as_bytes(), Options::default(), None);
    expect![[r#"{Email: 1, IpAddress: 1}"#]].assert_eq(&format!("{:?}", r.stats.personal_data));
}

#[test]
fn advice_follows_the_example_count() {
    let make = |n: usize| {
        (0..n)
            .map(|i| OK.replace("Hi", &format!("Hi {i}")))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let verdict = |n| {
        check_bytes(make(n).as_bytes(), Options::default(), None)
            .advice
            .verdict
    };
    use hone_dataset::check::Verdict::*;
    assert_eq!(
        (verdict(99), verdict(100), verdict(499), verdict(500)),
        (TryPromptingFirst, MayBeWeak, MayBeWeak, GoodToTrain)
    );
}
