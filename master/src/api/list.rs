//! LIST without decoding: items go from the store's bytes to the response
//! with their resourceVersion spliced in ([`super::rawjson`]), and a LIST
//! without `limit` is streamed in chunks of [`Store::list_page`] objects
//! (500 on the embedded store, ~1 MiB of pods) read at one revision, so the
//! master never holds the whole response (a 10k-pod LIST is ~21 MiB of
//! JSON, 100k pods ~210 MiB).

use std::sync::Arc;

use bytes::Bytes;
use corral_api::resource::ResourceInfo;
use corral_api::Status;
use http_body_util::BodyExt;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::Response;
use serde_json::json;

use super::objects::{decode_continue, encode_continue, prefix, store_error, write_stored, Filter};
use super::response::{bytes_response, ApiError, ApiResult, ChannelBody, Resp};
use crate::store::{KeyValue, ListOptions, Store, StoreError};

/// Chunks queued between the store reader and the connection.
const CHUNKS_QUEUED: usize = 2;

/// Reads a prefix page by page, all pages at the revision of the first, up to
/// `limit` matching objects (0: all), counting the matches the caller reports.
pub struct Pager {
    store: Arc<dyn Store>,
    info: &'static ResourceInfo,
    prefix: String,
    start: Option<String>,
    revision: Option<i64>,
    limit: usize,
    found: usize,
    more: bool,
    done: bool,
}

impl Pager {
    pub fn new(
        store: Arc<dyn Store>,
        info: &'static ResourceInfo,
        namespace: Option<&str>,
        limit: usize,
        cont: Option<&str>,
    ) -> ApiResult<Pager> {
        let (start, revision) = match cont.filter(|c| !c.is_empty()) {
            Some(c) => {
                let (rev, key) = decode_continue(c)?;
                (Some(key), Some(rev))
            }
            None => (None, None),
        };
        Ok(Pager {
            store,
            info,
            prefix: prefix(info, namespace),
            start,
            revision,
            limit,
            found: 0,
            more: false,
            done: false,
        })
    }

    /// The next page of stored objects (before filtering); None at the end.
    pub async fn next(&mut self) -> ApiResult<Option<Vec<KeyValue>>> {
        let full = self.limit != 0 && self.found >= self.limit;
        if self.done || full {
            return Ok(None);
        }
        let page = self.store.list_page().max(1);
        let want = match self.limit {
            0 => page,
            l => (l - self.found).min(page),
        };
        let opts = ListOptions {
            start_after: self.start.clone(),
            limit: Some(want),
            revision: self.revision,
        };
        let page = self
            .store
            .list(&self.prefix, opts)
            .await
            .map_err(|e| match e {
                StoreError::Compacted { .. } => ApiError::from(Status::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                )),
                other => store_error(other, self.info, ""),
            })?;
        self.revision = Some(page.revision);
        if let Some(last) = page.items.last() {
            self.start = Some(last.key.clone());
        }
        self.more = page.more;
        self.done = !page.more;
        Ok(Some(page.items))
    }

    pub fn found(&mut self, n: usize) {
        self.found += n;
    }

    /// The revision the pages were read at (0 before the first page).
    pub fn revision(&self) -> i64 {
        self.revision.unwrap_or(0)
    }

    /// The continue token of the next page ("" when there is none): only a
    /// LIST with a limit is cut into client-visible pages.
    pub fn continue_token(&self) -> String {
        match (&self.start, self.more && self.limit != 0) {
            (Some(k), true) => encode_continue(self.revision(), k),
            _ => String::new(),
        }
    }

    /// True when a LIST without limit has pages left to read.
    fn has_more(&self) -> bool {
        !self.done
    }
}

/// Writes the matching objects of `page` into `out` as array elements.
fn write_items(
    page: &[KeyValue],
    filter: &Filter,
    pager: &mut Pager,
    out: &mut Vec<u8>,
    first: &mut bool,
) -> ApiResult<()> {
    for kv in page {
        if !filter.matches_stored(kv)? {
            continue;
        }
        pager.found(1);
        if !*first {
            out.push(b',');
        }
        *first = false;
        write_stored(kv, kv.mod_revision, out)?;
    }
    Ok(())
}

