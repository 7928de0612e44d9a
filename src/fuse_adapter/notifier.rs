//! The kernel notifier: the one thread that tells the kernel to forget cached entries and
//! attributes. It reads one ordered queue holding the caches' change stream and the adapter's
//! own corrections (a failed commit, a rename), and is never a request thread: an invalidation
//! waits for the directory lock that a request in progress may hold, so sent from inside that
//! request it would wait forever.

use std::ffi::OsStr;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;

use fuser::{INodeNo, Notifier};

use crate::cache::changes::{Change, ChangeStream};
use crate::fs::{Invalidation, SecretFs};

/// One thing the kernel must learn.
#[derive(Debug)]
pub enum Notice {
    /// A stored value changed (from the caches' change stream).
    Change(Change),
    /// Forget these entries and attributes (the adapter's corrections).
    Forget(Invalidation),
}

/// What the notifier thread calls in the kernel (fuser's `Notifier`; a recorder in tests).
pub trait KernelCaches: Send + 'static {
    /// Drop the cached entry `name` in directory `parent`.
    fn inval_entry(&self, parent: u64, name: &str);
    /// Drop the cached attributes and pages of `ino`.
    fn inval_inode(&self, ino: u64);
    /// Tell that entry `name` (inode `child`) of `parent` was deleted (inotify watchers see it);
    /// false if the kernel refused (a directory with cached children, a changed entry).
    fn delete(&self, parent: u64, child: u64, name: &str) -> bool;
}

impl KernelCaches for Notifier {
    fn inval_entry(&self, parent: u64, name: &str) {
        let _ = Notifier::inval_entry(self, INodeNo(parent), OsStr::new(name));
    }

    fn inval_inode(&self, ino: u64) {
        let _ = Notifier::inval_inode(self, INodeNo(ino), 0, 0);
    }

    fn delete(&self, parent: u64, child: u64, name: &str) -> bool {
        Notifier::delete(self, INodeNo(parent), INodeNo(child), OsStr::new(name)).is_ok()
    }
}

/// The sending side of the notifier's queue. Cheap to clone.
#[derive(Clone)]
pub struct Notices {
    sender: Sender<Notice>,
}

/// The queue the notifier thread reads, until it is started.
pub struct Queue {
    receiver: Receiver<Notice>,
}

/// A queue subscribed to `changes`, and its sending side for the adapter's corrections.
pub fn queue(changes: &ChangeStream) -> (Notices, Queue) {
    let (sender, receiver) = mpsc::channel();
    changes.subscribe(sender.clone(), Notice::Change);
    (Notices { sender }, Queue { receiver })
}

impl Notices {
    /// Queue `stale` for the kernel to forget. Never blocks.
    pub fn forget(&self, stale: Invalidation) {
        if stale != Invalidation::default() {
            let _ = self.sender.send(Notice::Forget(stale));
        }
    }
}

impl Queue {
    /// Start the notifier thread: it turns each notice, in order, into kernel invalidations,
    /// and ends when every sender is gone.
    pub fn start(self, fs: Arc<SecretFs>, kernel: impl KernelCaches) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new().name("secretfs-notify".into()).spawn(move || {
            for notice in self.receiver {
                let stale = match notice {
                    Notice::Change(change) => fs.invalidation_for(&change),
                    Notice::Forget(stale) => stale,
                };
                send(&kernel, &stale);
            }
        })
    }
}

/// Entries first: once an inode's attributes are dropped, the next `stat` of the path must
/// already look the name up again (a retired inode answers for the files still open on it).
fn send(kernel: &impl KernelCaches, stale: &Invalidation) {
    for (parent, child, name) in &stale.replaced {
        if !kernel.delete(parent.0, child.0, name) {
            kernel.inval_entry(parent.0, name);
        }
    }
    for (parent, name) in &stale.entries {
        kernel.inval_entry(parent.0, name);
    }
    for ino in &stale.inodes {
        kernel.inval_inode(ino.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{CacheSettings, Runtime, ServiceCache};
    use crate::fs::{FsConfig, OpenMode};
    use crate::inodes::Ino;
    use crate::provider::memory::MemoryProvider;
    use crate::provider::{Service, ValueKind};
    use std::sync::Mutex;

    /// Records each kernel call with the name of the thread that made it.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<(String, String)>>>);

    impl Recorder {
        fn record(&self, call: String) {
            let thread = std::thread::current().name().unwrap_or_default().to_string();
            self.0.lock().unwrap().push((thread, call));
        }
    }

    impl KernelCaches for Recorder {
        fn inval_entry(&self, parent: u64, name: &str) {
            self.record(format!("entry {parent} {name}"));
        }
        fn inval_inode(&self, ino: u64) {
            self.record(format!("inode {ino}"));
        }
        fn delete(&self, parent: u64, child: u64, name: &str) -> bool {
            self.record(format!("delete {parent} {child} {name}"));
            true
        }
    }

    #[test]
    fn invalidations_are_sent_by_the_notifier_thread_in_order_after_the_request() {
        let ps = Arc::new(MemoryProvider::for_service(Service::ParameterStore));
        ps.insert("/a", ValueKind::String, "1");
        ps.insert("/b", ValueKind::String, "1");
        let runtime = Runtime::default();
        let (notices, queue) = super::queue(&runtime.changes);
        let cache =
            ServiceCache::with_runtime(Service::ParameterStore, ps, "/".into(), CacheSettings::default(), runtime);
        let mut config = FsConfig::for_owner(0, 0);
        config.file_mode = 0o600;
        let fs = Arc::new(SecretFs::new(config, vec![(Service::ParameterStore, cache)]));
        let ps_dir = fs.lookup(Ino::ROOT, "ps").unwrap().ino;
        let mut inodes = Vec::new();
        // Two writes, as a request thread makes them; the kernel hears nothing from this thread.
        for name in ["a", "b"] {
            let ino = fs.lookup(ps_dir, name).unwrap().ino;
            let fh = fs.open(ino, OpenMode { write: true, truncate: true, ..OpenMode::default() }).unwrap().fh;
            fs.write(fh, 0, b"2").unwrap();
            fs.release(fh).unwrap();
            inodes.push(ino);
        }
        notices.forget(Invalidation { inodes: vec![Ino(99)], ..Invalidation::default() });
        let recorder = Recorder::default();
        let thread = queue.start(fs, recorder.clone()).unwrap();
        drop(notices);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while recorder.0.lock().unwrap().len() < 7 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let calls = recorder.0.lock().unwrap().clone();
        assert!(calls.iter().all(|(thread, _)| thread == "secretfs-notify"), "{calls:?}");
        let calls: Vec<String> = calls.into_iter().map(|(_, call)| call).collect();
        let expected = [
            format!("entry {} a", ps_dir.0),
            format!("inode {}", inodes[0].0),
            format!("inode {}", ps_dir.0),
            format!("entry {} b", ps_dir.0),
            format!("inode {}", inodes[1].0),
            format!("inode {}", ps_dir.0),
            "inode 99".to_string(),
        ];
        assert_eq!(calls, expected, "entries before inodes, changes in the order they happened");
        drop(thread);
    }
}
