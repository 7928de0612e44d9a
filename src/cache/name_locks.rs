//! Per-name write locks: one writer of a name at a time (its read-modify-write holds the lock
//! across the service calls), while writers of other names and every reader go on.

use std::collections::HashSet;

use super::sync::{Condvar, Mutex};

use super::lock;

/// The names being written now.
#[derive(Default)]
pub struct NameLocks {
    held: Mutex<HashSet<String>>,
    released: Condvar,
}

/// Holds the write lock of one name until dropped.
pub struct NameGuard<'a> {
    locks: &'a NameLocks,
    name: String,
}

impl NameLocks {
    /// Wait until no one else writes `name`, then hold its lock.
    pub fn acquire(&self, name: &str) -> NameGuard<'_> {
        let mut held = lock(&self.held);
        while held.contains(name) {
            held = self.released.wait(held).unwrap_or_else(|p| p.into_inner());
        }
        held.insert(name.to_string());
        NameGuard { locks: self, name: name.to_string() }
    }

    /// How many names are being written now.
    #[cfg(test)]
    fn held(&self) -> usize {
        lock(&self.held).len()
    }
}

impl Drop for NameGuard<'_> {
    fn drop(&mut self) {
        lock(&self.locks.held).remove(&self.name);
        self.locks.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn one_writer_per_name_and_other_names_go_on() {
        let locks = Arc::new(NameLocks::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let (locks, inside, most) = (locks.clone(), inside.clone(), most.clone());
                std::thread::spawn(move || {
                    let _guard = locks.acquire("a");
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        let a = locks.acquire("b");
        let _b = locks.acquire("c");
        drop(a);
        writers.into_iter().for_each(|w| w.join().unwrap());
        assert_eq!(most.load(Ordering::SeqCst), 1, "two writers of one name overlapped");
        assert_eq!(locks.held(), 1);
    }
}
