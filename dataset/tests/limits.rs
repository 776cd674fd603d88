//! What one record or one file can make the checker keep is bounded:
//! findings per record, the categories tracked (how many, how long), and
//! the strings from the file that findings quote. Each cap, when reached,
//! says so in a `limit_reached` finding; nothing is lost from the counts.

use hone_dataset::check::{MAX_CATEGORIES, MAX_CATEGORY_CHARS};
use hone_dataset::example::MAX_FINDINGS_PER_RECORD;
use hone_dataset::finding::MAX_QUOTED_CHARS;
use hone_dataset::{check_bytes, Code, Options, Ratios, Report};

fn check(input: &str) -> Report {
    check_bytes(input.as_bytes(), Options::default(), None)
}

fn limit_messages(r: &Report) -> Vec<String> {
    r.findings
        .iter()
        .filter(|f| f.code == Code::LimitReached)
        .map(|f| format!("{} {} {}", f.line.unwrap_or(0), f.message, f.fix))
        .collect()
}

/// A record of 5 000 broken messages keeps 100 findings, and counts all.
#[test]
fn one_record_keeps_a_bounded_number_of_findings() {
    let messages = vec!["1"; 5000].join(",");
    let r = check(&format!("{{\"messages\": [{messages}]}}\n"));
    assert_eq!(r.counts.get(&Code::MessageNotObject), Some(&5000));
    let on_line: Vec<_> = r.findings.iter().filter(|f| f.line == Some(1)).collect();
    assert_eq!(on_line.len(), MAX_FINDINGS_PER_RECORD + 1);
    expect_test::expect![[r#"
        [
            "1 Line 1 has more than 100 problems; the first 100 are listed, and all are counted. Fix the ones listed and check the file again to see the rest.",
        ]
    "#]]
    .assert_debug_eq(&limit_messages(&r));
    assert_eq!((r.examples, r.rejected), (0, 1));
    assert_eq!(r.errors, 5000);
}

/// Past 1 000 distinct categories, the rest are split together and not
/// counted by name; every example is still split.
#[test]
fn categories_are_tracked_up_to_a_cap() {
    let file: String = (0..1500)
        .map(|i| {
            format!(
                "{{\"messages\": [{{\"role\": \"user\", \"content\": \"Question {i}\"}}, {{\"role\": \"assistant\", \"content\": \"Answer {i}\"}}], \"category\": \"c{i}\"}}\n"
            )
        })
        .collect();
    let r = check(&file);
    assert_eq!(r.stats.categories.len(), MAX_CATEGORIES);
    assert_eq!(r.examples, 1500);
    assert_eq!(r.plan(1, Ratios::default()).len(), 1500);
    expect_test::expect![[r#"
        [
            "1001 The file has more than 1000 categories (the 1001st is on line 1001): the first 1000 are counted and split one by one, the rest are split together. Check the category column: a category is a label shared by many examples, such as billing or login, not a text of its own.",
        ]
    "#]]
    .assert_debug_eq(&limit_messages(&r));
}

/// A long category name is cut: counted, shown and split under its start.
#[test]
fn category_names_are_cut_to_a_cap() {
    let long = "x".repeat(300);
    let line = |c: &str, i: u32| {
        format!(
            "{{\"messages\": [{{\"role\": \"user\", \"content\": \"Q {i}\"}}, {{\"role\": \"assistant\", \"content\": \"A {i}\"}}], \"category\": \"{c}\"}}\n"
        )
    };
    let file = format!(
        "{}{}{}",
        line(&long, 1),
        line(&format!("{long}y"), 2),
        line("short", 3)
    );
    let r = check(&file);
    let names: Vec<(usize, u64)> = r
        .stats
        .categories
        .iter()
        .map(|(name, n)| (name.chars().count(), *n))
        .collect();
    assert_eq!(names, [(5, 1), (MAX_CATEGORY_CHARS + 1, 2)]);
    assert!(r.stats.categories.keys().any(|k| k.ends_with("x…")));
    expect_test::expect![[r#"
        [
            "1 The category on line 1 is longer than 100 characters: categories are counted and split by their first 100 characters. Use short category names, such as billing or login.",
        ]
    "#]]
    .assert_debug_eq(&limit_messages(&r));
}

/// Names and values from the file are quoted in findings only in part.
#[test]
fn findings_quote_at_most_a_few_words_of_the_file() {
    let key = "k".repeat(10_000);
    let role = format!("{{\"nested\": \"{}\"}}", "r".repeat(10_000));
    let file = format!(
        "{{\"messages\": [{{\"role\": \"user\", \"content\": \"x\", \"{key}\": 1}}, {{\"role\": {role}, \"content\": \"y\"}}]}}\n\
         {{\"conversations\": [{{\"from\": \"{key}\", \"value\": \"x\"}}]}}\n"
    );
    let r = check(&file);
    let long: Vec<String> = r
        .findings
        .iter()
        .filter(|f| {
            f.message.chars().count() > MAX_QUOTED_CHARS + 200
                || f.field
                    .as_ref()
                    .is_some_and(|x| x.chars().count() > MAX_QUOTED_CHARS + 20)
        })
        .map(|f| {
            format!(
                "{} {}",
                f.code,
                f.message.chars().take(100).collect::<String>()
            )
        })
        .collect();
    assert_eq!(long, Vec::<String>::new());
    let codes: Vec<Code> = r.findings.iter().map(|f| f.code).collect();
    assert!(codes.contains(&Code::UnknownMessageKey), "{codes:?}");
    assert_eq!(
        codes.iter().filter(|c| **c == Code::UnknownRole).count(),
        2,
        "{codes:?}"
    );

    let alpaca = format!("{{\"instruction\": \"x\", \"output\": \"y\", \"{key}\": 1}}\n");
    let r = check(&alpaca);
    let f = r
        .findings
        .iter()
        .find(|f| f.code == Code::UnknownField)
        .unwrap();
    assert!(
        f.message.chars().count() < MAX_QUOTED_CHARS + 100,
        "{}",
        f.message
    );
    assert!(f.field.as_ref().unwrap().chars().count() <= MAX_QUOTED_CHARS + 1);
}

/// A header of 5 000 unknown columns is listed in part.
#[test]
fn unknown_columns_are_listed_in_part() {
    let header: Vec<String> = (0..5000).map(|i| format!("column number {i}")).collect();
    let r = check(&format!("{}\nx\n", header.join(",")));
    let f = r
        .findings
        .iter()
        .find(|f| f.code == Code::CsvColumns)
        .unwrap();
    assert!(f.message.len() < 1000, "{} bytes", f.message.len());
    assert!(
        f.message.ends_with("and 4980 more."),
        "{}",
        &f.message[f.message.len() - 100..]
    );
}
