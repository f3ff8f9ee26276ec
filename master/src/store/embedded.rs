//! The default store: one redb file (`DATA_DIR/store.redb`).
//!
//! Tables: `kv` (key -> create rev | mod rev | value), `log` (revision -> event, the
//! change log that watches and past-revision lists read), `meta` (current revision,
//! compaction point). One writer thread owns all writes: it takes every request
//! waiting in its queue, applies them in one transaction (one revision each) and
//! commits once with an fsync (group commit), then answers each request and
//! broadcasts the events. So an Ok reply always means "on disk", and concurrent
//! writers share the fsync instead of queueing behind one each.
//!
//! A list at an older revision starts from the current state and undoes the change
//! log after that revision (each event carries the value it replaced), so paged
//! lists see one snapshot as long as the log reaches back that far.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{mpsc as std_mpsc, Arc};

use async_trait::async_trait;
use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, Table, TableDefinition,
    WriteTransaction,
};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::codec::{decode_event, decode_value, encode_event, encode_value};
use super::{Event, KeyValue, ListOptions, ListResult, Result, Store, StoreError, WatchStream};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const LOG: TableDefinition<i64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";

/// Requests taken into one transaction at most; bounds the latency a request can
/// add to the others in its batch.
const MAX_BATCH: usize = 512;
/// Events a live watcher may fall behind before it re-reads the change log.
const BROADCAST_CAPACITY: usize = 4096;
/// Events buffered per watch stream before its feeder waits for the reader.
const WATCH_BUFFER: usize = 256;
/// redb's in-process page cache (its default is 1 GiB, which a 10k-pod store
/// grew to ~85 MiB of master RSS); reads beyond it come from the kernel's page
/// cache, which does not count against the master's memory.
const CACHE_BYTES: usize = 32 << 20;

/// The embedded backend. Cheap to share behind an `Arc`; dropping the last handle
/// stops the writer thread after it finished the queued writes.
pub struct EmbeddedStore {
    inner: Arc<Inner>,
    /// None only while dropping.
    writer: Option<std_mpsc::Sender<Request>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    events: broadcast::Sender<Arc<Event>>,
}

struct Inner {
    db: Database,
    path: String,
}

enum Op {
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: i64,
    },
    Delete {
        key: String,
        expected: Option<i64>,
    },
    Compact {
        revision: i64,
    },
}

enum Done {
    Revision(i64),
    Deleted(KeyValue, i64),
    Compacted,
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Done>>,
}

impl EmbeddedStore {
    /// Open (creating if needed) the store file at `path`; its directory is created.
    pub fn open(path: &Path) -> Result<EmbeddedStore> {
        let shown = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Config(format!("creating store directory {}: {e}", dir.display()))
            })?;
        }
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| embedded(&shown, "open", e))?;
        let inner = Arc::new(Inner { db, path: shown });
        inner.init_tables()?;
        let (writer, rx) = std_mpsc::channel();
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        let thread_inner = inner.clone();
        let thread_events = events.clone();
        let writer_thread = std::thread::Builder::new()
            .name("corral-store-writer".into())
            .spawn(move || run_writer(&thread_inner, &rx, &thread_events))
            .map_err(|e| StoreError::Config(format!("starting the store writer thread: {e}")))?;
        Ok(EmbeddedStore {
            inner,
            writer: Some(writer),
            writer_thread: Some(writer_thread),
            events,
        })
    }

    async fn write(&self, op: Op) -> Result<Done> {
        let (reply, rx) = oneshot::channel();
        let writer = self.writer.as_ref().ok_or(StoreError::Closed)?;
        writer
            .send(Request { op, reply })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|_| StoreError::Closed)?
    }
}

/// Finishes the queued writes and closes the file, so the same path can be opened
/// again at once (watch streams still being read keep it open until they end).
impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.writer.take();
        if let Some(thread) = self.writer_thread.take() {
            // A panicked writer already answered nobody; nothing more to do.
            let _ = thread.join();
        }
    }
}

fn embedded(path: &str, op: &'static str, e: impl Into<redb::Error>) -> StoreError {
    StoreError::Embedded {
        path: path.to_string(),
        op,
        source: Arc::new(e.into()),
    }
}

