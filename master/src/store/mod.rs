//! The master's source of truth: a revisioned key-value store with watch.
//!
//! Keys follow Kubernetes' layout (`/registry/pods/<ns>/<name>`); values are opaque
//! bytes (the API server stores JSON). Every successful write gets the next value of
//! one global, strictly increasing revision, as in etcd; the API server exposes an
//! object's `mod_revision` as its `resourceVersion`.
//!
//! The trait is async (`async-trait`, object safe: the server holds an
//! `Arc<dyn Store>`). Both backends must behave identically; the shared test suite
//! (`store::conformance`) is what "identically" means.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

mod codec;
pub mod conformance;
pub mod embedded;
pub mod etcd;

pub use embedded::EmbeddedStore;
pub use etcd::EtcdStore;

/// One stored object at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created the key (it changes when a deleted key is
    /// created again).
    pub create_revision: i64,
    /// Revision of the last write to the key: the object's resourceVersion.
    pub mod_revision: i64,
}

/// One change, as delivered by [`Store::watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A create (`prev` is None) or an update (`prev` is the value it replaced).
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// A delete at `revision`; `prev` is the value that was deleted.
    Delete { prev: KeyValue, revision: i64 },
}

impl Event {
    /// The revision of the write that produced this event.
    pub fn revision(&self) -> i64 {
        match self {
            Event::Put { kv, .. } => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }

    pub fn key(&self) -> &str {
        match self {
            Event::Put { kv, .. } => &kv.key,
            Event::Delete { prev, .. } => &prev.key,
        }
    }
}

/// What [`Store::list`] reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only keys strictly greater than this one (the `continue` of a paged list).
    pub start_after: Option<String>,
    /// At most this many items; None or 0 means all.
    pub limit: Option<usize>,
    /// Read the state as of this revision (the revision returned by the first page,
    /// so that all pages form one consistent snapshot). None means the current state.
    /// Fails with [`StoreError::Compacted`] when the revision was compacted away and
    /// with [`StoreError::FutureRevision`] when it is beyond the current revision.
    pub revision: Option<i64>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    /// Items in ascending key order.
    pub items: Vec<KeyValue>,
    /// The revision the page was read at (pass it as `ListOptions::revision` for the
    /// next page, and use it as the list's resourceVersion).
    pub revision: i64,
    /// True when keys after the last item exist under the prefix at that revision.
    pub more: bool,
}

/// Why a store operation failed. The API server maps the first five to HTTP
/// statuses (409 AlreadyExists, 404, 409 Conflict, 410 Gone, 504/500) and the rest
/// to 500.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    #[error("key {key} not found")]
    NotFound { key: String },
    /// The optimistic-concurrency precondition failed: the key is at `actual`
    /// (0 if it does not exist), not at `expected`.
    #[error("key {key}: expected mod_revision {expected}, the stored one is {actual}")]
    Conflict {
        key: String,
        expected: i64,
        actual: i64,
    },
    /// The requested revision is older than the oldest one kept.
    #[error("revision {requested} has been compacted; the oldest available is {compact_revision}")]
    Compacted {
        requested: i64,
        compact_revision: i64,
    },
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision { requested: i64, current: i64 },
    /// The embedded database failed (I/O, corruption); `path` is its file.
    #[error("embedded store {path}: {op}: {source}")]
    Embedded {
        path: String,
        op: &'static str,
        #[source]
        source: Arc<redb::Error>,
    },
    /// A stored record could not be decoded.
    #[error("store record {what} is corrupt: {detail}")]
    Corrupt { what: String, detail: String },
    /// etcd could not be reached or answered with an error.
    #[error("etcd {endpoint}: {detail}")]
    Etcd { endpoint: String, detail: String },
    /// The store was shut down (its writer stopped).
    #[error("store is closed")]
    Closed,
    /// A configuration value (store URL, path) is not usable.
    #[error("store configuration: {0}")]
    Config(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The master's storage. All methods are cancel-safe in the sense that a dropped
/// future never leaves a half-applied write: each write is one atomic transaction
/// that is either committed (durably, before the method returns Ok) or not.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The current value of `key`.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys starting with `prefix`, in key order, all from one revision.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult>;

    /// Create `key`; fails with AlreadyExists if it exists. Returns the new revision
    /// (= the object's create_revision and mod_revision).
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<i64>;

    /// Replace `key` if its mod_revision is `expected_mod_revision`; NotFound if it
    /// does not exist, Conflict if it moved on. Returns the new mod_revision.
    async fn update(&self, key: &str, value: Vec<u8>, expected_mod_revision: i64) -> Result<i64>;

    /// Delete `key` (if `expected_mod_revision` is Some, only at that revision: else
    /// Conflict). Returns the deleted value and the revision of the delete.
    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<i64>,
    ) -> Result<(KeyValue, i64)>;

    /// Changes to keys under `prefix` with revision strictly greater than
    /// `from_revision`, in revision order, without gaps or duplicates. Fails with
    /// Compacted when `from_revision` is older than the compaction point; the stream
    /// itself can also end with `Err(Compacted)` if it falls so far behind that the
    /// events it still needs were compacted.
    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream>;

    /// The revision of the last committed write.
    async fn current_revision(&self) -> Result<i64>;

    /// Forget history before `revision`: lists at older revisions and watches from
    /// older revisions fail with Compacted afterwards. The current value of every key
    /// is kept. Compacting to a revision at or below the current compaction point
    /// does nothing.
    async fn compact(&self, revision: i64) -> Result<()>;

    /// The oldest revision still readable (0 before any compaction).
    async fn compacted_revision(&self) -> Result<i64>;

    /// How many objects a long LIST reads per [`Store::list`] call: the
    /// memory it holds at once against the cost of one more call.
    fn list_page(&self) -> usize {
        500
    }
}

