//! The verbs on stored objects: create, get, list, update, delete, patch and
//! the `/status`, `/scale` and `/binding` subresources.
//!
//! Objects travel as JSON values; every write goes through the typed
//! [`Object`] once (strict decoding, defaults, validation) so nothing that
//! Kubernetes would refuse is stored. The store's `mod_revision` is the
//! object's resourceVersion: it is filled in on every read and stripped
//! before every write.

use base64::Engine;
use corral_api::manifest::{ManifestError, Object};
use corral_api::meta::{FieldSelector, Selector};
use corral_api::resource::{self, ResourceInfo};
use corral_api::{DecodeError, Status, Time};
use serde_json::{json, Map, Value};

use super::patch;
use super::request::Request;
use super::response::{json, ApiError, ApiResult, Resp};
use super::route::Target;
use super::Api;
use crate::store::{KeyValue, StoreError};

/// Namespaces that exist from the start and may not be deleted.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// How often a write that lost an optimistic-concurrency race without the
/// client asking for a precondition (patch, binding) is retried.
const RETRIES: usize = 5;

pub fn key(info: &ResourceInfo, namespace: &str, name: &str) -> String {
    if info.namespaced {
        format!("/registry/{}/{namespace}/{name}", info.plural)
    } else {
        format!("/registry/{}/{name}", info.plural)
    }
}

pub fn prefix(info: &ResourceInfo, namespace: Option<&str>) -> String {
    match namespace.filter(|_| info.namespaced) {
        Some(ns) => format!("/registry/{}/{ns}/", info.plural),
        None => format!("/registry/{}/", info.plural),
    }
}

pub fn store_error(e: StoreError, info: &ResourceInfo, name: &str) -> ApiError {
    let s = match e {
        StoreError::AlreadyExists { .. } => Status::already_exists(info.group, info.plural, name),
        StoreError::NotFound { .. } => Status::not_found(info.group, info.plural, name),
        StoreError::Conflict { .. } => {
            Status::conflict(info.group, info.plural, name, Status::MODIFIED)
        }
        StoreError::Compacted {
            requested,
            compact_revision,
        } => Status::expired(format!(
            "too old resource version: {requested} ({compact_revision})"
        )),
        StoreError::FutureRevision { requested, current } => Status::failure(
            504,
            "Timeout",
            format!("Too large resource version: {requested}, current: {current}"),
        ),
        other => Status::internal_error(other),
    };
    s.into()
}

fn bad_request(msg: impl Into<String>) -> ApiError {
    Status::bad_request(msg).into()
}

fn internal(msg: impl std::fmt::Display) -> ApiError {
    Status::internal_error(msg).into()
}

/// `metadata` of a JSON object, created when missing.
pub fn meta_mut(v: &mut Value) -> &mut Map<String, Value> {
    let obj = match v {
        Value::Object(o) => o,
        other => {
            *other = Value::Object(Map::new());
            match other {
                Value::Object(o) => o,
                _ => unreachable!("just set to an object"),
            }
        }
    };
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    match meta {
        Value::Object(m) => m,
        _ => unreachable!("just set to an object"),
    }
}

pub fn meta_str<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn set_rv(v: &mut Value, revision: i64) {
    meta_mut(v).insert("resourceVersion".into(), revision.to_string().into());
}

/// A stored object as JSON with its resourceVersion.
pub fn decode_stored(kv: &KeyValue) -> ApiResult<Value> {
    let mut v: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| internal(format!("stored object {} is not JSON: {e}", kv.key)))?;
    set_rv(&mut v, kv.mod_revision);
    Ok(v)
}

pub fn now() -> Value {
    serde_json::to_value(Time::now()).unwrap_or(Value::Null)
}