/// Errors that concern one request, as opposed to the database failing.
fn is_logical(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::AlreadyExists { .. }
            | StoreError::NotFound { .. }
            | StoreError::Conflict { .. }
            | StoreError::FutureRevision { .. }
    )
}

impl Inner {
    fn err(&self, op: &'static str) -> impl Fn(redb::Error) -> StoreError + '_ {
        move |e| embedded(&self.path, op, e)
    }

    fn init_tables(&self) -> Result<()> {
        let run = || -> Result<(), redb::Error> {
            let txn = self.db.begin_write()?;
            {
                txn.open_table(KV)?;
                txn.open_table(LOG)?;
                let mut meta = txn.open_table(META)?;
                if meta.get(META_REVISION)?.is_none() {
                    // etcd's first revision is 1 on an empty cluster; match it.
                    meta.insert(META_REVISION, 1)?;
                    meta.insert(META_COMPACTED, 0)?;
                }
            }
            txn.commit()?;
            Ok(())
        };
        run().map_err(self.err("initialize tables"))
    }

    fn begin_read(&self) -> Result<ReadTransaction> {
        self.db
            .begin_read()
            .map_err(|e| embedded(&self.path, "begin read", e))
    }

    /// (current revision, compaction point) as seen by `txn`.
    fn meta(&self, txn: &ReadTransaction) -> Result<(i64, i64)> {
        let run = || -> Result<(i64, i64), redb::Error> {
            let meta = txn.open_table(META)?;
            let rev = meta.get(META_REVISION)?.map(|v| v.value()).unwrap_or(1);
            let compacted = meta.get(META_COMPACTED)?.map(|v| v.value()).unwrap_or(0);
            Ok((rev, compacted))
        };
        run().map_err(self.err("read meta"))
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let txn = self.begin_read()?;
        let table = txn
            .open_table(KV)
            .map_err(|e| embedded(&self.path, "get", e))?;
        let found = table.get(key).map_err(|e| embedded(&self.path, "get", e))?;
        found.map(|v| decode_value(key, v.value())).transpose()
    }

    fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListResult> {
        let txn = self.begin_read()?;
        let (current, compacted) = self.meta(&txn)?;
        let at = opts.revision.unwrap_or(current);
        check_revision(at, current, compacted)?;
        let lower = match &opts.start_after {
            Some(after) if after.as_str() >= prefix => Bound::Excluded(after.as_str()),
            _ => Bound::Included(prefix),
        };
        let undo = if at < current {
            self.undo_map(&txn, at, current, prefix, lower)?
        } else {
            BTreeMap::new()
        };
        let err = self.err("list");
        let table = txn.open_table(KV).map_err(|e| err(e.into()))?;
        let range = table
            .range::<&str>((lower, Bound::Unbounded))
            .map_err(|e| err(e.into()))?;
        let mut live = range.map_while(|entry| match entry {
            Ok((k, v)) if k.value().starts_with(prefix) => {
                Some(decode_value(k.value(), v.value()).map(|kv| (kv.key.clone(), kv)))
            }
            Ok(_) => None,
            Err(e) => Some(Err(err(e.into()))),
        });
        let mut past = undo.into_iter().peekable();
        let mut next_live = live.next().transpose()?;
        let limit = opts.limit.filter(|&l| l > 0);
        let mut items = Vec::new();
        let mut more = false;
        loop {
            // Merge the live keys with the undone ones; an undone key wins.
            let from_live = match (&next_live, past.peek()) {
                (None, None) => break,
                (Some((lk, _)), Some((pk, _))) => lk < pk,
                (Some(_), None) => true,
                (None, Some(_)) => false,
            };
            let item = if from_live {
                let (_, kv) = next_live.take().expect("peeked");
                next_live = live.next().transpose()?;
                Some(kv)
            } else {
                let (pk, value) = past.next().expect("peeked");
                if next_live.as_ref().is_some_and(|(lk, _)| *lk == pk) {
                    next_live = live.next().transpose()?;
                }
                value
            };
            let Some(item) = item else { continue };
            if limit.is_some_and(|l| items.len() == l) {
                more = true;
                break;
            }
            items.push(item);
        }
        Ok(ListResult {
            items,
            revision: at,
            more,
        })
    }

    /// For every key under `prefix` (and past `lower`) written after `at`, its value
    /// at `at` (None: it did not exist then): the value replaced by its first write
    /// after `at`.
    fn undo_map(
        &self,
        txn: &ReadTransaction,
        at: i64,
        current: i64,
        prefix: &str,
        lower: Bound<&str>,
    ) -> Result<BTreeMap<String, Option<KeyValue>>> {
        let err = self.err("read change log");
        let log = txn.open_table(LOG).map_err(|e| err(e.into()))?;
        let mut undo = BTreeMap::new();
        for entry in log.range(at + 1..=current).map_err(|e| err(e.into()))? {
            let (rev, bytes) = entry.map_err(|e| err(e.into()))?;
            let event = decode_event(rev.value(), bytes.value())?;
            let key = event.key().to_string();
            let past_lower = match lower {
                Bound::Excluded(l) => key.as_str() > l,
                _ => true,
            };
            if !key.starts_with(prefix) || !past_lower || undo.contains_key(&key) {
                continue;
            }
            let before = match event {
                Event::Put { prev, .. } => prev,
                Event::Delete { prev, .. } => Some(prev),
            };
            undo.insert(key, before);
        }
        Ok(undo)
    }

    /// Events under `prefix` after revision `after`, and the revision read up to.
    fn read_log(&self, prefix: &str, after: i64) -> Result<(Vec<Event>, i64)> {
        let txn = self.begin_read()?;
        let (current, compacted) = self.meta(&txn)?;
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compact_revision: compacted,
            });
        }
        let err = self.err("read change log");
        let log = txn.open_table(LOG).map_err(|e| err(e.into()))?;
        let mut events = Vec::new();
        if after < current {
            for entry in log.range(after + 1..=current).map_err(|e| err(e.into()))? {
                let (rev, bytes) = entry.map_err(|e| err(e.into()))?;
                let event = decode_event(rev.value(), bytes.value())?;
                if event.key().starts_with(prefix) {
                    events.push(event);
                }
            }
        }
        Ok((events, current.max(after)))
    }
}

