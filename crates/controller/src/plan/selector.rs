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

/// A label every object `selector` matches must carry (a `matchLabels` pair, or an `In` with
/// one value), so candidates can come from an index of that label instead of a scan.
pub fn required_label(selector: Option<&LabelSelector>) -> Option<(&str, &str)> {
    let selector = selector?;
    if let Some((key, value)) = selector.match_labels.iter().flatten().next() {
        return Some((key, value));
    }
    selector
        .match_expressions
        .iter()
        .flatten()
        .find_map(|expression| match expression.values.as_deref() {
            Some([value]) if expression.operator == "In" => {
                Some((expression.key.as_str(), value.as_str()))
            }
            _ => None,
        })
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

    #[test]
    fn a_required_label_is_one_every_match_carries() {
        let by_labels = LabelSelector {
            match_labels: Some(labels(&[("team", "blue")])),
            ..LabelSelector::default()
        };
        assert_eq!(required_label(Some(&by_labels)), Some(("team", "blue")));
        let one_in = LabelSelector {
            match_expressions: Some(vec![
                requirement("tier", "Exists", &[]),
                requirement("team", "In", &["red"]),
            ]),
            ..LabelSelector::default()
        };
        assert_eq!(required_label(Some(&one_in)), Some(("team", "red")));
        for operator in ["NotIn", "Exists", "DoesNotExist"] {
            let selector = LabelSelector {
                match_expressions: Some(vec![requirement("team", operator, &["red"])]),
                ..LabelSelector::default()
            };
            assert_eq!(required_label(Some(&selector)), None, "{operator}");
        }
        let two_in = LabelSelector {
            match_expressions: Some(vec![requirement("team", "In", &["red", "blue"])]),
            ..LabelSelector::default()
        };
        assert_eq!(required_label(Some(&two_in)), None);
        assert_eq!(required_label(None), None);
        assert_eq!(required_label(Some(&LabelSelector::default())), None);
        // Whatever matches carries the label.
        for selector in [&by_labels, &one_in] {
            let (key, value) = required_label(Some(selector)).unwrap_or_default();
            for candidate in [
                labels(&[("team", "blue")]),
                labels(&[("team", "red"), ("tier", "web")]),
                labels(&[("tier", "web")]),
            ] {
                if matches(Some(selector), &candidate) {
                    assert_eq!(candidate.get(key).map(String::as_str), Some(value));
                }
            }
        }
    }
}
