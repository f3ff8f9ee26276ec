//! The etcd backend, over etcd's v3 JSON gateway (`/v3/kv/*`, `/v3/watch`) with
//! reqwest: no gRPC code generation (protoc) needed, and etcd's own revisions are
//! ours. Keys live under an optional prefix so several clusters (or test cases)
//! can share one etcd.
//!
//! Writes are single transactions with a compare on `create_revision` (create) or
//! `mod_revision` (update, delete), and a range in the failure branch to tell
//! NotFound from Conflict in the same round trip. A request moves to the next
//! endpoint only when it could not connect, so a write is never sent twice.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{Event, KeyValue, ListOptions, ListResult, Result, Store, StoreError, WatchStream};

/// A unary request that takes longer than this fails (watches have no limit).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const WATCH_BUFFER: usize = 256;
/// Longest wait between attempts to re-open a broken watch.
const MAX_WATCH_BACKOFF: Duration = Duration::from_secs(2);

/// Talks to one etcd cluster through any of its client endpoints.
pub struct EtcdStore {
    client: reqwest::Client,
    endpoints: Vec<String>,
    /// The endpoint that answered last; requests start there.
    preferred: AtomicUsize,
    prefix: String,
}

/// What an etcd call can fail with before the caller adds context.
enum CallError {
    Compacted,
    Future,
    Other(StoreError),
}

impl From<StoreError> for CallError {
    fn from(e: StoreError) -> Self {
        CallError::Other(e)
    }
}

