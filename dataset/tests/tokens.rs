//! Token counts with a real tokenizer and chat template: the demo model's
//! files (made by `scripts/make_demo_tokenizer.py`) against the reference
//! ids that Hugging Face's `tokenizers` and Jinja2 produced for them.
#![allow(clippy::unwrap_used)]

use hone_dataset::check::Unit;
use hone_dataset::tokens::{ChatTokenizer, LoadError};
use hone_dataset::{check_bytes, Code, Example, Options, Ratios, Report, Split, SplitWriter};
use serde::Deserialize;

const TOKENIZER: &[u8] = include_bytes!("../../models/hone-demo/tokenizer.json");
const CONFIG: &[u8] = include_bytes!("../../models/hone-demo/tokenizer_config.json");

fn demo() -> ChatTokenizer {
    ChatTokenizer::from_files(TOKENIZER, Some(CONFIG), None).unwrap()
}

#[derive(Deserialize)]
struct Case {
    messages: Vec<hone_dataset::Message>,
    rendered: String,
    ids: Vec<u32>,
    assistant_tokens: usize,
}

#[test]
fn matches_hugging_face_tokenizers_and_jinja2() {
    let cases: Vec<Case> = serde_json::from_str(include_str!("fixtures/demo_tokens.json")).unwrap();
    assert_eq!(cases.len(), 3);
    let t = demo();
    for case in cases {
        let ex = Example {
            messages: case.messages,
            category: None,
        };
        assert_eq!(t.render(&ex).unwrap(), case.rendered);
        let e = t.encode(&ex).unwrap();
        assert_eq!(e.ids, case.ids, "{}", case.rendered);
        assert_eq!(
            e.assistant.iter().filter(|a| **a).count(),
            case.assistant_tokens,
            "{}",
            case.rendered
        );
    }
}

#[test]
fn generation_prompt_ends_with_the_assistant_header() {
    let ex = Example {
        messages: vec![hone_dataset::Message::new("user", "Hi")],
        category: None,
    };
    let prompt = demo().render_prompt(&ex).unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
}

fn line(user: &str, assistant: &str) -> String {
    serde_json::json!({"messages": [
        {"role": "user", "content": user},
        {"role": "assistant", "content": assistant},
    ]})
    .to_string()
}

#[test]
fn counts_are_tokens_and_too_long_examples_are_errors() {
    let t = demo();
    let long = "word ".repeat(300);
    let file = format!(
        "{}\n{}\n{}\n",
        line("What is the capital of France?", "Paris."),
        line("Tell me a long story.", &long),
        line("Thanks", "You are welcome."),
    );
    let opts = Options {
        max_tokens: Some(128),
        ..Options::default()
    };
    let r = check_bytes(file.as_bytes(), opts.clone(), Some(&t));
    assert_eq!(r.stats.unit, Some(Unit::Tokens));
    assert_eq!(r.counts.get(&Code::TooLong), Some(&1));
    let f = r.findings.iter().find(|f| f.code == Code::TooLong).unwrap();
    assert_eq!(f.line, Some(2));
    assert!(f.message.contains("at most 128"), "{}", f.message);
    assert_eq!((r.examples, r.rejected), (2, 1));
    // The first example: the same count `encode` gives.
    let first: Example = Example {
        messages: vec![
            hone_dataset::Message::new("user", "What is the capital of France?"),
            hone_dataset::Message::new("assistant", "Paris."),
        ],
        category: None,
    };
    let n = t.encode(&first).unwrap().ids.len() as u32;
    assert_eq!(r.stats.length.min, n);
    assert!(r.stats.assistant_length.min > 0 && r.stats.assistant_length.min < n);

    // The split writer leaves out exactly what the check rejected.
    let mut lines = Vec::new();
    let mut w = SplitWriter::new(opts, Some(&t), r.plan(7, Ratios::new(100, 0, 0).unwrap()));
    w.feed(file.as_bytes(), &mut |s, l| lines.push((s, l.to_owned())));
    w.finish(&mut |s, l| lines.push((s, l.to_owned())));
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|(s, _)| *s == Split::Train));
    assert!(!lines.iter().any(|(_, l)| l.contains("long story")));
}

