//! DELETE with Kubernetes' propagation policies and namespace deletion.
//!
//! There is no garbage-collector controller: the request itself does what
//! Kubernetes' collector would do later, before it answers.
//! - Background (the default): the object goes, then its dependents (objects
//!   whose `metadata.ownerReferences` hold its uid), recursively.
//! - Foreground: the owner gets a deletionTimestamp and the
//!   `foregroundDeletion` finalizer, its dependents are deleted (foreground
//!   too), then the finalizer is removed and the owner goes. A dependent kept
//!   alive by finalizers of its own does not hold the owner back.
//! - Orphan: the dependents lose their reference to the owner, the owner goes.
//!
//! A dependent that still has another owner which exists only loses its
//! reference to the deleted one. Deleting a Namespace marks it Terminating
//! (new content is refused), removes every namespaced object in it, finalizers
//! or not, and then the namespace.

use std::future::Future;
use std::pin::Pin;

use corral_api::resource::{self, ResourceInfo};
use corral_api::validation::{FieldError, Path};
use corral_api::Status;
use serde_json::{json, Value};

use super::objects::{
    check_preconditions, decode_stored, meta_mut, meta_str, now, prefix, set_rv, store_error,
    Stored, SYSTEM_NAMESPACES,
};
use super::request::Request;
use super::response::{json, ApiResult, Resp};
use super::route::Target;
use super::Api;
use crate::store::{ListOptions, StoreError};

/// The finalizer that keeps an owner while its dependents are deleted.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// How often a write that lost an optimistic-concurrency race is retried.
const RETRIES: usize = 5;

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = ApiResult<T>> + Send + 'a>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

impl Propagation {
    /// From DeleteOptions (the body) or the query, `propagationPolicy` or
    /// the older `orphanDependents`.
    pub fn from_request(req: &Request, options: &Value) -> ApiResult<Propagation> {
        let policy = options
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .or(req.param("propagationPolicy"))
            .filter(|p| !p.is_empty());
        let orphan = options
            .get("orphanDependents")
            .and_then(Value::as_bool)
            .or(req.param("orphanDependents").map(|o| o == "true"));
        let path = Path::new("propagationPolicy");
        let invalid = |e: FieldError| Status::invalid("meta.k8s.io", "DeleteOptions", "", &[e]);
        match (policy, orphan) {
            (Some(p), Some(_)) => Err(invalid(FieldError::invalid(
                &path,
                p,
                "orphanDependents and propagationPolicy cannot both be set",
            ))
            .into()),
            (Some("Background"), None) | (None, None | Some(false)) => Ok(Propagation::Background),
            (Some("Foreground"), None) => Ok(Propagation::Foreground),
            (Some("Orphan"), None) | (None, Some(true)) => Ok(Propagation::Orphan),
            (Some(p), None) => Err(invalid(FieldError::not_supported(
                &path,
                p,
                &["Orphan", "Background", "Foreground"],
            ))
            .into()),
        }
    }
}

/// DeleteOptions' `dryRun: ["All"]`, where kubectl puts it for a delete.
fn body_dry_run(options: &Value) -> ApiResult<bool> {
    let Some(list) = options.get("dryRun").and_then(Value::as_array) else {
        return Ok(false);
    };
    for v in list {
        if v != "All" {
            return Err(Status::bad_request(format!(
                "invalid dryRun value {v}: the only supported value is \"All\""
            ))
            .into());
        }
    }
    Ok(!list.is_empty())
}

