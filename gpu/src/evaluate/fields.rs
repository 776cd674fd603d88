//! Structured answers, as domain answers often are (`ICD-10: J20.9 …` /
//! `CPT: 99213 …`, or a JSON object): parsed into fields, compared field
//! by field with the reference, and their structure compared with the
//! reference's. Anything that does not parse is plain text: a format
//! failure when the reference is structured, never an error.

use hone_protocol::evaluation::{FieldResult, Structure};

/// An answer's structure and its fields in order (the first of repeated
/// names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub structure: Structure,
    pub fields: Vec<(String, String)>,
}

/// Parses `text` as a JSON object, else as `Label: value` lines (every
/// non-empty line one), else plain text.
pub fn parse(text: &str) -> Parsed {
    let t = text.trim();
    if t.starts_with('{') {
        if let Some(fields) = json_object(t) {
            return Parsed {
                structure: Structure::Json,
                fields: dedupe(fields),
            };
        }
    }
    let lines: Vec<&str> = t.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if !lines.is_empty() {
        if let Some(fields) = lines
            .iter()
            .map(|l| label_line(l))
            .collect::<Option<Vec<_>>>()
        {
            return Parsed {
                structure: Structure::Fields,
                fields: dedupe(fields),
            };
        }
    }
    Parsed {
        structure: Structure::Text,
        fields: Vec::new(),
    }
}

fn dedupe(fields: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(fields.len());
    for (k, v) in fields {
        if !out.iter().any(|(seen, _)| same_name(seen, &k)) {
            out.push((k, v));
        }
    }
    out
}

/// `Label: value`: a label of at most three words and 40 characters that
/// starts with a letter (letters, digits, spaces and `_-/().#&`), a colon
/// not followed by `//` (a URL), then the value.
fn label_line(line: &str) -> Option<(String, String)> {
    let (label, value) = line.split_once(':')?;
    let label = label.trim();
    if value.starts_with("//")
        || label.is_empty()
        || label.chars().count() > 40
        || label.split_whitespace().count() > 3
        || !label.chars().next().is_some_and(char::is_alphabetic)
        || !label
            .chars()
            .all(|c| c.is_alphanumeric() || " _-/().#&".contains(c))
    {
        return None;
    }
    Some((label.to_owned(), value.trim().to_owned()))
}

/// A JSON object's top-level keys and values in their written order
/// (strings as they are, other values as compact JSON); `None` if `text`
/// is not exactly one JSON object.
fn json_object(text: &str) -> Option<Vec<(String, String)>> {
    struct Ordered(Vec<(String, String)>);
    impl<'de> serde::Deserialize<'de> for Ordered {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Ordered;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Ordered, A::Error> {
                    let mut out = Vec::new();
                    while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                        let v = match v {
                            serde_json::Value::String(s) => s,
                            other => other.to_string(),
                        };
                        out.push((k, v));
                    }
                    Ok(Ordered(out))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_str::<Ordered>(text).ok().map(|o| o.0)
}

/// Field names match ignoring case and surrounding space.
fn same_name(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// A value as compared: lower case, whitespace collapsed, a final full
/// stop dropped (punctuation inside stays: `J20.9` is not `J20.1`).
pub fn normalise_value(v: &str) -> String {
    let joined = v.split_whitespace().collect::<Vec<_>>().join(" ");
    joined
        .strip_suffix('.')
        .unwrap_or(&joined)
        .trim()
        .to_lowercase()
}

/// An answer scored against a parsed reference: whether its structure is
/// the reference's (`None` for a plain-text reference), and each of the
/// reference's fields.
pub fn score(reference: &Parsed, answer: &str) -> (Option<bool>, Vec<FieldResult>) {
    if reference.structure == Structure::Text {
        return (None, Vec::new());
    }
    let got = parse(answer);
    let format_ok = got.structure == reference.structure
        && got.fields.len() == reference.fields.len()
        && got
            .fields
            .iter()
            .zip(&reference.fields)
            .all(|((a, _), (b, _))| same_name(a, b));
    let fields = reference
        .fields
        .iter()
        .map(|(name, expected)| {
            let value = got
                .fields
                .iter()
                .find(|(k, _)| same_name(k, name))
                .map(|(_, v)| v.clone());
            FieldResult {
                field: name.clone(),
                expected: expected.clone(),
                right: value
                    .as_deref()
                    .is_some_and(|v| normalise_value(v) == normalise_value(expected)),
                got: value,
            }
        })
        .collect();
    (Some(format_ok), fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_lines_parse_into_fields_in_order() {
        let p = parse("ICD-10: J20.9 Acute bronchitis\n\nCPT: 99213\n");
        assert_eq!(p.structure, Structure::Fields);
        assert_eq!(
            p.fields,
            [
                ("ICD-10".into(), "J20.9 Acute bronchitis".into()),
                ("CPT".into(), "99213".into())
            ]
        );
        // A sentence with a colon, a URL and prose are text.
        for text in [
            "The answer is simple: it is four",
            "https://example.com",
            "It is 4.",
            "",
        ] {
            assert_eq!(parse(text).structure, Structure::Text, "{text:?}");
        }
        assert_eq!(
            parse("url: https://example.com").structure,
            Structure::Fields
        );
        assert_eq!(parse("a: b\nnot a field line").structure, Structure::Text);
    }

    #[test]
    fn json_objects_keep_their_key_order_and_bad_json_is_text() {
        let p = parse(r#" {"code": "J20.9", "count": 2, "codes": ["a"]} "#);
        assert_eq!(p.structure, Structure::Json);
        assert_eq!(
            p.fields,
            [
                ("code".into(), "J20.9".into()),
                ("count".into(), "2".into()),
                ("codes".into(), r#"["a"]"#.into())
            ]
        );
        for bad in [r#"{"code": "J20.9""#, r#"{"a":1} trailing"#, "[1, 2]"] {
            let p = parse(bad);
            assert_ne!(p.structure, Structure::Json, "{bad:?}");
        }
    }

    #[test]
    fn fields_are_compared_one_by_one_and_the_format_as_a_whole() {
        let reference = parse("ICD-10: J20.9\nCPT: 99213");
        let (ok, fields) = score(&reference, "icd-10: j20.9.\nCPT: 99214");
        assert_eq!(ok, Some(true));
        assert_eq!(
            fields.iter().map(|f| f.right).collect::<Vec<_>>(),
            [true, false]
        );
        assert_eq!(fields[1].got.as_deref(), Some("99214"));
        // Swapped order: fields right, format wrong.
        let (ok, fields) = score(&reference, "CPT: 99213\nICD-10: J20.9");
        assert_eq!(ok, Some(false));
        assert!(fields.iter().all(|f| f.right));
        // Prose: a format failure with every field missing, never an error.
        let (ok, fields) = score(&reference, "I think it is bronchitis.");
        assert_eq!(ok, Some(false));
        assert!(fields.iter().all(|f| !f.right && f.got.is_none()));
        // JSON against JSON; JSON against label lines is the wrong format.
        let json = parse(r#"{"ICD-10": "J20.9", "CPT": "99213"}"#);
        assert_eq!(
            score(&json, r#"{"ICD-10":"J20.9","CPT":"99213"}"#).0,
            Some(true)
        );
        let (ok, fields) = score(&json, "ICD-10: J20.9\nCPT: 99213");
        assert_eq!(ok, Some(false));
        assert!(fields.iter().all(|f| f.right));
        // A plain-text reference has no format or fields.
        assert_eq!(score(&parse("Paris"), "ICD-10: x"), (None, vec![]));
    }
}