#[test]
fn a_template_that_refuses_an_example_is_a_finding_with_its_message() {
    let template = "{% for m in messages %}{% if m['role'] == 'system' %}\
        {{ raise_exception('System role not supported') }}{% endif %}\
        {{ m['content'] }}{% endfor %}";
    let t = ChatTokenizer::from_files(TOKENIZER, Some(CONFIG), Some(template)).unwrap();
    let file = format!(
        "{}\n{}\n",
        line("Hello", "Hi there."),
        serde_json::json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi."},
        ]}),
    );
    let r: Report = check_bytes(file.as_bytes(), Options::default(), Some(&t));
    assert_eq!(r.counts.get(&Code::ChatTemplate), Some(&1));
    let f = r
        .findings
        .iter()
        .find(|f| f.code == Code::ChatTemplate)
        .unwrap();
    assert_eq!(f.line, Some(2));
    assert!(
        f.message.contains("System role not supported"),
        "{}",
        f.message
    );
    assert_eq!((r.examples, r.rejected), (1, 1));
}

/// The `chat_template` findings of a file of two short examples.
fn template_findings(template: &str) -> (Report, Vec<String>) {
    let t = ChatTokenizer::from_files(TOKENIZER, Some(CONFIG), Some(template)).unwrap();
    let file = format!("{}\n{}\n", line("Hello", "Hi there."), line("Bye", "Bye."));
    let r = check_bytes(file.as_bytes(), Options::default(), Some(&t));
    let messages = r
        .findings
        .iter()
        .filter(|f| f.code == Code::ChatTemplate)
        .map(|f| format!("{} {}", f.line.unwrap_or(0), f.message))
        .collect();
    (r, messages)
}

