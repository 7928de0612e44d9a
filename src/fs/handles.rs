//! Open file and directory handles: numbered snapshots taken at open time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A table of open handles of type `T`, numbered from 1.
#[derive(Debug)]
pub struct HandleTable<T> {
    next: AtomicU64,
    open: Mutex<HashMap<u64, T>>,
}

impl<T> Default for HandleTable<T> {
    fn default() -> Self {
        HandleTable { next: AtomicU64::new(1), open: Mutex::new(HashMap::new()) }
    }
}

impl<T: Clone> HandleTable<T> {
    /// Keep `item` and return its handle number.
    pub fn insert(&self, item: T) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(fh, item);
        fh
    }

    /// A copy of the item behind `fh`.
    pub fn get(&self, fh: u64) -> Option<T> {
        self.lock().get(&fh).cloned()
    }

    /// The handle number of the first open item that `wanted` accepts.
    pub fn find(&self, wanted: impl Fn(&T) -> bool) -> Option<u64> {
        self.lock().iter().find(|(_, item)| wanted(item)).map(|(fh, _)| *fh)
    }

    /// A copy of every open item.
    pub fn all(&self) -> Vec<T> {
        self.lock().values().cloned().collect()
    }

    /// How many handles are open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no handle is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forget `fh`.
    pub fn remove(&self, fh: u64) -> Option<T> {
        self.lock().remove(&fh)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, T>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}
