//! What steers a pod to a node: node affinity, taints and tolerations.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::time::Time;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Affinity {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_affinity: Option<NodeAffinity>,
    /// Accepted and kept; the scheduler does not act on pod (anti-)affinity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_affinity: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_anti_affinity: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct NodeAffinity {
    #[serde(
        rename = "requiredDuringSchedulingIgnoredDuringExecution",
        skip_serializing_if = "Option::is_none"
    )]
    pub required: Option<NodeSelector>,
    #[serde(
        rename = "preferredDuringSchedulingIgnoredDuringExecution",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub preferred: Vec<PreferredSchedulingTerm>,
}

/// Terms are ORed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct NodeSelector {
    pub node_selector_terms: Vec<NodeSelectorTerm>,
}

/// Expressions are ANDed; a term with none matches no node (as in Kubernetes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct NodeSelectorTerm {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<NodeSelectorRequirement>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_fields: Vec<NodeSelectorRequirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSelectorRequirement {
    pub key: String,
    pub operator: NodeSelectorOperator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeSelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PreferredSchedulingTerm {
    pub weight: i32,
    pub preference: NodeSelectorTerm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Taint {
    pub key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    pub effect: TaintEffect,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_added: Option<Time>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TolerationOperator {
    Exists,
    Equal,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Toleration {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// Equal when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<TolerationOperator>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// All effects when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect: Option<TaintEffect>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

impl NodeSelectorRequirement {
    /// Against a node's labels (matchExpressions) or fields (matchFields).
    pub fn matches(&self, values: &BTreeMap<String, String>) -> bool {
        let have = values.get(&self.key);
        let listed = |v: &String| self.values.contains(v);
        let cmp = |v: &String, f: fn(i64, i64) -> bool| match (
            v.parse::<i64>(),
            self.values.first().map(|w| w.parse::<i64>()),
        ) {
            (Ok(a), Some(Ok(b))) => f(a, b),
            _ => false,
        };
        match self.operator {
            NodeSelectorOperator::In => have.is_some_and(listed),
            NodeSelectorOperator::NotIn => !have.is_some_and(listed),
            NodeSelectorOperator::Exists => have.is_some(),
            NodeSelectorOperator::DoesNotExist => have.is_none(),
            NodeSelectorOperator::Gt => have.is_some_and(|v| cmp(v, |a, b| a > b)),
            NodeSelectorOperator::Lt => have.is_some_and(|v| cmp(v, |a, b| a < b)),
        }
    }
}

impl NodeSelectorTerm {
    /// `fields` holds `metadata.name` for matchFields, the only field Kubernetes supports.
    pub fn matches(
        &self,
        labels: &BTreeMap<String, String>,
        fields: &BTreeMap<String, String>,
    ) -> bool {
        if self.match_expressions.is_empty() && self.match_fields.is_empty() {
            return false;
        }
        self.match_expressions.iter().all(|r| r.matches(labels))
            && self.match_fields.iter().all(|r| r.matches(fields))
    }
}

impl NodeSelector {
    pub fn matches(
        &self,
        labels: &BTreeMap<String, String>,
        fields: &BTreeMap<String, String>,
    ) -> bool {
        self.node_selector_terms
            .iter()
            .any(|t| t.matches(labels, fields))
    }
}

impl Toleration {
    /// Kubernetes' ToleratesTaint: an empty key with Exists tolerates every taint.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if self.effect.is_some_and(|e| e != taint.effect) {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        match self.operator.unwrap_or(TolerationOperator::Equal) {
            TolerationOperator::Exists => true,
            TolerationOperator::Equal => self.value == taint.value,
        }
    }
}

/// True when every NoSchedule/NoExecute taint is tolerated (PreferNoSchedule only scores).
pub fn tolerates_all(tolerations: &[Toleration], taints: &[Taint]) -> bool {
    taints
        .iter()
        .filter(|t| t.effect != TaintEffect::PreferNoSchedule)
        .all(|t| tolerations.iter().any(|tol| tol.tolerates(t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn node_affinity_terms() {
        let a: Affinity = serde_json::from_value(serde_json::json!({
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]},
                                          {"key": "cores", "operator": "Gt", "values": ["4"]}]},
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n9"]}]}
                ]},
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}}
                ]
            }
        }))
        .unwrap();
        let req = a.node_affinity.as_ref().unwrap().required.as_ref().unwrap();
        let none = BTreeMap::new();
        assert!(req.matches(&map(&[("disk", "ssd"), ("cores", "8")]), &none));
        assert!(!req.matches(&map(&[("disk", "ssd"), ("cores", "2")]), &none));
        assert!(req.matches(&none, &map(&[("metadata.name", "n9")])));
        assert!(!NodeSelectorTerm::default().matches(&none, &none));
    }

    #[test]
    fn tolerations() {
        let taint = Taint {
            key: "node.kubernetes.io/unreachable".into(),
            value: String::new(),
            effect: TaintEffect::NoExecute,
            time_added: None,
        };
        let exists: Toleration = serde_json::from_value(serde_json::json!({
            "key": "node.kubernetes.io/unreachable", "operator": "Exists",
            "effect": "NoExecute", "tolerationSeconds": 300
        }))
        .unwrap();
        assert!(exists.tolerates(&taint));
        let wrong_effect = Toleration {
            effect: Some(TaintEffect::NoSchedule),
            ..exists.clone()
        };
        assert!(!wrong_effect.tolerates(&taint));
        let everything = Toleration {
            operator: Some(TolerationOperator::Exists),
            ..Toleration::default()
        };
        assert!(everything.tolerates(&taint));
        assert!(!tolerates_all(&[], std::slice::from_ref(&taint)));
        let soft = Taint {
            effect: TaintEffect::PreferNoSchedule,
            ..taint
        };
        assert!(tolerates_all(&[], &[soft]));
    }
}
