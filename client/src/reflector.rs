use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use corral_api::Resource;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::error::Error;
use crate::params::ListParams;
use crate::watch::WatchEvent;

const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Changes a slow subscriber may fall behind by before it sees `Lagged`
/// (then it reads the cache again: subscribers are level-triggered).
const CHANNEL: usize = 4096;

/// What changed in a [`Cache`].
#[derive(Debug)]
pub enum Change<T> {
    /// Created or updated.
    Applied(Arc<T>),
    Deleted(Arc<T>),
    /// The cache was filled again from a full list.
    Resynced,
}

impl<T> Clone for Change<T> {
    fn clone(&self) -> Self {
        match self {
            Change::Applied(o) => Change::Applied(o.clone()),
            Change::Deleted(o) => Change::Deleted(o.clone()),
            Change::Resynced => Change::Resynced,
        }
    }
}

type Key = (String, String);

/// The objects a [`Reflector`] has seen, by namespace and name.
pub struct Cache<T> {
    objects: Arc<RwLock<BTreeMap<Key, Arc<T>>>>,
    ready: watch::Receiver<bool>,
}

impl<T> Clone for Cache<T> {
    fn clone(&self) -> Self {
        Cache {
            objects: self.objects.clone(),
            ready: self.ready.clone(),
        }
    }
}

impl<T: Resource> Cache<T> {
    /// Waits for the first full list.
    pub async fn ready(&self) {
        let mut r = self.ready.clone();
        // Err only when the reflector is gone; then there is nothing to wait for.
        let _ = r.wait_for(|ready| *ready).await;
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    pub fn get(&self, ns: &str, name: &str) -> Option<Arc<T>> {
        let map = self.objects.read().unwrap_or_else(|p| p.into_inner());
        map.get(&(ns.to_string(), name.to_string())).cloned()
    }

    /// Every object, ordered by namespace and name.
    pub fn list(&self) -> Vec<Arc<T>> {
        let map = self.objects.read().unwrap_or_else(|p| p.into_inner());
        map.values().cloned().collect()
    }

    pub fn list_ns(&self, ns: &str) -> Vec<Arc<T>> {
        let map = self.objects.read().unwrap_or_else(|p| p.into_inner());
        map.range((ns.to_string(), String::new())..)
            .take_while(|((n, _), _)| n == ns)
            .map(|(_, o)| o.clone())
            .collect()
    }

    fn replace(&self, items: Vec<T>) {
        let map = items.into_iter().map(|o| (key(&o), Arc::new(o))).collect();
        *self.objects.write().unwrap_or_else(|p| p.into_inner()) = map;
    }

    fn apply(&self, obj: T) -> Arc<T> {
        let obj = Arc::new(obj);
        let mut map = self.objects.write().unwrap_or_else(|p| p.into_inner());
        map.insert(key(obj.as_ref()), obj.clone());
        obj
    }

    fn remove(&self, obj: T) -> Arc<T> {
        let mut map = self.objects.write().unwrap_or_else(|p| p.into_inner());
        map.remove(&key(&obj));
        Arc::new(obj)
    }
}

fn key<T: Resource>(o: &T) -> Key {
    let m = o.meta();
    (m.namespace.clone(), m.name.clone())
}

/// A list + watch loop that keeps a [`Cache`] of one kind (an informer). It
/// runs until dropped: a broken watch resumes from the last resourceVersion
/// seen, a 410 or any other failure lists again (after a back-off of 1 s
/// doubling to 30 s while failures repeat).
pub struct Reflector<T> {
    cache: Cache<T>,
    changes: broadcast::Sender<Change<T>>,
    task: JoinHandle<()>,
}

impl<T> Drop for Reflector<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<T: Resource> Reflector<T> {
    /// Starts the loop for objects of the kind in `ns` ("" = all namespaces)
    /// matching `p`. Needs a tokio runtime.
    pub fn spawn(client: Client, ns: &str, p: ListParams) -> Reflector<T> {
        let (ready_tx, ready) = watch::channel(false);
        let cache = Cache {
            objects: Arc::new(RwLock::new(BTreeMap::new())),
            ready,
        };
        let (changes, _) = broadcast::channel(CHANNEL);
        let run = Run {
            client,
            ns: ns.to_string(),
            params: p,
            cache: cache.clone(),
            changes: changes.clone(),
            ready: ready_tx,
        };
        let task = tokio::spawn(run.forever());
        Reflector {
            cache,
            changes,
            task,
        }
    }

    pub fn cache(&self) -> Cache<T> {
        self.cache.clone()
    }

    /// Woken after every change and every relist.
    pub fn subscribe(&self) -> broadcast::Receiver<Change<T>> {
        self.changes.subscribe()
    }
}

struct Run<T> {
    client: Client,
    ns: String,
    params: ListParams,
    cache: Cache<T>,
    changes: broadcast::Sender<Change<T>>,
    ready: watch::Sender<bool>,
}

impl<T: Resource> Run<T> {
    async fn forever(self) {
        let mut backoff = BACKOFF_FIRST;
        loop {
            match self.list_and_watch().await {
                Ok(()) => backoff = BACKOFF_FIRST,
                Err(e) if e.is_gone() => backoff = BACKOFF_FIRST,
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// One list, then watches from it for as long as they resume cleanly.
    async fn list_and_watch(&self) -> Result<(), Error> {
        let list = self.client.list::<T>(&self.ns, &self.params).await?;
        let mut rv = list.metadata.resource_version.clone();
        self.cache.replace(list.items);
        self.ready.send_replace(true);
        let _ = self.changes.send(Change::Resynced);
        loop {
            let mut stream = self.client.watch::<T>(&self.ns, &self.params, &rv).await?;
            while let Some(ev) = stream.next().await {
                let change = match ev? {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                        rv = o.meta().resource_version.clone();
                        Change::Applied(self.cache.apply(o))
                    }
                    WatchEvent::Deleted(o) => {
                        rv = o.meta().resource_version.clone();
                        Change::Deleted(self.cache.remove(o))
                    }
                    WatchEvent::Bookmark { resource_version } => {
                        rv = resource_version;
                        continue;
                    }
                };
                // No subscriber is fine: the cache alone may be what is used.
                let _ = self.changes.send(change);
            }
        }
    }
}
