//! `List<T>`: the body of a list response (`PodList`, `DeploymentList`, ...).

use serde::{Deserialize, Serialize};

use crate::meta::ListMeta;
use crate::resource::Resource;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct List<T> {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub metadata: ListMeta,
    /// Always written, `[]` when empty, as clients expect.
    pub items: Vec<T>,
}

impl<T: Resource> List<T> {
    /// A `PodList` (or other kind's list) at `resource_version`.
    pub fn new(items: Vec<T>, resource_version: &str) -> List<T> {
        List {
            api_version: T::api_version(),
            kind: format!("{}List", T::KIND),
            metadata: ListMeta {
                resource_version: resource_version.to_string(),
                ..ListMeta::default()
            },
            items,
        }
    }

    /// Gives each item its `apiVersion` and `kind`, which the API server
    /// omits inside typed lists but `kubectl get -o json` shows.
    pub fn fill_item_types(&mut self) {
        for item in &mut self.items {
            item.set_type_meta();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Pod;

    #[test]
    fn pod_list_shape() {
        let mut list = List::new(vec![Pod::named("default", "a")], "42");
        let v = serde_json::to_value(&list).unwrap();
        assert_eq!(v["kind"], "PodList");
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["metadata"]["resourceVersion"], "42");
        assert_eq!(v["items"][0]["metadata"]["name"], "a");
        let empty: List<Pod> = List::new(Vec::new(), "1");
        assert_eq!(
            serde_json::to_value(&empty).unwrap()["items"],
            serde_json::json!([])
        );
        list.items[0].kind.clear();
        list.fill_item_types();
        assert_eq!(list.items[0].kind, "Pod");
        let back: List<Pod> = serde_json::from_value(v).unwrap();
        assert_eq!(back, list);
    }
}
