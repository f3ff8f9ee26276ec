//! Watch: a chunked stream of `{"type": ..., "object": ...}` lines.
//!
//! Without a resourceVersion (or with "0") the stream starts with an ADDED
//! event per current object, then follows the store from that list's
//! revision; with one it resumes after it. An object that starts or stops
//! matching the selectors is sent as ADDED or DELETED, as Kubernetes does.
//! A resourceVersion older than the store's compacted history ends the
//! stream with an ERROR event carrying a 410 Expired Status.

use std::time::Duration;

use bytes::Bytes;
use corral_api::resource::ResourceInfo;
use corral_api::Status;
use http_body_util::BodyExt;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::Response;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::objects::{decode_stored, meta_str, prefix, set_rv, write_stored, Filter};
use super::request::Request;
use super::response::{ApiResult, ChannelBody, Resp};
use super::route::Target;
use super::table;
use super::Api;
use crate::store::{Event, KeyValue, StoreError, WatchStream};

/// kube-apiserver's --min-request-timeout: watches end after this by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(5);

struct Sink {
    tx: mpsc::Sender<Bytes>,
    info: &'static ResourceInfo,
    table: bool,
}

impl Sink {
    /// False once the client is gone.
    async fn send(&self, type_: &str, object: Value) -> bool {
        let object = if self.table && type_ != "ERROR" && type_ != "BOOKMARK" {
            let rv = meta_str(&object, "resourceVersion").to_string();
            table::table(self.info, &[object], &rv, "")
        } else {
            object
        };
        let mut line = json!({"type": type_, "object": object}).to_string();
        line.push('\n');
        self.tx.send(Bytes::from(line)).await.is_ok()
    }

    /// A stored object at `rv` as the event's object: spliced into the line
    /// as stored, unless the watcher wants Tables.
    async fn send_stored(&self, type_: &str, kv: &KeyValue, rv: i64) -> bool {
        if self.table {
            let Ok(mut v) = decode_stored(kv) else {
                return true;
            };
            set_rv(&mut v, rv);
            return self.send(type_, v).await;
        }
        let mut line = Vec::with_capacity(kv.value.len() + 64);
        line.extend_from_slice(b"{\"type\":\"");
        line.extend_from_slice(type_.as_bytes());
        line.extend_from_slice(b"\",\"object\":");
        if write_stored(kv, rv, &mut line).is_err() {
            // Undecodable records were skipped before too.
            return true;
        }
        line.extend_from_slice(b"}\n");
        self.tx.send(Bytes::from(line)).await.is_ok()
    }

    async fn error(&self, status: Status) {
        let v = serde_json::to_value(&status).unwrap_or(Value::Null);
        self.send("ERROR", v).await;
    }
}

impl Api {
    pub async fn watch(&self, t: &Target, req: &Request) -> ApiResult<Resp> {
        let mut filter = Filter::from_request(req)?;
        if let Some(name) = &t.name {
            filter = filter.with_name(name);
        }
        let timeout = req
            .param("timeoutSeconds")
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TIMEOUT);
        let bookmarks = req.flag("allowWatchBookmarks");
        let rv = req.param("resourceVersion").unwrap_or("");
        let (initial, from) = if rv.is_empty() || rv == "0" {
            let whole = Target {
                name: None,
                ..t.clone()
            };
            let (items, rev, _) = self.list_values(&whole, 0, None, &filter).await?;
            (items, rev)
        } else {
            let rev = rv.parse::<i64>().map_err(|_| {
                super::response::ApiError::from(Status::bad_request(format!(
                    "invalid resourceVersion {rv:?}"
                )))
            })?;
            (Vec::new(), rev)
        };
        let stream = self
            .store
            .watch(&prefix(t.info, t.namespace.as_deref()), from)
            .await;
        let (tx, body) = ChannelBody::new(64);
        let sink = Sink {
            tx,
            info: t.info,
            table: req.wants_table(),
        };
        tokio::spawn(async move {
            for item in initial {
                if !sink.send("ADDED", item).await {
                    return;
                }
            }
            match stream {
                Ok(stream) => follow(sink, stream, filter, from, timeout, bookmarks).await,
                Err(e) => sink.error(watch_error(e)).await,
            }
        });
        let mut resp = Response::new(body.boxed());
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(resp)
    }
}

fn watch_error(e: StoreError) -> Status {
    match e {
        StoreError::Compacted {
            requested,
            compact_revision,
        } => Status::expired(format!(
            "too old resource version: {requested} ({compact_revision})"
        )),
        other => Status::internal_error(other),
    }
}

async fn follow(
    sink: Sink,
    mut stream: WatchStream,
    filter: Filter,
    mut last: i64,
    timeout: Duration,
    bookmarks: bool,
) {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(BOOKMARK_INTERVAL);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = sink.tx.closed() => return,
            _ = &mut deadline => return,
            _ = tick.tick(), if bookmarks => {
                let object = json!({"kind": sink.info.kind, "apiVersion": sink.info.api_version(),
                                    "metadata": {"resourceVersion": last.to_string()}});
                if !sink.send("BOOKMARK", object).await {
                    return;
                }
            }
            ev = stream.next() => match ev {
                None => return,
                Some(Err(e)) => {
                    sink.error(watch_error(e)).await;
                    return;
                }
                Some(Ok(ev)) => {
                    last = ev.revision();
                    if let Some((type_, kv, rv)) = convert(&ev, &filter) {
                        if !sink.send_stored(type_, kv, rv).await {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// The event a watcher with `filter` sees for a store change, if any: its
/// type, the stored object it carries and that object's resourceVersion.
/// Only the fields the selectors compare are decoded.
fn convert<'e>(ev: &'e Event, filter: &Filter) -> Option<(&'static str, &'e KeyValue, i64)> {
    match ev {
        Event::Put { kv, prev } => {
            let now = filter.matches_stored(kv).ok()?;
            let before = prev.as_ref().and_then(|p| filter.matches_stored(p).ok());
            let type_ = match (before, now) {
                (None | Some(false), true) => "ADDED",
                (Some(true), true) => "MODIFIED",
                (Some(true), false) => "DELETED",
                (_, false) => return None,
            };
            Some((type_, kv, kv.mod_revision))
        }
        Event::Delete { prev, revision } => filter
            .matches_stored(prev)
            .ok()?
            .then_some(("DELETED", prev, *revision)),
    }
}