fn finalizers(v: &Value) -> Vec<String> {
    v.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn owner_refs(v: &Value) -> &[Value] {
    v.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn owned_by(v: &Value, uid: &str) -> bool {
    owner_refs(v)
        .iter()
        .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
}

/// Removes the references to `uid`; false when there were none.
fn drop_owner(v: &mut Value, uid: &str) -> bool {
    let meta = meta_mut(v);
    let Some(Value::Array(refs)) = meta.get_mut("ownerReferences") else {
        return false;
    };
    let before = refs.len();
    refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
    let changed = refs.len() != before;
    if refs.is_empty() {
        meta.remove("ownerReferences");
    }
    changed
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

impl Api {
    pub async fn delete(&self, t: &Target, req: &Request, name: &str) -> ApiResult<Resp> {
        let ns = t.namespace.as_deref().unwrap_or("");
        if t.info.kind == "Namespace" && SYSTEM_NAMESPACES.contains(&name) {
            return Err(Status::forbidden(
                "",
                "namespaces",
                name,
                "this namespace may not be deleted",
            )
            .into());
        }
        let options = if req.body.is_empty() {
            Value::Null
        } else {
            req.body_value()?
        };
        let policy = Propagation::from_request(req, &options)?;
        let dry_run = req.dry_run()? || body_dry_run(&options)?;
        let mut attempt = 0;
        loop {
            let old = self.get_stored(t.info, ns, name).await?;
            check_preconditions(t.info, &old.value, &options, name)?;
            if dry_run {
                return Ok(json(200, &old.value));
            }
            let done = if t.info.kind == "Namespace" {
                self.delete_namespace(t.info, old).await
            } else {
                self.delete_object(t.info, old, policy).await
            };
            // A write between our read and the delete (a controller's status
            // update) is no reason to fail the user's delete: read again, as
            // Kubernetes' apiserver does; the preconditions are checked anew.
            match done {
                Err(e) if attempt < DELETE_ATTEMPTS && is_modified(&e) => attempt += 1,
                other => return Ok(json(200, &other?)),
            }
        }
    }

    /// Deletes one object with `policy`; the object as last seen (marked for
    /// deletion when finalizers keep it).
    pub fn delete_object<'a>(
        &'a self,
        info: &'static ResourceInfo,
        old: Stored,
        policy: Propagation,
    ) -> BoxFut<'a, Value> {
        Box::pin(async move {
            match policy {
                Propagation::Foreground => return self.delete_foreground(info, old).await,
                Propagation::Orphan => self.orphan_dependents(info, &old.value).await?,
                Propagation::Background => {}
            }
            if !finalizers(&old.value).is_empty() {
                if old.value.pointer("/metadata/deletionTimestamp").is_some() {
                    return Ok(old.value);
                }
                let mut v = old.value.clone();
                let meta = meta_mut(&mut v);
                meta.insert("deletionTimestamp".into(), now());
                meta.insert("deletionGracePeriodSeconds".into(), 0.into());
                meta.remove("resourceVersion");
                return self.write_update(info, &old, v, false).await;
            }
            let name = meta_str(&old.value, "name").to_string();
            let (_, rev) = self
                .store
                .delete(&old.kv.key, Some(old.kv.mod_revision))
                .await
                .map_err(|e| store_error(e, info, &name))?;
            let mut v = old.value;
            set_rv(&mut v, rev);
            if policy == Propagation::Background {
                self.collect_dependents(info, &v, Propagation::Background)
                    .await?;
            }
            Ok(v)
        })
    }

    async fn delete_foreground(
        &self,
        info: &'static ResourceInfo,
        old: Stored,
    ) -> ApiResult<Value> {
        let mut v = old.value.clone();
        let meta = meta_mut(&mut v);
        if !meta.contains_key("deletionTimestamp") {
            meta.insert("deletionTimestamp".into(), now());
            meta.insert("deletionGracePeriodSeconds".into(), 0.into());
        }
        let list = meta
            .entry("finalizers")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = list {
            if !list.iter().any(|f| f == FOREGROUND_FINALIZER) {
                list.push(FOREGROUND_FINALIZER.into());
            }
        }
        meta.remove("resourceVersion");
        let marked = self.write_update(info, &old, v, false).await?;
        self.collect_dependents(info, &marked, Propagation::Foreground)
            .await?;
        let ns = meta_str(&marked, "namespace").to_string();
        let name = meta_str(&marked, "name").to_string();
        self.update_retrying(info, &ns, &name, |v| {
            let meta = meta_mut(v);
            let Some(Value::Array(list)) = meta.get_mut("finalizers") else {
                return false;
            };
            let before = list.len();
            list.retain(|f| f != FOREGROUND_FINALIZER);
            let changed = list.len() != before;
            if list.is_empty() {
                meta.remove("finalizers");
            }
            changed
        })
        .await?;
        Ok(marked)
    }

    async fn orphan_dependents(&self, info: &'static ResourceInfo, owner: &Value) -> ApiResult<()> {
        let uid = meta_str(owner, "uid").to_string();
        for (dinfo, dep) in self.dependents(info, owner).await? {
            let ns = meta_str(&dep.value, "namespace").to_string();
            let name = meta_str(&dep.value, "name").to_string();
            self.update_retrying(dinfo, &ns, &name, |v| drop_owner(v, &uid))
                .await?;
        }
        Ok(())
    }

    /// Deletes (with `policy`) the dependents of a deleted owner; those with
    /// another existing owner only lose the reference.
    pub fn collect_dependents<'a>(
        &'a self,
        info: &'static ResourceInfo,
        owner: &'a Value,
        policy: Propagation,
    ) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let uid = meta_str(owner, "uid").to_string();
            for (dinfo, dep) in self.dependents(info, owner).await? {
                let ns = meta_str(&dep.value, "namespace").to_string();
                let name = meta_str(&dep.value, "name").to_string();
                if self.has_other_live_owner(dinfo, &dep.value, &uid).await {
                    self.update_retrying(dinfo, &ns, &name, |v| drop_owner(v, &uid))
                        .await?;
                    continue;
                }
                self.delete_retrying(dinfo, &ns, &name, dep, policy).await?;
            }
            Ok(())
        })
    }

    /// Deletes one dependent, re-reading it when it changed meanwhile.
    async fn delete_retrying(
        &self,
        info: &'static ResourceInfo,
        ns: &str,
        name: &str,
        first: Stored,
        policy: Propagation,
    ) -> ApiResult<()> {
        let mut current = first;
        for _ in 0..RETRIES {
            match self.delete_object(info, current, policy).await {
                Ok(_) => return Ok(()),
                Err(e) if e.0.is_not_found() => return Ok(()),
                Err(e) if e.0.is_conflict() => {}
                Err(e) => return Err(e),
            }
            current = match self.get_stored(info, ns, name).await {
                Ok(s) => s,
                Err(e) if e.0.is_not_found() => return Ok(()),
                Err(e) => return Err(e),
            };
        }
        Err(Status::conflict(info.group, info.plural, name, Status::MODIFIED).into())
    }

    /// The stored objects whose ownerReferences name `owner`'s uid: in its
    /// namespace for a namespaced owner, anywhere for a cluster-scoped one.
    async fn dependents(
        &self,
        owner_info: &ResourceInfo,
        owner: &Value,
    ) -> ApiResult<Vec<(&'static ResourceInfo, Stored)>> {
        let uid = meta_str(owner, "uid");
        let ns = owner_info.namespaced.then(|| meta_str(owner, "namespace"));
        let mut out = Vec::new();
        if uid.is_empty() {
            return Ok(out);
        }
        for info in resource::RESOURCES {
            if ns.is_some() && !info.namespaced {
                continue;
            }
            let page = self
                .store
                .list(&prefix(info, ns), ListOptions::default())
                .await
                .map_err(|e| store_error(e, info, ""))?;
            // Most objects do not mention the uid at all: skip decoding them.
            for kv in page.items {
                if !contains(&kv.value, uid.as_bytes()) {
                    continue;
                }
                let value = decode_stored(&kv)?;
                if owned_by(&value, uid) {
                    out.push((info, Stored { kv, value }));
                }
            }
        }
        Ok(out)
    }

    async fn has_other_live_owner(&self, info: &ResourceInfo, dep: &Value, uid: &str) -> bool {
        let ns = if info.namespaced {
            meta_str(dep, "namespace")
        } else {
            ""
        };
        for r in owner_refs(dep) {
            let field = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
            if field("uid") == uid {
                continue;
            }
            let Some(oinfo) = resource::by_kind(field("apiVersion"), field("kind")) else {
                continue;
            };
            let ons = if oinfo.namespaced { ns } else { "" };
            if let Ok(o) = self.get_stored(oinfo, ons, field("name")).await {
                if meta_str(&o.value, "uid") == field("uid") {
                    return true;
                }
            }
        }
        false
    }

    /// Applies `change` to the stored object until the write wins a race;
    /// nothing when the object is gone or `change` changes nothing.
    async fn update_retrying(
        &self,
        info: &'static ResourceInfo,
        ns: &str,
        name: &str,
        change: impl Fn(&mut Value) -> bool,
    ) -> ApiResult<()> {
        for _ in 0..RETRIES {
            let old = match self.get_stored(info, ns, name).await {
                Ok(o) => o,
                Err(e) if e.0.is_not_found() => return Ok(()),
                Err(e) => return Err(e),
            };
            let mut v = old.value.clone();
            if !change(&mut v) {
                return Ok(());
            }
            meta_mut(&mut v).remove("resourceVersion");
            match self.write_update(info, &old, v, false).await {
                Ok(_) => return Ok(()),
                Err(e) if e.0.is_conflict() => continue,
                Err(e) if e.0.is_not_found() => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Err(Status::conflict(info.group, info.plural, name, Status::MODIFIED).into())
    }

    /// Marks the namespace Terminating, removes its contents, then it.
    async fn delete_namespace(&self, info: &ResourceInfo, old: Stored) -> ApiResult<Value> {
        let name = meta_str(&old.value, "name").to_string();
        let mut v = old.value.clone();
        let meta = meta_mut(&mut v);
        if !meta.contains_key("deletionTimestamp") {
            meta.insert("deletionTimestamp".into(), now());
            meta.insert("deletionGracePeriodSeconds".into(), 0.into());
        }
        meta.remove("resourceVersion");
        v["status"] = json!({"phase": "Terminating"});
        let bytes = serde_json::to_vec(&v).map_err(Status::internal_error)?;
        // Stored directly: write_update would delete an object with a
        // deletionTimestamp and no finalizers right away.
        let rev = self
            .store
            .update(&old.kv.key, bytes, old.kv.mod_revision)
            .await
            .map_err(|e| store_error(e, info, &name))?;
        set_rv(&mut v, rev);
        self.delete_namespace_contents(&name).await?;
        if finalizers(&v).is_empty() {
            let (_, rev) = self
                .store
                .delete(&old.kv.key, Some(rev))
                .await
                .map_err(|e| store_error(e, info, &name))?;
            set_rv(&mut v, rev);
        }
        Ok(v)
    }

    async fn delete_namespace_contents(&self, ns: &str) -> ApiResult<()> {
        for info in resource::RESOURCES.iter().filter(|r| r.namespaced) {
            let page = self
                .store
                .list(&prefix(info, Some(ns)), ListOptions::default())
                .await
                .map_err(|e| store_error(e, info, ""))?;
            for kv in page.items {
                match self.store.delete(&kv.key, None).await {
                    Ok(_) | Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(store_error(e, info, "")),
                }
            }
        }
        Ok(())
    }
}

/// How often a delete is tried again after the object changed under it.
const DELETE_ATTEMPTS: u32 = 5;

/// The store's compare-and-swap failed (not a precondition of the request).
fn is_modified(e: &crate::api::response::ApiError) -> bool {
    e.0.is_conflict() && e.0.message.contains(Status::MODIFIED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(query: &str) -> Request {
        Request {
            method: hyper::Method::DELETE,
            path: "/api/v1/namespaces/default/pods/x".into(),
            query: super::super::request::parse_query(Some(query)),
            content_type: String::new(),
            accept: String::new(),
            body: bytes::Bytes::new(),
        }
    }

    #[test]
    fn policies_from_query_and_body() {
        let p = |q: &str, body: Value| Propagation::from_request(&req(q), &body);
        assert_eq!(p("", Value::Null).unwrap(), Propagation::Background);
        assert_eq!(
            p("propagationPolicy=Foreground", Value::Null).unwrap(),
            Propagation::Foreground
        );
        assert_eq!(
            p("", json!({"propagationPolicy": "Orphan"})).unwrap(),
            Propagation::Orphan
        );
        assert_eq!(
            p("orphanDependents=true", Value::Null).unwrap(),
            Propagation::Orphan
        );
        let e = p("propagationPolicy=Sometimes", Value::Null).unwrap_err();
        assert_eq!(e.0.code, 422);
        let e = p(
            "",
            json!({"propagationPolicy": "Orphan", "orphanDependents": true}),
        )
        .unwrap_err();
        assert_eq!(e.0.code, 422);
    }

    #[test]
    fn dropping_an_owner_keeps_the_others() {
        let mut v = json!({"metadata": {"ownerReferences": [{"uid": "a"}, {"uid": "b"}]}});
        assert!(drop_owner(&mut v, "a"));
        assert_eq!(v["metadata"]["ownerReferences"], json!([{"uid": "b"}]));
        assert!(!drop_owner(&mut v, "a"));
        assert!(drop_owner(&mut v, "b"));
        assert!(v["metadata"].get("ownerReferences").is_none());
        assert!(owned_by(
            &json!({"metadata": {"ownerReferences": [{"uid": "u"}]}}),
            "u"
        ));
    }
}