impl EtcdStore {
    /// `endpoints` are base URLs (`http://127.0.0.1:2379`); `prefix` is prepended
    /// to every key ("" for none).
    pub fn new(endpoints: Vec<String>, prefix: &str) -> Result<EtcdStore> {
        if endpoints.is_empty() {
            return Err(StoreError::Config("etcd: no endpoint".into()));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| StoreError::Config(format!("etcd HTTP client: {e}")))?;
        Ok(EtcdStore {
            client,
            endpoints,
            preferred: AtomicUsize::new(0),
            prefix: prefix.to_string(),
        })
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The etcd range for keys under `prefix`. Keys start with '/', so an empty
    /// prefix means `<store prefix>/`: a store prefix `/a` must not see `/ab/...`.
    fn full_prefix(&self, prefix: &str) -> String {
        if prefix.is_empty() && !self.prefix.is_empty() {
            return format!("{}/", self.prefix);
        }
        self.full(prefix)
    }

    /// POST `body` to `path`, trying the endpoints in turn while they refuse the
    /// connection.
    async fn call(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        let n = self.endpoints.len();
        let start = self.preferred.load(Ordering::Relaxed);
        let mut last_error = None;
        for i in 0..n {
            let idx = (start + i) % n;
            let endpoint = &self.endpoints[idx];
            let sent = self
                .client
                .post(format!("{endpoint}{path}"))
                .timeout(REQUEST_TIMEOUT)
                .json(body)
                .send()
                .await;
            let response = match sent {
                Ok(r) => r,
                Err(e) if e.is_connect() => {
                    last_error = Some(etcd_error(endpoint, format!("{path}: {e}")));
                    continue;
                }
                Err(e) => return Err(etcd_error(endpoint, format!("{path}: {e}")).into()),
            };
            self.preferred.store(idx, Ordering::Relaxed);
            return read_answer(endpoint, path, response).await;
        }
        Err(last_error
            .unwrap_or_else(|| StoreError::Config("etcd: no endpoint".into()))
            .into())
    }

    async fn range(&self, body: Value) -> Result<Value, CallError> {
        self.call("/v3/kv/range", &body).await
    }

    async fn txn(&self, body: Value) -> Result<Value> {
        self.call("/v3/kv/txn", &body)
            .await
            .map_err(|e| self.plain(e))
    }

    /// A CallError where neither compaction nor future revisions can happen.
    fn plain(&self, e: CallError) -> StoreError {
        match e {
            CallError::Other(e) => e,
            CallError::Compacted => etcd_error(&self.endpoints[0], "unexpected compaction".into()),
            CallError::Future => {
                etcd_error(&self.endpoints[0], "unexpected future revision".into())
            }
        }
    }

    /// Map a failed read at `revision` to the trait's errors.
    async fn at_revision(&self, e: CallError, revision: i64) -> StoreError {
        match e {
            CallError::Compacted => StoreError::Compacted {
                requested: revision,
                compact_revision: self.compacted_revision().await.unwrap_or(revision + 1),
            },
            CallError::Future => StoreError::FutureRevision {
                requested: revision,
                current: self.current_revision().await.unwrap_or(revision - 1),
            },
            CallError::Other(e) => e,
        }
    }

    /// True if a read at `revision` is still possible (not compacted).
    async fn readable(&self, revision: i64) -> Result<bool> {
        let body = json!({"key": b64(&self.full("/")), "revision": revision.to_string(), "count_only": true});
        match self.range(body).await {
            Ok(_) => Ok(true),
            Err(CallError::Compacted) => Ok(false),
            Err(e) => Err(self.plain(e)),
        }
    }

    fn decode_kv(&self, v: &Value) -> Result<KeyValue> {
        let raw = unb64(v.get("key"))?;
        let full = String::from_utf8(raw).map_err(|_| corrupt("etcd key", "not UTF-8"))?;
        let key = full
            .strip_prefix(&self.prefix)
            .ok_or_else(|| corrupt(&full, "outside the store's prefix"))?
            .to_string();
        Ok(KeyValue {
            key,
            value: unb64(v.get("value"))?,
            create_revision: int(v.get("create_revision")),
            mod_revision: int(v.get("mod_revision")),
        })
    }

    fn first_kv(&self, kvs: Option<&Value>) -> Result<Option<KeyValue>> {
        match kvs.and_then(|k| k.as_array()).and_then(|k| k.first()) {
            Some(kv) => self.decode_kv(kv).map(Some),
            None => Ok(None),
        }
    }

    /// The key as it stands after a failed compare: NotFound or Conflict.
    fn compare_failed(&self, key: &str, expected: i64, answer: &Value) -> Result<StoreError> {
        let kvs = answer.pointer("/responses/0/response_range/kvs");
        Ok(match self.first_kv(kvs)? {
            None => StoreError::NotFound { key: key.into() },
            Some(kv) => StoreError::Conflict {
                key: key.into(),
                expected,
                actual: kv.mod_revision,
            },
        })
    }

    fn decode_event(&self, e: &Value) -> Result<Event> {
        let kv = e
            .get("kv")
            .ok_or_else(|| corrupt("etcd watch event", "no kv"))?;
        let kv = self.decode_kv(kv)?;
        let prev = e.get("prev_kv").map(|p| self.decode_kv(p)).transpose()?;
        if e.get("type").and_then(|t| t.as_str()) == Some("DELETE") {
            let prev = prev.ok_or_else(|| corrupt(&kv.key, "delete event without prev_kv"))?;
            return Ok(Event::Delete {
                prev,
                revision: kv.mod_revision,
            });
        }
        Ok(Event::Put { kv, prev })
    }
}

async fn read_answer(
    endpoint: &str,
    path: &str,
    response: reqwest::Response,
) -> Result<Value, CallError> {
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| etcd_error(endpoint, format!("{path}: reading the answer: {e}")))?;
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        etcd_error(
            endpoint,
            format!("{path}: HTTP {status}: answer is not JSON: {e}"),
        )
    })?;
    if let Some(error) = value.get("error") {
        let message = error.as_str().unwrap_or_default();
        if message.contains("required revision has been compacted") {
            return Err(CallError::Compacted);
        }
        if message.contains("required revision is a future revision") {
            return Err(CallError::Future);
        }
        return Err(etcd_error(endpoint, format!("{path}: {error}")).into());
    }
    if !status.is_success() {
        return Err(etcd_error(endpoint, format!("{path}: HTTP {status}")).into());
    }
    Ok(value)
}

fn etcd_error(endpoint: &str, detail: String) -> StoreError {
    StoreError::Etcd {
        endpoint: endpoint.to_string(),
        detail,
    }
}

fn corrupt(what: &str, detail: &str) -> StoreError {
    StoreError::Corrupt {
        what: what.to_string(),
        detail: detail.to_string(),
    }
}

fn b64(s: &str) -> String {
    B64.encode(s.as_bytes())
}

/// A bytes field; the gateway leaves out empty ones.
fn unb64(v: Option<&Value>) -> Result<Vec<u8>> {
    match v.and_then(|v| v.as_str()) {
        Some(s) => B64
            .decode(s)
            .map_err(|e| corrupt("etcd answer", &format!("bad base64: {e}"))),
        None => Ok(Vec::new()),
    }
}

