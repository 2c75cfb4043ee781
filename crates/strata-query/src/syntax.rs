//! Where a query stops parsing. `promql-parser` says what is wrong but not where for most grammar
//! errors; Prometheus answers `line:column: parse error: …`, and users need the place. The
//! position is found by growing a prefix token by token while some completion of it still
//! parses: the first token no completion can follow is where the query goes wrong.

/// Fragments tried after a prefix (each followed by whatever closes the brackets left open).
const COMPLETIONS: [&str; 19] = [
    "",
    " x",
    " 1",
    " \"a\"",
    "x",
    "1",
    "\"a\"",
    "a=\"a\"",
    "=\"a\"",
    " (x)",
    "(x)",
    " by (a) (x)",
    " (a) (x)",
    "a) (x)",
    ") (x)",
    "5m",
    ":5m",
    "[5m]",
    " x)",
];

/// The start of each token of `q` (byte offsets), by a scanner that knows strings, names,
/// numbers and operators well enough to cut between tokens.
fn token_starts(q: &str) -> Vec<usize> {
    let b = q.as_bytes();
    let mut starts = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        starts.push(i);
        if c == b'#' {
            // A comment runs to the end of the line.
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'"' || c == b'\'' || c == b'`' {
            i += 1;
            while i < b.len() && b[i] != c {
                if b[i] == b'\\' && c != b'`' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == b'_' || c == b':' || c == b'.' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':' || b[i] == b'.') {
                i += 1;
            }
        } else if i + 1 < b.len() && matches!(&b[i..i + 2], b"==" | b"!=" | b">=" | b"<=" | b"=~" | b"!~") {
            i += 2;
        } else {
            // One character (a multi-byte one whole).
            i += q[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    starts
}

/// The brackets `prefix` leaves open, closed in order.
fn closers(prefix: &str) -> String {
    let mut open = Vec::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in prefix.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && q != '`' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '(' => open.push(')'),
            '[' => open.push(']'),
            '{' => open.push('}'),
            ')' | ']' | '}' => {
                open.pop();
            }
            _ => {}
        }
    }
    let mut out = String::new();
    if let Some(q) = quote {
        out.push(q);
    }
    out.extend(open.iter().rev());
    out
}

/// The first closing bracket without an opening one, or else the innermost opening bracket left
/// unclosed (byte offsets).
pub(crate) fn unbalanced(q: &str) -> Option<usize> {
    let mut open: Vec<usize> = Vec::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in q.char_indices() {
        if let Some(qc) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && qc != '`' {
                escaped = true;
            } else if c == qc {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '(' | '[' | '{' => open.push(i),
            ')' | ']' | '}' if open.pop().is_none() => return Some(i),
            _ => {}
        }
    }
    open.last().copied()
}

/// Whether the parser accepts `q`'s grammar (it may still refuse its types).
fn grammatical(q: &str) -> bool {
    match promql_parser::parser::parse(q) {
        Ok(_) => true,
        Err(e) => !(e.starts_with("invalid promql query") || e.starts_with("unexpected") || e.contains("unclosed")),
    }
}

fn viable(prefix: &str) -> bool {
    COMPLETIONS.iter().any(|c| {
        let mut q = format!("{prefix}{c}");
        q.push_str(&closers(&q));
        grammatical(&q)
    })
}

/// Queries longer than this are not searched for the place of their error: the search parses a
/// prefix per token, so its cost grows with the square of the length.
const LOCATE_BYTES_MAX: usize = 4096;

/// Whether `locate` looks for the place of an error in `q`.
pub(crate) fn searchable(q: &str) -> bool {
    q.len() <= LOCATE_BYTES_MAX
}

/// The byte offset and text of the token where `q` stops parsing, or `None` when every prefix
/// can still be completed (the query ends too early) or the query is too long to search.
pub(crate) fn locate(q: &str) -> Option<(usize, String)> {
    if !searchable(q) {
        return None;
    }
    let starts = token_starts(q);
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(q.len());
        if !viable(&q[..end]) {
            return Some((start, q[start..end].trim_end().to_string()));
        }
    }
    None
}

/// `line:column` (from 1, columns in characters) of a byte offset.
pub(crate) fn line_column(q: &str, at: usize) -> (usize, usize) {
    let before = &q[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_token_nothing_can_follow_is_the_place() {
        assert_eq!(locate("foo bar"), Some((4, "bar".into())));
        assert_eq!(locate("sum by (a b) (x)"), Some((10, "b".into())));
        assert_eq!(locate("rate(x[5m]) + on(a) group_left y z"), Some((33, "z".into())));
        assert_eq!(locate("x @ foo()"), Some((4, "foo".into())));
        // Queries that only end too early have no wrong token.
        assert_eq!(locate("1 +"), None);
        assert_eq!(locate("sum(rate(x[5m])"), None);
    }

    #[test]
    fn unbalanced_brackets_are_found() {
        assert_eq!(unbalanced("sum(rate(x[5m])"), Some(3));
        assert_eq!(unbalanced("x)"), Some(1));
        assert_eq!(unbalanced("x{a=\")\"}"), None);
    }

    #[test]
    fn positions_count_lines_and_characters() {
        assert_eq!(line_column("foo bar", 4), (1, 5));
        assert_eq!(line_column("sum(\n  x y)", 9), (2, 5));
        assert_eq!(line_column("\"é\" x", 5), (1, 5));
    }
}