fn check_revision(at: i64, current: i64, compacted: i64) -> Result<()> {
    if at < compacted {
        return Err(StoreError::Compacted {
            requested: at,
            compact_revision: compacted,
        });
    }
    if at > current {
        return Err(StoreError::FutureRevision {
            requested: at,
            current,
        });
    }
    Ok(())
}

fn run_writer(
    inner: &Inner,
    rx: &std_mpsc::Receiver<Request>,
    events: &broadcast::Sender<Arc<Event>>,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        commit_batch(inner, batch, events);
    }
}

fn commit_batch(inner: &Inner, batch: Vec<Request>, events: &broadcast::Sender<Arc<Event>>) {
    let (ops, replies): (Vec<Op>, Vec<_>) = batch.into_iter().map(|r| (r.op, r.reply)).unzip();
    match apply_batch(inner, ops) {
        Ok((outcomes, new_events)) => {
            // No receivers is fine: nobody is watching.
            for event in new_events {
                let _ = events.send(Arc::new(event));
            }
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(outcome);
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

type Outcomes = (Vec<Result<Done>>, Vec<Event>);

/// Apply every op in one transaction and commit it; per-op failures (conflicts)
/// are outcomes, a database failure fails the whole batch (nothing committed).
fn apply_batch(inner: &Inner, ops: Vec<Op>) -> Result<Outcomes> {
    let err = inner.err("write");
    let txn = inner.db.begin_write().map_err(|e| err(e.into()))?;
    let mut outcomes = Vec::with_capacity(ops.len());
    let mut events = Vec::new();
    {
        let mut tables = Tables::open(&txn).map_err(&err)?;
        for op in ops {
            match tables.apply(op) {
                Ok((done, event)) => {
                    if let Some(event) = event {
                        tables.log_event(&event).map_err(&err)?;
                        events.push(event);
                    }
                    outcomes.push(Ok(done));
                }
                Err(Fault::Store(e)) if is_logical(&e) => outcomes.push(Err(e)),
                Err(Fault::Store(e)) => return Err(e),
                Err(Fault::Db(e)) => return Err(err(e)),
            }
        }
        tables.save_meta().map_err(&err)?;
    }
    txn.commit().map_err(|e| err(e.into()))?;
    Ok((outcomes, events))
}

enum Fault {
    Store(StoreError),
    Db(redb::Error),
}

impl<E: Into<redb::Error>> From<E> for Fault {
    fn from(e: E) -> Self {
        Fault::Db(e.into())
    }
}

fn fault(e: StoreError) -> Fault {
    Fault::Store(e)
}

struct Tables<'t> {
    kv: Table<'t, &'static str, &'static [u8]>,
    log: Table<'t, i64, &'static [u8]>,
    meta: Table<'t, &'static str, i64>,
    revision: i64,
    compacted: i64,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, redb::Error> {
        let meta = txn.open_table(META)?;
        let revision = meta.get(META_REVISION)?.map(|v| v.value()).unwrap_or(1);
        let compacted = meta.get(META_COMPACTED)?.map(|v| v.value()).unwrap_or(0);
        Ok(Tables {
            kv: txn.open_table(KV)?,
            log: txn.open_table(LOG)?,
            meta,
            revision,
            compacted,
        })
    }

    fn current(&self, key: &str) -> Result<Option<KeyValue>, Fault> {
        let found = self.kv.get(key)?;
        found
            .map(|v| decode_value(key, v.value()))
            .transpose()
            .map_err(fault)
    }

    fn put(&mut self, key: &str, create_revision: i64, value: &[u8]) -> Result<KeyValue, Fault> {
        self.revision += 1;
        let rev = self.revision;
        let create_revision = if create_revision == 0 {
            rev
        } else {
            create_revision
        };
        self.kv
            .insert(key, encode_value(create_revision, rev, value).as_slice())?;
        Ok(KeyValue {
            key: key.to_string(),
            value: value.to_vec(),
            create_revision,
            mod_revision: rev,
        })
    }

    fn apply(&mut self, op: Op) -> Result<(Done, Option<Event>), Fault> {
        match op {
            Op::Create { key, value } => {
                if self.kv.get(key.as_str())?.is_some() {
                    return Err(fault(StoreError::AlreadyExists { key }));
                }
                let kv = self.put(&key, 0, &value)?;
                Ok((
                    Done::Revision(kv.mod_revision),
                    Some(Event::Put { kv, prev: None }),
                ))
            }
            Op::Update {
                key,
                value,
                expected,
            } => {
                let Some(prev) = self.current(&key)? else {
                    return Err(fault(StoreError::NotFound { key }));
                };
                if prev.mod_revision != expected {
                    let actual = prev.mod_revision;
                    return Err(fault(StoreError::Conflict {
                        key,
                        expected,
                        actual,
                    }));
                }
                let kv = self.put(&key, prev.create_revision, &value)?;
                let done = Done::Revision(kv.mod_revision);
                Ok((
                    done,
                    Some(Event::Put {
                        kv,
                        prev: Some(prev),
                    }),
                ))
            }
            Op::Delete { key, expected } => {
                let Some(prev) = self.current(&key)? else {
                    return Err(fault(StoreError::NotFound { key }));
                };
                if let Some(expected) = expected.filter(|&e| e != prev.mod_revision) {
                    let actual = prev.mod_revision;
                    return Err(fault(StoreError::Conflict {
                        key,
                        expected,
                        actual,
                    }));
                }
                self.kv.remove(key.as_str())?;
                self.revision += 1;
                let revision = self.revision;
                let done = Done::Deleted(prev.clone(), revision);
                Ok((done, Some(Event::Delete { prev, revision })))
            }
            Op::Compact { revision } => {
                if revision > self.revision {
                    return Err(fault(StoreError::FutureRevision {
                        requested: revision,
                        current: self.revision,
                    }));
                }
                if revision > self.compacted {
                    self.log.retain_in(..=revision, |_, _| false)?;
                    self.compacted = revision;
                }
                Ok((Done::Compacted, None))
            }
        }
    }

    fn log_event(&mut self, event: &Event) -> Result<(), redb::Error> {
        self.log
            .insert(event.revision(), encode_event(event).as_slice())?;
        Ok(())
    }

    fn save_meta(&mut self) -> Result<(), redb::Error> {
        self.meta.insert(META_REVISION, self.revision)?;
        self.meta.insert(META_COMPACTED, self.compacted)?;
        Ok(())
    }
}

/// Deliver `initial` (already read from the log up to `last`), then live events;
/// when the live feed lagged or skipped a revision, re-read the log from `last`.
async fn feed_watch(
    inner: Arc<Inner>,
    mut live: broadcast::Receiver<Arc<Event>>,
    prefix: String,
    initial: Vec<Event>,
    mut last: i64,
    tx: mpsc::Sender<Result<Event>>,
) {
    let mut backlog = initial;
    loop {
        for event in backlog.drain(..) {
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
        loop {
            match live.recv().await {
                Ok(event) if event.revision() <= last => {}
                Ok(event) if event.revision() == last + 1 => {
                    last = event.revision();
                    if event.key().starts_with(&prefix)
                        && tx.send(Ok((*event).clone())).await.is_err()
                    {
                        return;
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
        let reader = inner.clone();
        let p = prefix.clone();
        let caught_up = tokio::task::spawn_blocking(move || reader.read_log(&p, last)).await;
        match caught_up {
            Ok(Ok((events, upto))) => {
                backlog = events;
                last = upto;
            }
            Ok(Err(e)) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
            Err(_) => return,
        }
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        // Read on the calling task: one key is a few cached B-tree pages
        // (microseconds), less than the two thread hand-offs of
        // spawn_blocking that every GET, create (its namespace check) and
        // update (the object it replaces) used to pay.
        self.inner.get(key)
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let prefix = prefix.to_string();
        self.read(move |inner| inner.list(&prefix, &opts)).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<i64> {
        let key = key.to_string();
        match self.write(Op::Create { key, value }).await? {
            Done::Revision(rev) => Ok(rev),
            _ => unreachable!("create answers with a revision"),
        }
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected_mod_revision: i64) -> Result<i64> {
        let op = Op::Update {
            key: key.to_string(),
            value,
            expected: expected_mod_revision,
        };
        match self.write(op).await? {
            Done::Revision(rev) => Ok(rev),
            _ => unreachable!("update answers with a revision"),
        }
    }

    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<i64>,
    ) -> Result<(KeyValue, i64)> {
        let op = Op::Delete {
            key: key.to_string(),
            expected: expected_mod_revision,
        };
        match self.write(op).await? {
            Done::Deleted(prev, rev) => Ok((prev, rev)),
            _ => unreachable!("delete answers with the deleted value"),
        }
    }

    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream> {
        // Subscribe before reading the log: every event committed after the read
        // snapshot is then on the live feed.
        let live = self.events.subscribe();
        let p = prefix.to_string();
        let (initial, last) = self
            .read(move |inner| inner.read_log(&p, from_revision))
            .await?;
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let feeder = tokio::spawn(feed_watch(
            self.inner.clone(),
            live,
            prefix.to_string(),
            initial,
            last,
            tx,
        ));
        Ok(WatchStream::new(rx, Some(feeder)))
    }

    async fn current_revision(&self) -> Result<i64> {
        self.inner
            .meta(&self.inner.begin_read()?)
            .map(|(rev, _)| rev)
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        self.write(Op::Compact { revision }).await.map(|_| ())
    }

    async fn compacted_revision(&self) -> Result<i64> {
        self.read(|inner| inner.meta(&inner.begin_read()?).map(|(_, c)| c))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, name: &str) -> EmbeddedStore {
        EmbeddedStore::open(&dir.join(name)).expect("open embedded store")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut n = 0;
        super::super::conformance::run_all(|| {
            n += 1;
            Arc::new(open(dir.path(), &format!("store{n}.redb")))
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reopen_keeps_values_revision_and_history() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (rev, compacted) = {
            let s = open(dir.path(), "store.redb");
            let r = s.create("/a", b"1".to_vec()).await.expect("create");
            let r = s.update("/a", b"2".to_vec(), r).await.expect("update");
            s.create("/b", b"3".to_vec()).await.expect("create");
            s.compact(r - 1).await.expect("compact");
            (s.current_revision().await.expect("rev"), r - 1)
        };
        let s = open(dir.path(), "store.redb");
        assert_eq!(s.current_revision().await.expect("rev"), rev);
        assert_eq!(s.compacted_revision().await.expect("compacted"), compacted);
        assert_eq!(s.get("/a").await.expect("get").expect("a").value, b"2");
        let mut w = s.watch("/", compacted).await.expect("watch");
        assert_eq!(
            w.next().await.expect("event").expect("ok").revision(),
            compacted + 1
        );
        assert_eq!(s.create("/c", vec![]).await.expect("create"), rev + 1);
    }
}