/// An int64 field: a JSON string (protobuf's JSON mapping), left out when 0.
fn int(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn header_revision(v: &Value) -> i64 {
    int(v.pointer("/header/revision"))
}

/// The smallest key greater than every key starting with `prefix` (etcd's
/// GetPrefixRangeEnd); "\0" means "to the end" for an empty prefix.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn b64_bytes(b: &[u8]) -> String {
    B64.encode(b)
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let answer = self
            .range(json!({"key": b64(&self.full(key))}))
            .await
            .map_err(|e| self.plain(e))?;
        self.first_kv(answer.get("kvs"))
    }

    /// Each page is a round trip through etcd's JSON gateway (base64 values):
    /// a LIST of 100k pods in 200 pages of 500 outlasted the client's 30 s
    /// timeout (bench-api --http 100000, etcd 3.4 on 2 shared cores).
    fn list_page(&self) -> usize {
        5000
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let full_prefix = self.full_prefix(prefix);
        let start = match &opts.start_after {
            Some(after) if after.as_str() >= prefix => format!("{}\0", self.full(after)),
            _ => full_prefix.clone(),
        };
        let mut body = json!({
            "key": b64(&start),
            "range_end": b64_bytes(&prefix_end(&full_prefix)),
        });
        if let Some(limit) = opts.limit.filter(|&l| l > 0) {
            body["limit"] = json!(limit.to_string());
        }
        if let Some(rev) = opts.revision {
            body["revision"] = json!(rev.to_string());
        }
        let answer = match self.range(body).await {
            Ok(a) => a,
            Err(e) => return Err(self.at_revision(e, opts.revision.unwrap_or(0)).await),
        };
        let items = match answer.get("kvs").and_then(|k| k.as_array()) {
            Some(kvs) => kvs
                .iter()
                .map(|kv| self.decode_kv(kv))
                .collect::<Result<_>>()?,
            None => Vec::new(),
        };
        Ok(ListResult {
            items,
            revision: opts.revision.unwrap_or_else(|| header_revision(&answer)),
            more: answer
                .get("more")
                .and_then(|m| m.as_bool())
                .unwrap_or(false),
        })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<i64> {
        let k = b64(&self.full(key));
        let answer = self
            .txn(json!({
                "compare": [{"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
                "success": [{"request_put": {"key": k, "value": b64_bytes(&value)}}],
            }))
            .await?;
        if answer.get("succeeded").and_then(|s| s.as_bool()) != Some(true) {
            return Err(StoreError::AlreadyExists { key: key.into() });
        }
        Ok(header_revision(&answer))
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected_mod_revision: i64) -> Result<i64> {
        let k = b64(&self.full(key));
        let answer = self
            .txn(json!({
                "compare": [{"key": k, "target": "MOD", "result": "EQUAL",
                             "mod_revision": expected_mod_revision.to_string()}],
                "success": [{"request_put": {"key": k, "value": b64_bytes(&value)}}],
                "failure": [{"request_range": {"key": k}}],
            }))
            .await?;
        if answer.get("succeeded").and_then(|s| s.as_bool()) != Some(true) {
            return Err(self.compare_failed(key, expected_mod_revision, &answer)?);
        }
        Ok(header_revision(&answer))
    }

    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<i64>,
    ) -> Result<(KeyValue, i64)> {
        let k = b64(&self.full(key));
        let compare = match expected_mod_revision {
            Some(rev) => {
                json!({"key": k, "target": "MOD", "result": "EQUAL", "mod_revision": rev.to_string()})
            }
            None => {
                json!({"key": k, "target": "CREATE", "result": "GREATER", "create_revision": "0"})
            }
        };
        let answer = self
            .txn(json!({
                "compare": [compare],
                "success": [{"request_delete_range": {"key": k, "prev_kv": true}}],
                "failure": [{"request_range": {"key": k}}],
            }))
            .await?;
        if answer.get("succeeded").and_then(|s| s.as_bool()) != Some(true) {
            let expected = expected_mod_revision.unwrap_or(0);
            return Err(self.compare_failed(key, expected, &answer)?);
        }
        let prev = self
            .first_kv(answer.pointer("/responses/0/response_delete_range/prev_kvs"))?
            .ok_or_else(|| corrupt(key, "delete answer without prev_kvs"))?;
        Ok((prev, header_revision(&answer)))
    }

    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream> {
        // etcd reports a compacted start only later on the stream; a read at the
        // start revision fails at once, and the trait promises an error here.
        if from_revision > 0 {
            let body = json!({"key": b64(&self.full("/")), "revision": from_revision.to_string(), "count_only": true});
            match self.range(body).await {
                Ok(_) | Err(CallError::Future) => {}
                Err(e) => return Err(self.at_revision(e, from_revision).await),
            }
        }
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let watcher = Watcher {
            store: EtcdStore {
                client: self.client.clone(),
                endpoints: self.endpoints.clone(),
                preferred: AtomicUsize::new(self.preferred.load(Ordering::Relaxed)),
                prefix: self.prefix.clone(),
            },
            prefix: prefix.to_string(),
            last: from_revision,
            tx,
        };
        Ok(WatchStream::new(rx, Some(tokio::spawn(watcher.run()))))
    }

    async fn current_revision(&self) -> Result<i64> {
        let body = json!({"key": b64(&self.full("/")), "count_only": true});
        let answer = self.range(body).await.map_err(|e| self.plain(e))?;
        Ok(header_revision(&answer))
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        let body = json!({"revision": revision.to_string(), "physical": true});
        match self.call("/v3/kv/compaction", &body).await {
            // etcd refuses a compaction at or below its current point: nothing to do.
            Ok(_) | Err(CallError::Compacted) => Ok(()),
            Err(e) => Err(self.at_revision(e, revision).await),
        }
    }

    async fn compacted_revision(&self) -> Result<i64> {
        // etcd does not report its compaction point; find the oldest readable
        // revision by bisection (about log2(revision) small reads).
        if self.readable(1).await? {
            return Ok(0);
        }
        let (mut bad, mut good) = (1, self.current_revision().await?);
        while good - bad > 1 {
            let mid = bad + (good - bad) / 2;
            if self.readable(mid).await? {
                good = mid;
            } else {
                bad = mid;
            }
        }
        Ok(good)
    }
}

/// Feeds one watch stream; re-opens the etcd watch after the last delivered
/// revision when the connection breaks (on any endpoint).
struct Watcher {
    store: EtcdStore,
    prefix: String,
    last: i64,
    tx: mpsc::Sender<Result<Event>>,
}

/// Why a watch connection ended.
enum Ended {
    /// The reader went away or an error was delivered: stop.
    Done,
    /// The connection broke: open another.
    Broken,
}

impl Watcher {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.connect_and_stream().await {
                Ended::Done => return,
                Ended::Broken => {
                    if self.tx.is_closed() {
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_WATCH_BACKOFF);
                }
            }
        }
    }

    async fn connect_and_stream(&mut self) -> Ended {
        let full = self.store.full_prefix(&self.prefix);
        let body = json!({"create_request": {
            "key": b64(&full),
            "range_end": b64_bytes(&prefix_end(&full)),
            "start_revision": (self.last + 1).to_string(),
            "prev_kv": true,
        }});
        let n = self.store.endpoints.len();
        let start = self.store.preferred.load(Ordering::Relaxed);
        for i in 0..n {
            let idx = (start + i) % n;
            let url = format!("{}/v3/watch", self.store.endpoints[idx]);
            let Ok(response) = self.store.client.post(url).json(&body).send().await else {
                continue;
            };
            if !response.status().is_success() {
                continue;
            }
            self.store.preferred.store(idx, Ordering::Relaxed);
            return self.stream(response).await;
        }
        Ended::Broken
    }

    async fn stream(&mut self, mut response: reqwest::Response) -> Ended {
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) | Err(_) => return Ended::Broken,
            };
            buf.extend_from_slice(&chunk);
            while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                if let Some(ended) = self.handle_line(&line).await {
                    return ended;
                }
            }
        }
    }

    async fn handle_line(&mut self, line: &[u8]) -> Option<Ended> {
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            return None;
        }
        let message: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => {
                return Some(
                    self.fail(corrupt("etcd watch message", &e.to_string()))
                        .await,
                )
            }
        };
        let Some(result) = message.get("result") else {
            let detail = message
                .get("error")
                .map(|e| e.to_string())
                .unwrap_or_default();
            return Some(self.fail(etcd_error("watch", detail)).await);
        };
        let compact_revision = int(result.get("compact_revision"));
        if compact_revision != 0 {
            let e = StoreError::Compacted {
                requested: self.last,
                compact_revision,
            };
            return Some(self.fail(e).await);
        }
        if result.get("canceled").and_then(|c| c.as_bool()) == Some(true) {
            let reason = result.get("cancel_reason").map(|r| r.to_string());
            let detail = format!("watch canceled: {}", reason.unwrap_or_default());
            return Some(self.fail(etcd_error("watch", detail)).await);
        }
        for raw in result.get("events").and_then(|e| e.as_array())? {
            let event = match self.store.decode_event(raw) {
                Ok(e) => e,
                Err(e) => return Some(self.fail(e).await),
            };
            if event.revision() <= self.last {
                continue;
            }
            self.last = event.revision();
            if self.tx.send(Ok(event)).await.is_err() {
                return Some(Ended::Done);
            }
        }
        None
    }

    async fn fail(&self, e: StoreError) -> Ended {
        let _ = self.tx.send(Err(e)).await;
        Ended::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end("/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end(""), vec![0]);
        assert_eq!(int(Some(&json!("42"))), 42);
        assert_eq!(int(None), 0);
    }
}
