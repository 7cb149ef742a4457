//! The one reading of CRI's list filters (ListPodSandbox, ListContainers and
//! both stats lists), as containerd's CRI reads them: an empty field asks
//! for nothing; an id (or pod sandbox id) matches a full id or a prefix of
//! one; every label of the selector must be present with that value.

use std::collections::BTreeMap;

/// What a list filter asks of each object.
#[derive(Debug, Clone, Copy)]
pub struct Selector<'a> {
    /// An id or id prefix; empty for any.
    pub id: &'a str,
    /// A pod sandbox id or prefix; empty for any (containers only).
    pub sandbox_id: &'a str,
    /// Labels the object must carry with these values.
    pub labels: &'a BTreeMap<String, String>,
}

impl<'a> Selector<'a> {
    /// A selector by id and labels (sandboxes).
    pub fn new(id: &'a str, labels: &'a BTreeMap<String, String>) -> Self {
        Selector {
            id,
            sandbox_id: "",
            labels,
        }
    }

    /// Also by pod sandbox id (containers).
    pub fn in_sandbox(self, sandbox_id: &'a str) -> Self {
        Selector { sandbox_id, ..self }
    }

    /// Whether an object with this id, pod sandbox id and labels is selected.
    pub fn matches(&self, id: &str, sandbox_id: &str, labels: &BTreeMap<String, String>) -> bool {
        id.starts_with(self.id)
            && sandbox_id.starts_with(self.sandbox_id)
            && self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn empty_fields_ask_for_nothing() {
        let none = BTreeMap::new();
        let any = Selector::new("", &none);
        assert!(any.matches("abc", "def", &labels(&[("a", "1")])));
        assert!(any.matches("", "", &none));
    }

    #[test]
    fn ids_match_whole_or_by_prefix() {
        let none = BTreeMap::new();
        assert!(Selector::new("abc", &none).matches("abc", "", &none));
        assert!(Selector::new("ab", &none).matches("abc", "", &none));
        assert!(!Selector::new("abd", &none).matches("abc", "", &none));
        assert!(!Selector::new("abcd", &none).matches("abc", "", &none));
        let in_pod = Selector::new("", &none).in_sandbox("p1");
        assert!(in_pod.matches("c", "p1x", &none));
        assert!(!in_pod.matches("c", "p2", &none));
    }

    #[test]
    fn every_selected_label_must_carry_its_value() {
        let want = labels(&[("app", "web"), ("tier", "")]);
        let s = Selector::new("", &want);
        assert!(s.matches(
            "x",
            "",
            &labels(&[("app", "web"), ("tier", ""), ("o", "1")])
        ));
        assert!(
            !s.matches("x", "", &labels(&[("app", "web")])),
            "a label missing"
        );
        assert!(
            !s.matches("x", "", &labels(&[("app", "db"), ("tier", "")])),
            "another value"
        );
    }
}
