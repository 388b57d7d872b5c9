//! Bounded app-name labels: the first N distinct names get their own label value, later
//! ones share "other", so a client cannot blow up the series count.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

pub const OTHER: &str = "other";
pub const UNKNOWN: &str = "unknown";
const MAX_LABEL_LEN: usize = 64;

#[derive(Debug, Clone)]
pub struct AppLabels {
    max: usize,
    /// Names admitted so far; only grows, up to `max`.
    admitted: Arc<Mutex<HashSet<Arc<str>>>>,
}

impl AppLabels {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            admitted: Arc::default(),
        }
    }

    /// The label value to use for a client-supplied name.
    pub fn label(&self, name: Option<&str>) -> Arc<str> {
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return Arc::from(UNKNOWN);
        };
        let name: String = name
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_LABEL_LEN)
            .collect();
        let mut set = self.admitted.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = set.get(name.as_str()) {
            return existing.clone();
        }
        if set.len() >= self.max {
            return Arc::from(OTHER);
        }
        let label: Arc<str> = Arc::from(name);
        set.insert(label.clone());
        label
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_distinct_names() {
        let a = AppLabels::new(2);
        assert_eq!(&*a.label(Some("x")), "x");
        assert_eq!(&*a.label(Some("y")), "y");
        assert_eq!(&*a.label(Some("z")), OTHER);
        assert_eq!(&*a.label(Some("x")), "x");
        assert_eq!(&*a.label(None), UNKNOWN);
        assert_eq!(a.label(Some(&"q".repeat(500))).len(), OTHER.len());
    }
}
