//! Kubernetes label selectors (`matchLabels` and `matchExpressions`), as the API server
//! evaluates them. A missing selector matches everything; an empty one too.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `labels` satisfy `selector` (`None` matches everything).
pub fn matches(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    let by_expressions = selector
        .match_expressions
        .iter()
        .flatten()
        .all(|expression| {
            let value = labels.get(&expression.key);
            let values = expression.values.as_deref().unwrap_or_default();
            match expression.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                // Validation rejects other operators; an unknown one selects nothing.
                _ => false,
            }
        });
    by_labels && by_expressions
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn requirement(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    #[test]
    fn labels_and_expressions_all_hold() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                requirement("tier", "In", &["front", "edge"]),
                requirement("legacy", "DoesNotExist", &[]),
                requirement("zone", "NotIn", &["b"]),
            ]),
        };
        let pod = labels(&[("app", "web"), ("tier", "edge"), ("zone", "a")]);
        assert!(matches(Some(&selector), &pod));
        assert!(!matches(
            Some(&selector),
            &labels(&[("app", "web"), ("tier", "back")])
        ));
        assert!(!matches(
            Some(&selector),
            &labels(&[("app", "web"), ("tier", "edge"), ("legacy", "1")])
        ));
        assert!(matches(
            Some(&selector),
            &labels(&[("app", "web"), ("tier", "front")])
        ));
        assert!(matches(None, &BTreeMap::new()));
        assert!(matches(Some(&LabelSelector::default()), &pod));
    }
}