pub fn new_uid() -> String {
    let mut b = [0u8; 16];
    // A uid only has to be unique; if the OS has no randomness the process
    // could not have made its tokens either, so this cannot fail here.
    let _ = getrandom::getrandom(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Kubernetes' generateName suffix: five characters without vowels.
fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut b = [0u8; 5];
    let _ = getrandom::getrandom(&mut b);
    b.iter()
        .map(|x| ALPHABET[usize::from(*x) % ALPHABET.len()] as char)
        .collect()
}

/// Fills apiVersion/kind when absent; refuses a body of another kind.
fn check_type(info: &ResourceInfo, v: &mut Value) -> ApiResult<()> {
    let want_version = info.api_version();
    let obj = v
        .as_object_mut()
        .ok_or_else(|| bad_request("the body must be a JSON object"))?;
    let have = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (version, kind) = (have("apiVersion"), have("kind"));
    if !version.is_empty() && version != want_version {
        return Err(bad_request(format!(
            "the API version in the data ({version}) does not match the expected API version ({want_version})"
        )));
    }
    if !kind.is_empty() && kind != info.kind {
        return Err(bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            info.kind
        )));
    }
    obj.insert("apiVersion".into(), want_version.into());
    obj.insert("kind".into(), info.kind.into());
    Ok(())
}

/// Strict decoding into the typed object, with Kubernetes' wording.
pub fn decode_object(info: &ResourceInfo, value: Value) -> ApiResult<Object> {
    Object::from_value(value, 1).map_err(|e| {
        let detail = match &e {
            ManifestError::Field {
                error: DecodeError::Field { path, message },
                ..
            } if message == "unknown field" => {
                format!("strict decoding error: unknown field \"{path}\"")
            }
            ManifestError::Field { error, .. } => error.to_string(),
            other => other.to_string(),
        };
        bad_request(format!(
            "{kind} in version \"{v}\" cannot be handled as a {kind}: {detail}",
            kind = info.kind,
            v = info.version
        ))
    })
}

/// Decode, default, validate; the JSON to store (without resourceVersion).
pub fn finalize(info: &ResourceInfo, value: Value) -> ApiResult<Value> {
    let mut obj = decode_object(info, value)?;
    obj.apply_defaults();
    let errs = obj.validate();
    if !errs.is_empty() {
        let name = obj.name().to_string();
        return Err(Status::invalid(info.group, info.kind, &name, &errs).into());
    }
    let mut v = obj.to_value().map_err(internal)?;
    meta_mut(&mut v).remove("resourceVersion");
    Ok(v)
}

fn to_bytes(v: &Value) -> ApiResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(internal)
}

/// What a kind's status looks like right after create.
fn initial_status(info: &ResourceInfo, v: &mut Value) {
    let Some(obj) = v.as_object_mut() else { return };
    match info.kind {
        "Deployment" | "ReplicaSet" => {
            obj.remove("status");
        }
        "Pod" => {
            let status = obj.entry("status").or_insert_with(|| json!({}));
            if status.get("phase").is_none() {
                status["phase"] = "Pending".into();
            }
        }
        "Namespace" => {
            obj.insert("status".into(), json!({"phase": "Active"}));
        }
        _ => {}
    }
}

/// One stored object: the store's record and its JSON.
pub struct Stored {
    pub kv: KeyValue,
    pub value: Value,
}

impl Api {
    /// The stored record of one object; 404 when there is none.
    async fn fetch(&self, info: &ResourceInfo, ns: &str, name: &str) -> ApiResult<KeyValue> {
        self.store
            .get(&key(info, ns, name))
            .await
            .map_err(|e| store_error(e, info, name))?
            .ok_or_else(|| ApiError::from(Status::not_found(info.group, info.plural, name)))
    }

    pub async fn get_stored(&self, info: &ResourceInfo, ns: &str, name: &str) -> ApiResult<Stored> {
        let kv = self.fetch(info, ns, name).await?;
        let value = decode_stored(&kv)?;
        Ok(Stored { kv, value })
    }

