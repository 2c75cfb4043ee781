//! Series selectors as the Prometheus API takes them in `match[]`: `name`, `name{l="v"}`,
//! `{l=~"re", l2!="v"}`. Full PromQL comes with the query engine.

use crate::index::{Matcher, is_label_name};

/// Parses a series selector into matchers. A selector must have a matcher that needs a non-empty
/// value, as Prometheus requires, so that it cannot select every series by accident.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>, String> {
    let s = s.trim();
    let brace = s.find('{').unwrap_or(s.len());
    let name = s[..brace].trim();
    let mut matchers = Vec::new();
    if !name.is_empty() {
        if !strata_model::is_valid_metric_name(name) {
            return Err(format!("{name:?} is not a valid metric name"));
        }
        matchers.push(Matcher::Equal("__name__".into(), name.into()));
    }
    if brace < s.len() {
        let body = s[brace + 1..].strip_suffix('}').ok_or_else(|| format!("selector {s:?} lacks a closing '}}'"))?;
        let mut rest = body.trim();
        while !rest.is_empty() {
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            let label = &rest[..end];
            if !is_label_name(label) {
                return Err(format!("expected a label name at {rest:?}"));
            }
            rest = rest[end..].trim_start();
            let (op, after) = ["=~", "!~", "!=", "="]
                .iter()
                .find_map(|op| rest.strip_prefix(op).map(|a| (*op, a)))
                .ok_or_else(|| format!("expected =, !=, =~ or !~ after {label:?}"))?;
            let (value, after) = quoted(after.trim_start())?;
            matchers.push(match op {
                "=" => Matcher::Equal(label.into(), value),
                "!=" => Matcher::NotEqual(label.into(), value),
                "=~" => Matcher::regex(label, &value, false).map_err(|e| e.to_string())?,
                _ => Matcher::regex(label, &value, true).map_err(|e| e.to_string())?,
            });
            rest = after.trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
        }
    }
    if matchers.is_empty() || matchers.iter().all(|m| m.matches("")) {
        return Err(format!("selector {s:?} must contain at least one matcher that does not match the empty string"));
    }
    Ok(matchers)
}

/// A double- or single-quoted string with Go-style escapes; returns it and what follows.
fn quoted(s: &str) -> Result<(String, &str), String> {
    let mut chars = s.char_indices();
    let quote = match chars.next() {
        Some((_, q @ ('"' | '\'' | '`'))) => q,
        _ => return Err(format!("expected a quoted value at {s:?}")),
    };
    let mut out = String::new();
    let mut escaped = false;
    for (i, c) in chars {
        if escaped {
            out.push(match c {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                other => other,
            });
            escaped = false;
        } else if c == '\\' && quote != '`' {
            escaped = true;
        } else if c == quote {
            return Ok((out, &s[i + 1..]));
        } else {
            out.push(c);
        }
    }
    Err(format!("unterminated string {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse() {
        let m = parse_selector(r#"http_requests_total{job="api", code=~"5..",  path!="/x\"y"}"#).unwrap();
        assert_eq!(m.len(), 4);
        assert!(m[3].matches("/other") && !m[3].matches("/x\"y"));
        assert_eq!(parse_selector("up").unwrap().len(), 1);
        assert_eq!(parse_selector(r#"{__name__=~"up|down"}"#).unwrap().len(), 1);
        for bad in [
            "",
            "{}",
            r#"{job=""}"#,
            r#"{job!="x"}"#,
            "up{job=}",
            r#"up{job="x""#,
            "1up",
            r#"up{j-b="x"}"#,
            r#"up{x=~"("}"#,
        ] {
            assert!(parse_selector(bad).is_err(), "{bad}");
        }
    }
}
