//! Label selectors as kubectl's `-l/--selector` writes them:
//! `a=b,c!=d,e,!f,g in (x,y),h notin (z)` (`==` is `=`). Requirements are ANDed; `!=` and
//! `notin` also match objects without the label, as in Kubernetes.

use std::collections::BTreeMap;

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value`, `key==value`, `key in (v1,v2)`.
    In(String, Vec<String>),
    /// `key!=value`, `key notin (v1,v2)`.
    NotIn(String, Vec<String>),
    /// `key`.
    Exists(String),
    /// `!key`.
    DoesNotExist(String),
}

/// A parsed selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(pub Vec<Requirement>);

/// Why a selector could not be read: the selector, where, what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("label selector '{selector}': {message}")]
pub struct SelectorError {
    /// The selector as given.
    pub selector: String,
    /// What is wrong, naming the requirement.
    pub message: String,
}

/// A label key or value: a qualified name (`prefix/name`), letters, digits, `-`, `_`, `.`.
fn valid(s: &str, key: bool) -> bool {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') || (key && c == '/');
    (!key || !s.is_empty()) && s.len() <= 316 && s.chars().all(ok)
}

impl Selector {
    /// Reads a selector; the error names the requirement at fault.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let err = |m: String| SelectorError { selector: text.to_string(), message: m };
        let mut out = Vec::new();
        for part in split_top(text).map_err(&err)? {
            let part = part.trim();
            if part.is_empty() {
                if text.trim().is_empty() {
                    continue;
                }
                return Err(err("empty requirement (two commas, or a trailing one?)".into()));
            }
            out.push(requirement(part).map_err(|m| err(format!("requirement '{part}': {m}")))?);
        }
        Ok(Selector(out))
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }

    /// Whether it has no requirement (it matches everything).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Splits on commas outside parentheses.
fn split_top(text: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' if depth > 0 => return Err(format!("nested '(' at offset {i}")),
            '(' => depth = 1,
            ')' if depth == 0 => return Err(format!("')' without '(' at offset {i}")),
            ')' => depth = 0,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth > 0 {
        return Err("'(' is not closed".into());
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn key(k: &str) -> Result<String, String> {
    let k = k.trim();
    if valid(k, true) {
        Ok(k.to_string())
    } else if k.is_empty() {
        Err("the label key is missing".into())
    } else {
        Err(format!("'{k}' is not a valid label key"))
    }
}

fn value(v: &str) -> Result<String, String> {
    let v = v.trim();
    if valid(v, false) {
        Ok(v.to_string())
    } else {
        Err(format!("'{v}' is not a valid label value"))
    }
}

fn requirement(part: &str) -> Result<Requirement, String> {
    if let Some(k) = part.strip_prefix('!') {
        if k.contains(['=', '(', ' ']) {
            return Err("'!' takes a key alone ('!key')".into());
        }
        return Ok(Requirement::DoesNotExist(key(k)?));
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(Requirement::NotIn(key(k)?, vec![value(v)?]));
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::In(key(k)?, vec![value(v)?]));
    }
    if let Some(open) = part.find('(') {
        let head = part[..open].trim();
        let Some(list) = part[open + 1..].trim_end().strip_suffix(')') else {
            return Err("the value list must end with ')'".into());
        };
        let (k, op) = head
            .rsplit_once(char::is_whitespace)
            .ok_or_else(|| "expected 'key in (values)' or 'key notin (values)'".to_string())?;
        let values = list.split(',').map(value).collect::<Result<Vec<_>, _>>()?;
        if values.iter().any(String::is_empty) {
            return Err("empty value in the list".into());
        }
        return match op {
            "in" => Ok(Requirement::In(key(k)?, values)),
            "notin" => Ok(Requirement::NotIn(key(k)?, values)),
            other => Err(format!("unknown operator '{other}' (in, notin, =, ==, !=)")),
        };
    }
    if part.contains(char::is_whitespace) {
        return Err("unknown operator (in, notin, =, ==, !=)".into());
    }
    Ok(Requirement::Exists(key(part)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn every_form_parses() {
        let s = Selector::parse("a=b,c!=d,e,!f,g in (x, y),h notin (z),i==j").expect("parse");
        assert_eq!(
            s.0,
            vec![
                Requirement::In("a".into(), vec!["b".into()]),
                Requirement::NotIn("c".into(), vec!["d".into()]),
                Requirement::Exists("e".into()),
                Requirement::DoesNotExist("f".into()),
                Requirement::In("g".into(), vec!["x".into(), "y".into()]),
                Requirement::NotIn("h".into(), vec!["z".into()]),
                Requirement::In("i".into(), vec!["j".into()]),
            ]
        );
        assert!(Selector::parse("").expect("empty").is_empty());
        assert!(Selector::parse("app.kubernetes.io/name=web").is_ok());
    }

    #[test]
    fn matching_follows_kubernetes() {
        let s = Selector::parse("a=b,c!=d,e,!f,g in (x,y),h notin (z)").expect("parse");
        assert!(s.matches(&labels(&[("a", "b"), ("e", ""), ("g", "y")])));
        assert!(s.matches(&labels(&[("a", "b"), ("c", "q"), ("e", "1"), ("g", "x"), ("h", "w")])));
        assert!(!s.matches(&labels(&[("a", "b"), ("c", "d"), ("e", ""), ("g", "y")])));
        assert!(!s.matches(&labels(&[("a", "b"), ("e", ""), ("f", ""), ("g", "y")])));
        assert!(!s.matches(&labels(&[("a", "b"), ("e", ""), ("g", "y"), ("h", "z")])));
        assert!(!s.matches(&labels(&[("a", "b"), ("g", "y")])));
    }

    #[test]
    fn bad_selectors_say_what_is_wrong() {
        for (bad, want) in [
            ("a=b,,c", "empty requirement"),
            ("a in (x", "not closed"),
            ("a in x)", "without '('"),
            ("a within (x)", "unknown operator 'within'"),
            ("a b", "unknown operator"),
            ("!a=b", "'!' takes a key alone"),
            ("=b", "label key is missing"),
            ("a=b c", "not a valid label value"),
            ("a in ((x))", "nested"),
        ] {
            let e = Selector::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(want) && e.contains(bad), "{bad}: {e}");
        }
    }
}
