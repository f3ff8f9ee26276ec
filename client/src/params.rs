use serde_json::Value;

/// Query parameters of list and watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListParams {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<u32>,
}

impl ListParams {
    pub fn labels(selector: &str) -> ListParams {
        ListParams {
            label_selector: Some(selector.to_string()),
            ..ListParams::default()
        }
    }

    pub fn fields(selector: &str) -> ListParams {
        ListParams {
            field_selector: Some(selector.to_string()),
            ..ListParams::default()
        }
    }

    pub(crate) fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(s) = self.label_selector.as_ref().filter(|s| !s.is_empty()) {
            q.push(("labelSelector", s.clone()));
        }
        if let Some(s) = self.field_selector.as_ref().filter(|s| !s.is_empty()) {
            q.push(("fieldSelector", s.clone()));
        }
        if let Some(n) = self.limit {
            q.push(("limit", n.to_string()));
        }
        q
    }
}

/// The body of a DELETE (Kubernetes' DeleteOptions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteParams {
    /// `Background`, `Foreground` or `Orphan`; None is the server's default.
    pub propagation_policy: Option<String>,
    pub grace_period_seconds: Option<i64>,
    /// Delete only the object with this uid (not one created again since).
    pub preconditions_uid: Option<String>,
}

impl DeleteParams {
    pub(crate) fn body(&self) -> Value {
        let mut v = serde_json::json!({"kind": "DeleteOptions", "apiVersion": "v1"});
        if let Some(p) = &self.propagation_policy {
            v["propagationPolicy"] = p.clone().into();
        }
        if let Some(g) = self.grace_period_seconds {
            v["gracePeriodSeconds"] = g.into();
        }
        if let Some(uid) = &self.preconditions_uid {
            v["preconditions"] = serde_json::json!({ "uid": uid });
        }
        v
    }
}

/// A PATCH body and its kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Patch {
    /// RFC 7386 JSON merge patch.
    Merge(Value),
    /// Kubernetes' strategic merge patch.
    Strategic(Value),
    /// RFC 6902 JSON patch (a list of operations).
    Json(Value),
}

impl Patch {
    pub(crate) fn content_type(&self) -> &'static str {
        match self {
            Patch::Merge(_) => "application/merge-patch+json",
            Patch::Strategic(_) => "application/strategic-merge-patch+json",
            Patch::Json(_) => "application/json-patch+json",
        }
    }

    pub(crate) fn body(&self) -> &Value {
        match self {
            Patch::Merge(v) | Patch::Strategic(v) | Patch::Json(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_query_skips_empty_selectors() {
        let p = ListParams {
            label_selector: Some(String::new()),
            field_selector: Some("spec.nodeName=n1".into()),
            limit: Some(5),
        };
        assert_eq!(
            p.query(),
            vec![
                ("fieldSelector", "spec.nodeName=n1".to_string()),
                ("limit", "5".to_string())
            ]
        );
    }

    #[test]
    fn delete_body_carries_every_option() {
        let p = DeleteParams {
            propagation_policy: Some("Foreground".into()),
            grace_period_seconds: Some(0),
            preconditions_uid: Some("u1".into()),
        };
        let b = p.body();
        assert_eq!(b["propagationPolicy"], "Foreground");
        assert_eq!(b["gracePeriodSeconds"], 0);
        assert_eq!(b["preconditions"]["uid"], "u1");
        assert!(DeleteParams::default()
            .body()
            .get("propagationPolicy")
            .is_none());
    }
}