    /// Creates `value` as a new object of `info` in `ns`.
    pub async fn create_value(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        mut value: Value,
        dry_run: bool,
    ) -> ApiResult<Value> {
        check_type(info, &mut value)?;
        let ns = self.request_namespace(info, ns, &value)?;
        let meta = meta_mut(&mut value);
        if info.namespaced {
            meta.insert("namespace".into(), ns.clone().into());
        } else {
            meta.remove("namespace");
        }
        let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
        let generate = meta
            .get("generateName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if name.is_empty() && !generate.is_empty() {
            let generated = format!("{generate}{}", name_suffix());
            meta.insert("name".into(), generated.into());
        }
        for field in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(field);
        }
        meta.insert("uid".into(), new_uid().into());
        meta.insert("creationTimestamp".into(), now());
        meta.insert("generation".into(), 1.into());
        initial_status(info, &mut value);
        let mut v = finalize(info, value)?;
        let name = meta_str(&v, "name").to_string();
        if info.namespaced {
            self.require_namespace(&ns).await?;
        }
        let _allocated = match info.kind {
            "Service" => Some(self.allocate_service(&mut v, None).await?),
            _ => None,
        };
        if dry_run {
            // As the real create would answer, minus the resourceVersion
            // no write produced.
            if self
                .store
                .get(&key(info, &ns, &name))
                .await
                .ok()
                .flatten()
                .is_some()
            {
                return Err(Status::already_exists(info.group, info.plural, &name).into());
            }
            return Ok(v);
        }
        let rev = self
            .store
            .create(&key(info, &ns, &name), to_bytes(&v)?)
            .await
            .map_err(|e| store_error(e, info, &name))?;
        set_rv(&mut v, rev);
        Ok(v)
    }

    /// The namespace a write goes to: the URL's, which the body may repeat.
    fn request_namespace(
        &self,
        info: &ResourceInfo,
        url_ns: Option<&str>,
        body: &Value,
    ) -> ApiResult<String> {
        if !info.namespaced {
            return Ok(String::new());
        }
        let body_ns = meta_str(body, "namespace");
        match url_ns {
            Some(ns) if body_ns.is_empty() || body_ns == ns => Ok(ns.to_string()),
            Some(_) => Err(bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            )),
            None => Err(Status::method_not_supported(info.group, info.plural, "create").into()),
        }
    }

    async fn require_namespace(&self, ns: &str) -> ApiResult<()> {
        let ns_info = resource::by_plural("", "namespaces")
            .ok_or_else(|| internal("namespaces missing from the table of kinds"))?;
        let existing = self.get_stored(ns_info, "", ns).await?;
        if existing
            .value
            .pointer("/status/phase")
            .and_then(Value::as_str)
            == Some("Terminating")
        {
            return Err(Status::forbidden(
                "",
                "namespaces",
                ns,
                "unable to create new content in namespace because it is being terminated",
            )
            .into());
        }
        Ok(())
    }

    pub async fn create(&self, t: &Target, req: &Request) -> ApiResult<Resp> {
        if t.info.kind == "Binding" {
            let body = req.body_value()?;
            let name = meta_str(&body, "name").to_string();
            let ns = t.namespace.clone().unwrap_or_default();
            return self.bind(&ns, &name, body).await;
        }
        let v = self
            .create_value(
                t.info,
                t.namespace.as_deref(),
                req.body_value()?,
                req.dry_run()?,
            )
            .await?;
        Ok(json(201, &v))
    }

    pub async fn get(&self, t: &Target, req: &Request, name: &str) -> ApiResult<Resp> {
        let ns = t.namespace.as_deref().unwrap_or("");
        if t.subresource.as_deref() != Some("scale") && !req.wants_table() {
            return self.get_raw(t.info, ns, name).await;
        }
        let stored = self.get_stored(t.info, ns, name).await?;
        if t.subresource.as_deref() == Some("scale") {
            return Ok(json(200, &scale_view(t.info, &stored.value)));
        }
        let rev = stored.kv.mod_revision;
        Ok(json(
            200,
            &super::table::table(t.info, &[stored.value], &rev.to_string(), ""),
        ))
    }

    /// GET of the object as stored, its resourceVersion spliced in.
    async fn get_raw(&self, info: &ResourceInfo, ns: &str, name: &str) -> ApiResult<Resp> {
        let kv = self.fetch(info, ns, name).await?;
        let mut body = Vec::with_capacity(kv.value.len() + 40);
        write_stored(&kv, kv.mod_revision, &mut body)?;
        Ok(super::response::bytes_response(
            200,
            "application/json",
            body,
        ))
    }

    pub async fn list(&self, t: &Target, req: &Request) -> ApiResult<Resp> {
        let filter = Filter::from_request(req)?;
        let (limit, cont) = (list_limit(req)?, req.param("continue"));
        if req.wants_table() {
            let (items, rev, cont) = self.list_values(t, limit, cont, &filter).await?;
            return Ok(json(
                200,
                &super::table::table(t.info, &items, &rev.to_string(), &cont),
            ));
        }
        super::list::list_raw(
            self.store.clone(),
            t.info,
            t.namespace.as_deref(),
            limit,
            cont,
            filter,
        )
        .await
    }

    /// The matching objects, the revision they were read at and the
    /// continue token of the next page ("" when there is none).
    pub async fn list_values(
        &self,
        t: &Target,
        limit: usize,
        cont: Option<&str>,
        filter: &Filter,
    ) -> ApiResult<(Vec<Value>, i64, String)> {
        let mut items = Vec::new();
        let (rev, cont) = self
            .list_each(t, limit, cont, filter, |v| items.push(v))
            .await?;
        Ok((items, rev, cont))
    }

    /// Hands each matching object to `each`, in key order; the revision they
    /// were read at and the continue token of the next page ("" when none).
    async fn list_each(
        &self,
        t: &Target,
        limit: usize,
        cont: Option<&str>,
        filter: &Filter,
        mut each: impl FnMut(Value) + Send,
    ) -> ApiResult<(i64, String)> {
        let mut pager = super::list::Pager::new(
            self.store.clone(),
            t.info,
            t.namespace.as_deref(),
            limit,
            cont,
        )?;
        while let Some(page) = pager.next().await? {
            for kv in &page {
                if filter.matches_stored(kv)? {
                    pager.found(1);
                    each(decode_stored(kv)?);
                }
            }
        }
        Ok((pager.revision(), pager.continue_token()))
    }

    pub async fn update(&self, t: &Target, req: &Request, name: &str) -> ApiResult<Resp> {
        let ns = t.namespace.as_deref().unwrap_or("");
        let body = req.body_value()?;
        // Without a resourceVersion a PUT is unconditional: a write landing
        // between our read and ours is retried over, as patches are.
        let unconditional = meta_str(&body, "resourceVersion").is_empty();
        let sub = t.subresource.as_deref();
        for _ in 0..RETRIES {
            let old = self.get_stored(t.info, ns, name).await?;
            let new = if sub == Some("scale") {
                apply_scale(t.info, &old.value, body.clone())?
            } else {
                updated_value(t.info, &old.value, body.clone(), sub, name)?
            };
            match self.write_update(t.info, &old, new, req.dry_run()?).await {
                Err(e) if e.0.is_conflict() && unconditional => continue,
                Err(e) => return Err(e),
                Ok(v) => return Ok(self.subresource_response(t, v)),
            }
        }
        Err(Status::conflict(t.info.group, t.info.plural, name, Status::MODIFIED).into())
    }

    fn subresource_response(&self, t: &Target, v: Value) -> Resp {
        if t.subresource.as_deref() == Some("scale") {
            json(200, &scale_view(t.info, &v))
        } else {
            json(200, &v)
        }
    }

    /// Stores `new` over `old` (compare-and-swap on old's revision); an object
    /// being deleted whose last finalizer is gone is deleted for real, and
    /// then its dependents (background propagation). A dry run stores
    /// nothing and answers with old's resourceVersion.
    pub async fn write_update(
        &self,
        info: &'static ResourceInfo,
        old: &Stored,
        mut new: Value,
        dry_run: bool,
    ) -> ApiResult<Value> {
        let name = meta_str(&new, "name").to_string();
        let finalizers_left = new
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        let deleting = new.pointer("/metadata/deletionTimestamp").is_some();
        let _allocated = match info.kind {
            "Service" if !deleting => {
                Some(self.allocate_service(&mut new, Some(&old.value)).await?)
            }
            _ => None,
        };
        if dry_run {
            set_rv(&mut new, old.kv.mod_revision);
            return Ok(new);
        }
        if deleting && !finalizers_left {
            let (_, rev) = self
                .store
                .delete(&old.kv.key, Some(old.kv.mod_revision))
                .await
                .map_err(|e| store_error(e, info, &name))?;
            set_rv(&mut new, rev);
            self.collect_dependents(info, &new, super::delete::Propagation::Background)
                .await?;
            return Ok(new);
        }
        let rev = self
            .store
            .update(&old.kv.key, to_bytes(&new)?, old.kv.mod_revision)
            .await
            .map_err(|e| store_error(e, info, &name))?;
        set_rv(&mut new, rev);
        Ok(new)
    }

    pub async fn patch(&self, t: &Target, req: &Request, name: &str) -> ApiResult<Resp> {
        let ns = t.namespace.as_deref().unwrap_or("");
        let kind = patch::Kind::from_media_type(&req.media_type())?;
        let body = if kind == patch::Kind::Json {
            req.body_json()?
        } else {
            req.body_value()?
        };
        let dry_run = req.dry_run()?;
        let has_precondition = !meta_str(&body, "resourceVersion").is_empty();
        let sub = t.subresource.as_deref();
        for _ in 0..RETRIES {
            let old = match self.get_stored(t.info, ns, name).await {
                Ok(old) => old,
                Err(e) if kind == patch::Kind::Apply && e.0.is_not_found() && sub.is_none() => {
                    let mut v = body.clone();
                    meta_mut(&mut v).insert("name".into(), name.into());
                    let created = self
                        .create_value(t.info, t.namespace.as_deref(), v, dry_run)
                        .await?;
                    return Ok(json(201, &created));
                }
                Err(e) => return Err(e),
            };
            let new = if sub == Some("scale") {
                let patched = kind.apply(scale_view(t.info, &old.value), &body)?;
                apply_scale(t.info, &old.value, patched)?
            } else {
                let patched = kind.apply(old.value.clone(), &body)?;
                updated_value(t.info, &old.value, patched, sub, name)?
            };
            match self.write_update(t.info, &old, new, dry_run).await {
                Err(e) if e.0.is_conflict() && !has_precondition => continue,
                Err(e) => return Err(e),
                Ok(v) => return Ok(self.subresource_response(t, v)),
            }
        }
        Err(Status::conflict(t.info.group, t.info.plural, name, Status::MODIFIED).into())
    }

    /// DELETE on a collection: every object the selectors match.
    pub async fn delete_collection(&self, t: &Target, req: &Request) -> ApiResult<Resp> {
        let filter = Filter::from_request(req)?;
        let (items, rev, _) = self.list_values(t, 0, None, &filter).await?;
        let mut deleted = Vec::new();
        for item in items {
            let name = meta_str(&item, "name").to_string();
            let ns = meta_str(&item, "namespace").to_string();
            let one = Target {
                name: Some(name.clone()),
                namespace: Some(ns),
                ..t.clone()
            };
            match self.delete(&one, req, &name).await {
                Ok(_) => deleted.push(item),
                Err(e) if e.0.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(json(
            200,
            &json!({
                "apiVersion": t.info.api_version(),
                "kind": t.info.list_kind(),
                "metadata": {"resourceVersion": rev.to_string()},
                "items": deleted,
            }),
        ))
    }

    /// Sets a pod's `spec.nodeName` once (the scheduler's write).
    pub async fn bind(&self, ns: &str, name: &str, body: Value) -> ApiResult<Resp> {
        let binding: corral_api::core::Binding = corral_api::decode::from_value(body)
            .map_err(|e| bad_request(format!("Binding: {e}")))?;
        let errs = binding.validate();
        let pods = resource::by_plural("", "pods").ok_or_else(|| internal("no pods kind"))?;
        if !errs.is_empty() {
            return Err(Status::invalid("", "Binding", name, &errs).into());
        }
        let node = binding.target.name;
        for _ in 0..RETRIES {
            let old = self.get_stored(pods, ns, name).await?;
            let current = old
                .value
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !current.is_empty() {
                return Err(Status::conflict(
                    "",
                    "pods",
                    name,
                    &format!("pod {name} is already assigned to node {current:?}"),
                )
                .into());
            }
            let mut v = old.value.clone();
            v["spec"]["nodeName"] = node.clone().into();
            add_condition(&mut v, "PodScheduled");
            meta_mut(&mut v).remove("resourceVersion");
            match self.write_update(pods, &old, v, false).await {
                Err(e) if e.0.is_conflict() => continue,
                Err(e) => return Err(e),
                Ok(_) => {
                    let mut s = Status::success();
                    s.code = 201;
                    return Ok(json(201, &s));
                }
            }
        }
        Err(Status::conflict("", "pods", name, Status::MODIFIED).into())
    }

    /// Creates the system namespaces that do not exist yet.
    pub async fn ensure_system_namespaces(&self) -> ApiResult<()> {
        let info = resource::by_plural("", "namespaces")
            .ok_or_else(|| internal("namespaces missing from the table of kinds"))?;
        for ns in SYSTEM_NAMESPACES {
            let v = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            match self.create_value(info, None, v, false).await {
                Ok(_) => {}
                Err(e) if e.0.is_already_exists() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn add_condition(v: &mut Value, type_: &str) {
    let status = v
        .as_object_mut()
        .map(|o| o.entry("status").or_insert_with(|| json!({})));
    let Some(status) = status else { return };
    if !status.is_object() {
        *status = json!({});
    }
    let conds = status
        .as_object_mut()
        .map(|s| s.entry("conditions").or_insert_with(|| json!([])));
    let Some(Value::Array(conds)) = conds else {
        return;
    };
    conds.retain(|c| c.get("type").and_then(Value::as_str) != Some(type_));
    conds.push(json!({"type": type_, "status": "True", "lastProbeTime": null, "lastTransitionTime": now()}));
}

pub fn check_preconditions(
    info: &ResourceInfo,
    old: &Value,
    options: &Value,
    name: &str,
) -> ApiResult<()> {
    let Some(pre) = options.get("preconditions") else {
        return Ok(());
    };
    for (field, what) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
        let Some(want) = pre.get(field).and_then(Value::as_str) else {
            continue;
        };
        let have = meta_str(old, field);
        if want != have {
            let why = format!(
                "Precondition failed: {what} in precondition: {want}, {what} in object meta: {have}"
            );
            return Err(Status::conflict(info.group, info.plural, name, &why).into());
        }
    }
    Ok(())
}

/// The object after a PUT (or a patch) of `body` over `old`: identity and
/// bookkeeping fields kept, status only through `/status`, generation
/// bumped when the spec changes.
pub fn updated_value(
    info: &ResourceInfo,
    old: &Value,
    mut body: Value,
    sub: Option<&str>,
    name: &str,
) -> ApiResult<Value> {
    check_type(info, &mut body)?;
    let body_name = meta_str(&body, "name");
    if !body_name.is_empty() && body_name != name {
        return Err(bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let old_ns = meta_str(old, "namespace");
    let body_ns = meta_str(&body, "namespace");
    if info.namespaced && !body_ns.is_empty() && body_ns != old_ns {
        return Err(bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let rv = meta_str(&body, "resourceVersion");
    if !rv.is_empty() && rv != meta_str(old, "resourceVersion") {
        return Err(Status::conflict(info.group, info.plural, name, Status::MODIFIED).into());
    }
    let has_status = info.subresources.contains(&"status");
    let mut new = if sub == Some("status") {
        let mut v = old.clone();
        match body.get("status") {
            Some(s) => v["status"] = s.clone(),
            None => {
                v.as_object_mut().map(|o| o.remove("status"));
            }
        }
        v
    } else {
        if has_status {
            match old.get("status") {
                Some(s) => body["status"] = s.clone(),
                None => {
                    body.as_object_mut().map(|o| o.remove("status"));
                }
            }
        }
        body
    };
    let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let meta = meta_mut(&mut new);
    for field in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_meta.get(field) {
            Some(v) => meta.insert(field.into(), v.clone()),
            None => meta.remove(field),
        };
    }
    meta.remove("resourceVersion");
    if new.get("spec") != old.get("spec") {
        let generation = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta_mut(&mut new).insert("generation".into(), (generation + 1).into());
    }
    let v = finalize(info, new)?;
    if sub != Some("status") {
        super::immutable::check(info, old, &v)?;
    }
    Ok(v)
}

/// autoscaling/v1 Scale of a Deployment or ReplicaSet.
pub fn scale_view(_info: &ResourceInfo, obj: &Value) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let pick = |k: &str| meta.get(k).cloned().unwrap_or(Value::Null);
    let selector = obj
        .pointer("/spec/selector")
        .and_then(|s| serde_json::from_value::<corral_api::LabelSelector>(s.clone()).ok())
        .map(|s| s.to_selector().to_string())
        .unwrap_or_default();
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": pick("name"),
            "namespace": pick("namespace"),
            "uid": pick("uid"),
            "resourceVersion": pick("resourceVersion"),
            "creationTimestamp": pick("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(1.into())},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(0.into()),
            "selector": selector,
        },
    })
}

/// The object with the replicas of a written Scale.
fn apply_scale(info: &ResourceInfo, old: &Value, scale: Value) -> ApiResult<Value> {
    let name = meta_str(old, "name").to_string();
    let parsed: corral_api::apps::Scale =
        corral_api::decode::from_value(scale.clone()).map_err(|e| {
            bad_request(format!(
                "Scale in version \"v1\" cannot be handled as a Scale: {e}"
            ))
        })?;
    let rv = &parsed.metadata.resource_version;
    if !rv.is_empty() && rv != meta_str(old, "resourceVersion") {
        return Err(Status::conflict(info.group, info.plural, &name, Status::MODIFIED).into());
    }
    let replicas = parsed.spec.replicas.unwrap_or(0);
    if replicas < 0 {
        let path = corral_api::validation::Path::new("spec").child("replicas");
        let err = corral_api::validation::FieldError::invalid(
            &path,
            replicas,
            "must be greater than or equal to 0",
        );
        return Err(Status::invalid("autoscaling", "Scale", &name, &[err]).into());
    }
    let mut v = old.clone();
    v["spec"]["replicas"] = replicas.into();
    meta_mut(&mut v).remove("resourceVersion");
    updated_value(info, old, v, None, &name)
}

pub(super) fn list_limit(req: &Request) -> ApiResult<usize> {
    match req.param("limit") {
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| bad_request(format!("invalid limit {l:?}"))),
        None => Ok(0),
    }
}

pub(super) fn encode_continue(revision: i64, key: &str) -> String {
    let token = json!({"rv": revision, "start": key}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token)
}

pub(super) fn decode_continue(token: &str) -> ApiResult<(i64, String)> {
    let bad = || bad_request(format!("invalid continue token {token:?}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rev = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    Ok((rev, start.to_string()))
}

/// Label and field selectors of a list or watch.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    labels: Selector,
    fields: FieldSelector,
    /// The JSON paths the selectors read (see [`Filter::matches_stored`]).
    paths: Vec<Vec<String>>,
}

impl Filter {
    pub fn new(labels: Selector, fields: FieldSelector) -> Filter {
        let mut f = Filter {
            labels,
            fields,
            paths: Vec::new(),
        };
        f.paths = f.compute_paths();
        f
    }

    pub fn from_request(req: &Request) -> ApiResult<Filter> {
        let labels = Selector::parse(req.param("labelSelector").unwrap_or(""))
            .map_err(|e| bad_request(format!("unable to parse requirement: {e}")))?;
        let fields = FieldSelector::parse(req.param("fieldSelector").unwrap_or(""))
            .map_err(|e| bad_request(e.to_string()))?;
        Ok(Filter::new(labels, fields))
    }

    /// Also requires `metadata.name=name` (a watch of one object).
    pub fn with_name(mut self, name: &str) -> Filter {
        self.fields
            .requirements
            .push(corral_api::meta::FieldRequirement {
                field: "metadata.name".into(),
                op: corral_api::meta::FieldOp::Equals,
                value: name.into(),
            });
        self.paths = self.compute_paths();
        self
    }

    fn compute_paths(&self) -> Vec<Vec<String>> {
        let mut paths: Vec<Vec<String>> = Vec::new();
        if !self.labels.is_empty() {
            paths.push(vec!["metadata".into(), "labels".into()]);
        }
        for r in &self.fields.requirements {
            paths.push(r.field.split('.').map(str::to_string).collect());
        }
        paths
    }

    /// True when every object matches (no selector at all).
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Whether the stored object matches, reading only the fields the
    /// selectors compare (the rest is skipped, not decoded).
    pub fn matches_stored(&self, kv: &KeyValue) -> ApiResult<bool> {
        if self.is_empty() {
            return Ok(true);
        }
        let picked = super::rawjson::pick(&kv.value, &self.paths)
            .map_err(|e| internal(format!("stored object {} is not JSON: {e}", kv.key)))?;
        Ok(self.matches(&picked))
    }

    pub fn matches(&self, v: &Value) -> bool {
        if !self.labels.is_empty() {
            let labels = v
                .pointer("/metadata/labels")
                .and_then(|l| serde_json::from_value(l.clone()).ok())
                .unwrap_or_default();
            if !self.labels.matches(&labels) {
                return false;
            }
        }
        self.fields.requirements.iter().all(|r| {
            let have = field_value(v, &r.field);
            match r.op {
                corral_api::meta::FieldOp::Equals => have == r.value,
                corral_api::meta::FieldOp::NotEquals => have != r.value,
            }
        })
    }
}

/// Appends the stored object with resourceVersion `rv` to `out`: spliced
/// into the stored bytes, or (for a record the splice refuses) decoded,
/// given the resourceVersion and encoded again.
pub fn write_stored(kv: &KeyValue, rv: i64, out: &mut Vec<u8>) -> ApiResult<()> {
    if super::rawjson::splice_rv(&kv.value, rv, out).is_ok() {
        return Ok(());
    }
    let mut v = decode_stored(kv)?;
    set_rv(&mut v, rv);
    serde_json::to_writer(out, &v).map_err(|e| internal(format!("encoding {}: {e}", kv.key)))
}

/// The value of a dotted field path as a field selector compares it ("" when unset).
fn field_value(v: &Value, field: &str) -> String {
    let pointer = format!("/{}", field.replace('.', "/"));
    match v.pointer(&pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let t = encode_continue(42, "/registry/pods/default/web");
        assert_eq!(
            decode_continue(&t).unwrap(),
            (42, "/registry/pods/default/web".to_string())
        );
        assert!(decode_continue("!!").is_err());
    }

    #[test]
    fn uids_are_v4() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, new_uid());
    }

    #[test]
    fn update_keeps_identity_and_bumps_generation() {
        let info = resource::by_plural("apps", "deployments").unwrap();
        let old = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "generation": 1,
                         "resourceVersion": "7", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
            "status": {"replicas": 1}});
        let mut body = old.clone();
        body["metadata"]["uid"] = "forged".into();
        body["spec"]["replicas"] = 3.into();
        body["status"] = json!({"replicas": 9});
        let new = updated_value(info, &old, body, None, "web").unwrap();
        assert_eq!(new["metadata"]["uid"], "u1");
        assert_eq!(new["metadata"]["generation"], 2);
        assert_eq!(new["status"]["replicas"], 1);
        assert!(new["metadata"].get("resourceVersion").is_none());
        let mut stale = old.clone();
        stale["metadata"]["resourceVersion"] = "6".into();
        let e = updated_value(info, &old, stale, None, "web").unwrap_err();
        assert_eq!(e.0.code, 409);
        let mut status = json!({"status": {"replicas": 5}, "spec": {"replicas": 100}});
        status["metadata"] = json!({"name": "web"});
        let new = updated_value(info, &old, status, Some("status"), "web").unwrap();
        assert_eq!(new["status"]["replicas"], 5);
        assert_eq!(new["spec"]["replicas"], 1);
        assert_eq!(new["metadata"]["generation"], 1);
    }

    #[test]
    fn filters() {
        let pod = json!({"metadata": {"name": "a", "namespace": "default", "labels": {"app": "web"}},
                         "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let f = |l: &str, fs: &str| {
            Filter::new(
                Selector::parse(l).unwrap(),
                FieldSelector::parse(fs).unwrap(),
            )
        };
        assert!(f("app=web", "spec.nodeName=n1").matches(&pod));
        assert!(!f("app=db", "").matches(&pod));
        assert!(f("", "status.phase!=Failed,metadata.name=a").matches(&pod));
        assert!(!f("", "spec.nodeName=").matches(&pod));
    }
}
