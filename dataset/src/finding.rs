//! What the checks report: one [`Finding`] per problem, with a stable code,
//! where it is, what is wrong in plain words, and how to fix it.

use serde::{Deserialize, Serialize};

/// Errors block the upload (or the failing rows are dropped on request);
/// warnings are shown and recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

macro_rules! codes {
    ($($variant:ident = $code:literal, $severity:ident;)*) => {
        /// Every kind of finding. The string form ([`Code::as_str`]) is
        /// stable: the server stores it and people filter by it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $code,)*
                }
            }

            pub fn severity(self) -> Severity {
                match self {
                    $(Code::$variant => Severity::$severity,)*
                }
            }
        }
    };
}

codes! {
    EmptyFile = "empty_file", Error;
    Utf16 = "utf16", Error;
    BinaryFile = "binary_file", Error;
    UnknownFormat = "unknown_format", Error;
    InvalidUtf8 = "invalid_utf8", Error;
    InvalidJson = "invalid_json", Error;
    BlankLine = "blank_line", Warning;
    LineTooLong = "line_too_long", Error;
    NotObject = "not_object", Error;
    MessagesMissing = "messages_missing", Error;
    MessagesEmpty = "messages_empty", Error;
    MessageNotObject = "message_not_object", Error;
    MissingRole = "missing_role", Error;
    MissingContent = "missing_content", Error;
    UnknownMessageKey = "unknown_message_key", Error;
    UnknownRole = "unknown_role", Error;
    ContentNotString = "content_not_string", Error;
    InvalidWeight = "invalid_weight", Error;
    NoAssistant = "no_assistant", Error;
    SystemNotFirst = "system_not_first", Error;
    RolesNotAlternating = "roles_not_alternating", Warning;
    LastNotAssistant = "last_not_assistant", Warning;
    EmptyContent = "empty_content", Error;
    MissingField = "missing_field", Error;
    FieldNotString = "field_not_string", Error;
    UnknownField = "unknown_field", Warning;
    CsvColumns = "csv_columns", Error;
    CsvRow = "csv_row", Error;
    Duplicate = "duplicate", Warning;
    NearDuplicate = "near_duplicate", Warning;
    PersonalData = "personal_data", Warning;
    TooLong = "too_long", Error;
    ChatTemplate = "chat_template", Error;
    TooFewExamples = "too_few_examples", Warning;
    FewExamples = "few_examples", Warning;
    CategoryImbalance = "category_imbalance", Warning;
    LimitReached = "limit_reached", Warning;
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Strings from the file that a finding quotes (a field name, a role, a
/// column) are cut to this many characters: a finding says where to look,
/// it does not copy the file.
pub const MAX_QUOTED_CHARS: usize = 60;

/// `s` cut to [`MAX_QUOTED_CHARS`] characters, with "…" where it was cut.
pub fn quoted(s: &str) -> std::borrow::Cow<'_, str> {
    cut(s, MAX_QUOTED_CHARS)
}

/// `s` cut to `max` characters, with "…" where it was cut.
pub fn cut(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &s[..end]).into(),
        None => s.into(),
    }
}

/// One problem, located and explained.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub code: Code,
    pub severity: Severity,
    /// 1-based line of the file where the example (or problem) starts.
    pub line: Option<u64>,
    /// 0-based byte offset in the file, for JSON syntax errors.
    pub offset: Option<u64>,
    /// The field concerned, e.g. `messages[2].role`.
    pub field: Option<String>,
    /// What is wrong, in plain language.
    pub message: String,
    /// How to fix it.
    pub fix: String,
    /// The start of the offending line, personal data masked.
    pub excerpt: Option<String>,
}

impl Finding {
    pub fn new(code: Code, message: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            code,
            severity: code.severity(),
            line: None,
            offset: None,
            field: None,
            message: message.into(),
            fix: fix.into(),
            excerpt: None,
        }
    }

    pub fn at(mut self, line: u64) -> Finding {
        self.line = Some(line);
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> Finding {
        self.field = Some(field.into());
        self
    }

    pub fn offset(mut self, offset: u64) -> Finding {
        self.offset = Some(offset);
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}
