//! Turns toml's errors into [`ConfigError::Syntax`]: a 1-based line and
//! column from the error's byte span, and, for schema errors, the dotted
//! key the span falls on, recovered from the text because toml's message
//! names only the last segment (or nothing, for a wrong type).

use std::collections::HashMap;

use super::ConfigError;

pub(super) fn error(text: &str, err: &toml::de::Error, schema: bool) -> ConfigError {
    let offset = err.span().map_or(0, |span| span.start);
    let (line, column) = line_column(text, offset);
    // toml's parse messages span lines ("invalid table header\nexpected ...").
    let detail = err
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let key = if schema {
        blamed_key(text, offset, &detail)
    } else {
        None
    };
    let message = match key {
        Some(key) => format!("{key}: {detail}"),
        None => detail,
    };
    ConfigError::Syntax {
        line,
        column,
        message,
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = text.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// The dotted key an error at `offset` is about, as far as the text shows.
fn blamed_key(text: &str, offset: usize, message: &str) -> Option<String> {
    if let Some(field) = missing_field(message) {
        // `role` is the only required top-level key; toml blames the whole
        // document for it. Other missing fields are blamed on their table.
        if field == "role" {
            return Some(field.to_owned());
        }
        return Some(match key_at(text, offset) {
            Some(table) => format!("{table}.{field}"),
            None => field.to_owned(),
        });
    }
    key_at(text, offset)
}

fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
}

/// Walks the text's lines up to the one holding `offset`, following table
/// headers (`[thresholds]`, `[[fallback.servers]]` with its index) and
/// `key = value` lines. Inline tables inside arrays are blamed on the array.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let mut table = String::new();
    let mut array_counts: HashMap<String, usize> = HashMap::new();
    let mut last_key: Option<String> = None;
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        let line_end = line_start + line.len();
        let here = offset < line_end || line_end == text.len();
        let trimmed = line.trim();
        if let Some(header) = header(trimmed) {
            table = match header {
                Header::Table(path) => path,
                Header::Array(path) => {
                    let count = array_counts.entry(path.clone()).or_insert(0);
                    *count += 1;
                    format!("{path}[{}]", *count - 1)
                }
            };
            last_key = None;
            if here {
                return (!table.is_empty()).then_some(table);
            }
        } else if let Some(key) = assigned_key(trimmed) {
            last_key = Some(join(&table, &key));
            if here {
                return last_key;
            }
        } else if here {
            // A continuation line of a multi-line array or a blank line.
            return last_key.or_else(|| (!table.is_empty()).then_some(table));
        }
        line_start = line_end;
    }
    None
}

enum Header {
    Table(String),
    Array(String),
}

fn header(line: &str) -> Option<Header> {
    if let Some(rest) = line.strip_prefix("[[") {
        let path = rest.split("]]").next()?;
        return Some(Header::Array(dotted(path)));
    }
    let rest = line.strip_prefix('[')?;
    let path = rest.split(']').next()?;
    Some(Header::Table(dotted(path)))
}

/// The key of a `key = value` line; `None` for lines that do not start
/// with a key (continuations, comments, blank lines).
fn assigned_key(line: &str) -> Option<String> {
    let first = line.chars().next()?;
    if !(first.is_ascii_alphanumeric() || matches!(first, '_' | '-' | '"' | '\'')) {
        return None;
    }
    let (key, _) = line.split_once('=')?;
    Some(dotted(key))
}

/// Normalises a TOML key path: `"fallback" . servers` → `fallback.servers`.
fn dotted(path: &str) -> String {
    path.split('.')
        .map(|part| part.trim().trim_matches(|c| c == '"' || c == '\''))
        .collect::<Vec<_>>()
        .join(".")
}

fn join(table: &str, key: &str) -> String {
    if table.is_empty() {
        key.to_owned()
    } else {
        format!("{table}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one_in_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(line_column(text, 11), (2, 5));
        assert_eq!(line_column(text, 999), (3, 1));
    }

    #[test]
    fn keys_follow_headers_and_array_indices() {
        let text = "role = 1\n[fallback]\n[[fallback.servers]]\naddress = 1\n[[fallback.servers]]\n  address = 2\n[thresholds]\n\"grace\" = 3\nx = [\n  1,\n  2 ]\n";
        let at = |needle: &str| key_at(text, text.find(needle).unwrap());
        assert_eq!(at("role").as_deref(), Some("role"));
        assert_eq!(
            at("address = 1").as_deref(),
            Some("fallback.servers[0].address")
        );
        assert_eq!(
            at("address = 2").as_deref(),
            Some("fallback.servers[1].address")
        );
        assert_eq!(at("3").as_deref(), Some("thresholds.grace"));
        assert_eq!(at("  2 ]").as_deref(), Some("thresholds.x"));
        assert_eq!(at("[thresholds]").as_deref(), Some("thresholds"));
    }
}