/// A stream of watch events; dropping it cancels the watch.
pub struct WatchStream {
    rx: mpsc::Receiver<Result<Event>>,
    /// Aborted on drop: the task feeding `rx`.
    feeder: Option<tokio::task::JoinHandle<()>>,
}

impl WatchStream {
    pub fn new(
        rx: mpsc::Receiver<Result<Event>>,
        feeder: Option<tokio::task::JoinHandle<()>>,
    ) -> Self {
        WatchStream { rx, feeder }
    }

    /// The next event; `None` when the store shut down. After an `Err` the stream
    /// ends.
    pub async fn next(&mut self) -> Option<Result<Event>> {
        self.rx.recv().await
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        if let Some(feeder) = self.feeder.take() {
            feeder.abort();
        }
    }
}

impl fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchStream").finish_non_exhaustive()
    }
}

/// Which backend to open, from the master's flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// The redb file.
    Embedded { path: PathBuf },
    /// etcd endpoints (`http://host:port`) and the key prefix under which this
    /// cluster's keys live ("" for none).
    Etcd {
        endpoints: Vec<String>,
        prefix: String,
    },
}

/// The embedded store's file name inside the master's data directory.
pub const EMBEDDED_FILE: &str = "store.redb";

impl StoreConfig {
    /// `--store` absent: the embedded file `DATA_DIR/store.redb`;
    /// `etcd://host:port[,host:port...][/prefix]`: etcd over its JSON gateway.
    pub fn from_flag(store: Option<&str>, data_dir: &Path) -> Result<StoreConfig> {
        let Some(url) = store.filter(|s| !s.is_empty()) else {
            return Ok(StoreConfig::Embedded {
                path: data_dir.join(EMBEDDED_FILE),
            });
        };
        let Some(rest) = url.strip_prefix("etcd://") else {
            return Err(StoreError::Config(format!(
                "--store {url}: expected etcd://HOST:PORT[,HOST:PORT...][/PREFIX]"
            )));
        };
        let (hosts, prefix) = match rest.split_once('/') {
            Some((hosts, prefix)) => (hosts, format!("/{prefix}")),
            None => (rest, String::new()),
        };
        let endpoints: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("http://{h}"))
            .collect();
        if endpoints.is_empty() {
            return Err(StoreError::Config(format!(
                "--store {url}: no etcd endpoint"
            )));
        }
        let prefix = prefix.trim_end_matches('/').to_string();
        Ok(StoreConfig::Etcd { endpoints, prefix })
    }
}

/// Open the configured backend.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn Store>> {
    match config {
        StoreConfig::Embedded { path } => {
            let path = path.clone();
            let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(&path))
                .await
                .map_err(|e| StoreError::Config(format!("opening the embedded store: {e}")))??;
            Ok(Arc::new(store))
        }
        StoreConfig::Etcd { endpoints, prefix } => {
            let store = EtcdStore::new(endpoints.clone(), prefix)?;
            // Fail at start, not at the first request, when etcd is unreachable.
            store.current_revision().await?;
            Ok(Arc::new(store))
        }
    }
}

/// Compact the store every `every`, keeping at least the last `keep_revisions`
/// revisions and at least one interval of history (a watcher that fell behind by
/// less than `every` can still resume). Like the Kubernetes API server with etcd,
/// the target is the revision seen at the previous tick.
pub fn spawn_compactor(
    store: Arc<dyn Store>,
    every: Duration,
    keep_revisions: i64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut previous: Option<i64> = None;
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            match compact_once(store.as_ref(), previous, keep_revisions).await {
                Ok(seen) => previous = Some(seen),
                Err(e) => eprintln!("corral-master: store compaction: {e}"),
            }
        }
    })
}

/// One compactor tick; returns the current revision for the next tick.
async fn compact_once(store: &dyn Store, previous: Option<i64>, keep: i64) -> Result<i64> {
    let current = store.current_revision().await?;
    if let Some(previous) = previous {
        let target = previous.min(current.saturating_sub(keep.max(0)));
        if target > store.compacted_revision().await? {
            store.compact(target).await?;
        }
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_flag() {
        let dir = Path::new("/var/lib/corral/master");
        assert_eq!(
            StoreConfig::from_flag(None, dir).unwrap(),
            StoreConfig::Embedded {
                path: dir.join("store.redb")
            }
        );
        assert_eq!(
            StoreConfig::from_flag(Some("etcd://127.0.0.1:2379,10.0.0.2:2379/corral/"), dir)
                .unwrap(),
            StoreConfig::Etcd {
                endpoints: vec![
                    "http://127.0.0.1:2379".into(),
                    "http://10.0.0.2:2379".into()
                ],
                prefix: "/corral".into(),
            }
        );
        assert!(StoreConfig::from_flag(Some("mysql://x"), dir).is_err());
        assert!(StoreConfig::from_flag(Some("etcd://"), dir).is_err());
    }

    #[tokio::test]
    async fn compactor_keeps_one_interval_and_the_last_revisions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(&dir.path().join("s.redb")).expect("open");
        let mut rev = store.create("/k", vec![]).await.expect("create");
        let first = compact_once(&store, None, 2).await.expect("tick");
        assert_eq!(store.compacted_revision().await.expect("compacted"), 0);
        for _ in 0..10 {
            rev = store.update("/k", vec![], rev).await.expect("update");
        }
        let second = compact_once(&store, Some(first), 2).await.expect("tick");
        assert_eq!(second, rev);
        assert_eq!(store.compacted_revision().await.expect("compacted"), first);
        compact_once(&store, Some(second), 2).await.expect("tick");
        assert_eq!(
            store.compacted_revision().await.expect("compacted"),
            rev - 2
        );
    }
}