/// `{"apiVersion":..,"kind":..List,"metadata":{..},"items":[`
fn head(info: &ResourceInfo, revision: i64, cont: &str) -> ApiResult<Vec<u8>> {
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if !cont.is_empty() {
        meta["continue"] = cont.into();
    }
    let head = json!({
        "apiVersion": info.api_version(),
        "kind": info.list_kind(),
        "metadata": meta,
    });
    let mut out = serde_json::to_vec(&head)
        .map_err(|e| ApiError::from(Status::internal_error(format!("encoding the list: {e}"))))?;
    // `{...}` becomes `{...,"items":[`.
    out.pop();
    out.extend_from_slice(b",\"items\":[");
    Ok(out)
}

/// The LIST response. With a limit the page is built in memory (the limit
/// bounds it); without one the body is streamed page by page.
pub async fn list_raw(
    store: Arc<dyn Store>,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    limit: usize,
    cont: Option<&str>,
    filter: Filter,
) -> ApiResult<Resp> {
    let mut pager = Pager::new(store, info, namespace, limit, cont)?;
    let mut items = Vec::new();
    let mut first = true;
    // The first page is read before answering, so that a bad continue token
    // or an unreadable store is a proper error status.
    if let Some(page) = pager.next().await? {
        write_items(&page, &filter, &mut pager, &mut items, &mut first)?;
    }
    if limit != 0 || !pager.has_more() {
        while let Some(page) = pager.next().await? {
            write_items(&page, &filter, &mut pager, &mut items, &mut first)?;
        }
        let mut body = head(info, pager.revision(), &pager.continue_token())?;
        body.extend_from_slice(&items);
        body.extend_from_slice(b"]}");
        return Ok(bytes_response(200, "application/json", body));
    }
    let mut chunk = head(info, pager.revision(), "")?;
    chunk.extend_from_slice(&items);
    drop(items);
    let (tx, body) = ChannelBody::new(CHUNKS_QUEUED);
    tokio::spawn(async move {
        let mut chunk = chunk;
        loop {
            let page = match pager.next().await {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(e) => return stream_failed(info, &e),
            };
            if tx
                .send(Bytes::from(std::mem::take(&mut chunk)))
                .await
                .is_err()
            {
                return;
            }
            chunk.reserve(page.iter().map(|kv| kv.value.len() + 32).sum());
            if let Err(e) = write_items(&page, &filter, &mut pager, &mut chunk, &mut first) {
                return stream_failed(info, &e);
            }
        }
        chunk.extend_from_slice(b"]}");
        let _ = tx.send(Bytes::from(chunk)).await;
        drop(pager);
        super::alloc::trim();
    });
    let mut resp = Response::new(body.boxed());
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// A page after the first failed: the status line is gone, so the body is
/// cut short (the client's JSON decoder fails on it) and the cause logged.
fn stream_failed(info: &ResourceInfo, e: &ApiError) {
    eprintln!(
        "corral-master: LIST {}: reading a page failed, response cut short: {}",
        info.plural, e.0.message
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EmbeddedStore;
    use corral_api::meta::{FieldSelector, Selector};
    use serde_json::Value;

    fn pod(i: usize) -> Vec<u8> {
        serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("p{i:05}"), "namespace": "ns",
                         "labels": {"shard": (i % 10).to_string()}},
            "spec": {"nodeName": format!("n{}", i % 3)}}))
        .expect("encode")
    }

    async fn body(resp: Resp) -> Value {
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        serde_json::from_slice(&bytes).expect("the LIST body is one JSON document")
    }

    /// Creates pods 0..n with 32 writers at a time (the store group-commits
    /// them); their revisions by index.
    async fn fill(store: &Arc<dyn Store>, n: usize) -> Vec<i64> {
        let mut revs = vec![0; n];
        for start in (0..n).step_by(32) {
            let mut tasks = tokio::task::JoinSet::new();
            for i in start..(start + 32).min(n) {
                let store = store.clone();
                tasks.spawn(async move {
                    let key = format!("/registry/pods/ns/p{i:05}");
                    (i, store.create(&key, pod(i)).await.expect("create"))
                });
            }
            while let Some(done) = tasks.join_next().await {
                let (i, rev) = done.expect("create task");
                revs[i] = rev;
            }
        }
        revs
    }

    fn pods() -> &'static ResourceInfo {
        corral_api::resource::by_plural("", "pods").expect("pods")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streamed_list_is_one_snapshot_with_versions_and_selectors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).expect("open"));
        let n = 10 * store.list_page() + 7;
        let revs = fill(&store, n).await;
        let resp = list_raw(
            store.clone(),
            pods(),
            Some("ns"),
            0,
            None,
            Filter::default(),
        )
        .await
        .expect("list");
        // The reader stops after a few queued chunks until the body is read,
        // so these writes land while most pages are still unread.
        let last = format!("/registry/pods/ns/p{:05}", n - 1);
        store
            .update(
                &last,
                b"{\"metadata\":{\"name\":\"changed\"}}".to_vec(),
                revs[n - 1],
            )
            .await
            .expect("update");
        store
            .delete(&format!("/registry/pods/ns/p{:05}", n - 2), None)
            .await
            .expect("delete");
        let list = body(resp).await;
        assert_eq!(list["kind"], "PodList");
        let items = list["items"].as_array().expect("items");
        assert_eq!(items.len(), n);
        for (i, item) in items.iter().enumerate() {
            assert_eq!(item["metadata"]["name"], format!("p{i:05}"));
            assert_eq!(item["metadata"]["resourceVersion"], revs[i].to_string());
        }
        let newest = revs.iter().max().expect("revisions");
        assert_eq!(list["metadata"]["resourceVersion"], newest.to_string());

        let filter = Filter::new(
            Selector::parse("shard=3").expect("selector"),
            FieldSelector::parse("spec.nodeName=n0").expect("fields"),
        );
        let resp = list_raw(store.clone(), pods(), Some("ns"), 0, None, filter)
            .await
            .expect("list");
        let got: Vec<String> = body(resp).await["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_string())
            .collect();
        let want: Vec<String> = (0..n - 2)
            .filter(|i| i % 10 == 3 && i % 3 == 0)
            .map(|i| format!("p{i:05}"))
            .collect();
        assert_eq!(got, want);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn limited_pages_chain_by_continue_tokens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).expect("open"));
        let n = store.list_page() + 300;
        fill(&store, n).await;
        // A stored record the splice refuses is still served, by decoding it.
        let odd = b"{\"kind\":\"Pod\",\"metadata\":{\"name\":\"zz\",\"resourceVersion\":\"1\"}}";
        let odd_rev = store
            .create("/registry/pods/ns/zz", odd.to_vec())
            .await
            .expect("create");
        let only_shard_1 = || {
            Filter::new(
                Selector::parse("shard=1").expect("sel"),
                FieldSelector::default(),
            )
        };
        let (mut cont, mut seen, mut rv) = (None::<String>, Vec::new(), None);
        loop {
            let resp = list_raw(
                store.clone(),
                pods(),
                Some("ns"),
                30,
                cont.as_deref(),
                only_shard_1(),
            )
            .await
            .expect("list");
            let page = body(resp).await;
            let items = page["items"].as_array().expect("items");
            assert!(items.len() <= 30);
            seen.extend(
                items
                    .iter()
                    .map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_string()),
            );
            let page_rv = page["metadata"]["resourceVersion"].clone();
            assert_eq!(*rv.get_or_insert(page_rv.clone()), page_rv);
            match page["metadata"]["continue"].as_str() {
                Some(c) => cont = Some(c.to_string()),
                None => break,
            }
        }
        let want: Vec<String> = (0..n)
            .filter(|i| i % 10 == 1)
            .map(|i| format!("p{i:05}"))
            .collect();
        assert_eq!(seen, want);
        let all = body(
            list_raw(
                store.clone(),
                pods(),
                Some("ns"),
                0,
                None,
                Filter::default(),
            )
            .await
            .expect("list"),
        )
        .await;
        let last = all["items"]
            .as_array()
            .and_then(|a| a.last())
            .cloned()
            .expect("items");
        assert_eq!(last["metadata"]["name"], "zz");
        assert_eq!(last["metadata"]["resourceVersion"], odd_rev.to_string());
    }
}