/// A template that would loop for ages (10^15 steps) runs out of fuel:
/// a `chat_template` finding per example, and the same error for the
/// engine, never a hang.
#[test]
fn a_template_that_loops_without_end_is_stopped_with_a_finding() {
    let template = "{% for i in range(100000) %}{% for j in range(100000) %}\
        {% for k in range(100000) %}{% endfor %}{% endfor %}{% endfor %}";
    let (r, messages) = template_findings(template);
    expect_test::expect![[r#"
        [
            "1 The model's chat template cannot render the example on line 1: the chat template does too much work for this example (more than 1052672 steps): it may loop without end",
            "2 The model's chat template cannot render the example on line 2: the chat template does too much work for this example (more than 1052672 steps): it may loop without end",
        ]
    "#]]
    .assert_debug_eq(&messages);
    assert_eq!((r.examples, r.rejected), (0, 2));
    let t = ChatTokenizer::from_files(TOKENIZER, Some(CONFIG), Some(template)).unwrap();
    let ex = Example {
        messages: vec![hone_dataset::Message::new("user", "Hi")],
        category: None,
    };
    let err = t.render_prompt(&ex).unwrap_err();
    assert!(err.contains("too much work"), "{err}");
    // However the loop is wrapped: in a macro, a captured block, a filter.
    let nested = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
    for template in [
        format!("{{% macro f() %}}{nested}{{% endmacro %}}{{{{ f() }}}}"),
        format!("{{% set x %}}{nested}{{% endset %}}{{{{ x }}}}"),
        format!("{{% filter upper %}}{nested}{{% endfilter %}}"),
        "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}".to_owned(),
    ] {
        let t = ChatTokenizer::from_files(TOKENIZER, Some(CONFIG), Some(&template)).unwrap();
        let err = t.render(&ex).unwrap_err();
        assert!(
            err.contains("too much work") || err.contains("recursion"),
            "{template}: {err}"
        );
    }
}

/// A template that writes far more than the example holds (20 MB for a
/// line of 100 bytes) is stopped at the output cap.
#[test]
fn a_template_that_writes_without_end_is_stopped_with_a_finding() {
    let (r, messages) =
        template_findings("{% for i in range(2000) %}{{ 'x' * 10000 }}{% endfor %}");
    expect_test::expect![[r#"
        [
            "1 The model's chat template cannot render the example on line 1: the chat template writes more than 1 MiB for this example",
            "2 The model's chat template cannot render the example on line 2: the chat template writes more than 1 MiB for this example",
        ]
    "#]]
    .assert_debug_eq(&messages);
    assert_eq!((r.examples, r.rejected), (0, 2));
}

/// The allowances leave room for real work: 20 000 turns with reasoning
/// through a template that walks them twice render and count.
#[test]
fn a_long_conversation_through_a_demanding_template_renders() {
    let template = include_str!("fixtures/reasoning_template.jinja");
    let t = ChatTokenizer::from_files(TOKENIZER, Some(CONFIG), Some(template)).unwrap();
    let messages = (0..20_000)
        .flat_map(|i| {
            [
                hone_dataset::Message::new("user", format!("Question {i}?")),
                hone_dataset::Message::new(
                    "assistant",
                    format!("<think>\nThink about {i}.\n</think>\n\nAnswer {i}."),
                ),
            ]
        })
        .collect();
    let ex = Example {
        messages,
        category: None,
    };
    let rendered = t.render(&ex).unwrap();
    assert!(
        rendered.ends_with("<think>\nThink about 19999.\n</think>\n\nAnswer 19999.<|im_end|>\n"),
        "{}",
        &rendered[rendered.len() - 100..]
    );
    // Earlier replies lose their reasoning, so only the last one is found
    // as it was written: its tokens are the assistant tokens, as they are
    // when it is the only turn.
    let last = Example {
        messages: ex.messages[ex.messages.len() - 2..].to_vec(),
        category: None,
    };
    let (_, assistant) = hone_dataset::Measure::measure(&t, &ex).unwrap();
    let (_, alone) = hone_dataset::Measure::measure(&t, &last).unwrap();
    assert!(alone > 10, "{alone}");
    assert_eq!(assistant, alone);
}

#[test]
fn unusable_model_files_say_what_is_wrong() {
    let err = ChatTokenizer::from_files(b"{not json", Some(CONFIG), None).unwrap_err();
    assert!(matches!(err, LoadError::Tokenizer(_)), "{err}");
    let err = ChatTokenizer::from_files(TOKENIZER, Some(b"{}"), None).unwrap_err();
    assert!(matches!(err, LoadError::NoTemplate));
    assert!(err.to_string().contains("chat_template.jinja"));
    let err = ChatTokenizer::from_files(TOKENIZER, None, Some("{% for %}")).unwrap_err();
    assert!(matches!(err, LoadError::Template(_)), "{err}");
    let err = ChatTokenizer::from_files(TOKENIZER, Some(b"[1"), None).unwrap_err();
    assert!(matches!(err, LoadError::Config(_)), "{err}");
}

#[test]
fn chat_template_lists_and_added_token_objects_are_understood() {
    let config = serde_json::json!({
        "eos_token": {"content": "<|im_end|>", "special": true},
        "chat_template": [
            {"name": "tool_use", "template": "tools"},
            {"name": "default", "template": "{% for m in messages %}{{ m.content | trim }}{{ eos_token }}{% endfor %}"},
        ],
    });
    let t =
        ChatTokenizer::from_files(TOKENIZER, Some(config.to_string().as_bytes()), None).unwrap();
    assert_eq!(t.eos_token(), Some("<|im_end|>"));
    let ex = Example {
        messages: vec![
            hone_dataset::Message::new("user", " a "),
            hone_dataset::Message::new("assistant", "b"),
        ],
        category: None,
    };
    assert_eq!(t.render(&ex).unwrap(), "a<|im_end|>b<|im_end|>");
}
