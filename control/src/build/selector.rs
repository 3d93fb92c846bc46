//! Kubernetes label selectors: matchLabels and matchExpressions (In, NotIn, Exists,
//! DoesNotExist), all ANDed; an empty selector matches everything.

use crate::config::{LabelSelector, Labels};
use crate::error::FieldError;

use super::parse::Sec;

/// Checks operators and values as the API server would.
pub(crate) fn validate(sec: Sec, field: &str, s: &LabelSelector) -> Result<(), FieldError> {
    for (i, r) in s.match_expressions.iter().enumerate() {
        let f = format!("{field}.match_expressions[{i}]");
        match r.operator.as_str() {
            "In" | "NotIn" if r.values.is_empty() => {
                return Err(FieldError::new(sec, f, format!("operator {} needs at least one value", r.operator)))
            }
            "Exists" | "DoesNotExist" if !r.values.is_empty() => {
                return Err(FieldError::new(sec, f, format!("operator {} takes no values", r.operator)))
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            o => {
                return Err(FieldError::new(
                    sec,
                    f,
                    format!("operator '{o}' is not one of In, NotIn, Exists, DoesNotExist"),
                ))
            }
        }
    }
    Ok(())
}

/// Whether `labels` satisfy the selector (assumed valid).
pub(crate) fn matches(s: &LabelSelector, labels: &Labels) -> bool {
    s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
        && s.match_expressions.iter().all(|r| {
            let have = labels.get(&r.key);
            match r.operator.as_str() {
                "In" => have.is_some_and(|v| r.values.contains(v)),
                "NotIn" => have.is_none_or(|v| !r.values.contains(v)),
                "Exists" => have.is_some(),
                "DoesNotExist" => have.is_none(),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SelectorRequirement;

    fn labels(kv: &[(&str, &str)]) -> Labels {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> SelectorRequirement {
        SelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn expressions() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let sel = |e: Vec<SelectorRequirement>| LabelSelector { match_labels: Labels::new(), match_expressions: e };
        assert!(matches(&LabelSelector::default(), &l));
        assert!(matches(&sel(vec![req("app", "In", &["web", "db"])]), &l));
        assert!(!matches(&sel(vec![req("app", "NotIn", &["web"])]), &l));
        assert!(matches(&sel(vec![req("zone", "NotIn", &["a"])]), &l), "NotIn matches a missing key");
        assert!(matches(&sel(vec![req("tier", "Exists", &[])]), &l));
        assert!(!matches(&sel(vec![req("tier", "DoesNotExist", &[])]), &l));
        let both = LabelSelector {
            match_labels: labels(&[("app", "web")]),
            match_expressions: vec![req("tier", "In", &["back"])],
        };
        assert!(!matches(&both, &l), "matchLabels and matchExpressions are ANDed");
    }

    #[test]
    fn validation() {
        let sel = |e| LabelSelector { match_labels: Labels::new(), match_expressions: vec![e] };
        assert!(validate(None, "s", &sel(req("a", "In", &[]))).is_err());
        assert!(validate(None, "s", &sel(req("a", "Exists", &["x"]))).is_err());
        assert!(validate(None, "s", &sel(req("a", "Equals", &["x"]))).is_err());
        assert!(validate(None, "s", &sel(req("a", "NotIn", &["x"]))).is_ok());
    }
}
