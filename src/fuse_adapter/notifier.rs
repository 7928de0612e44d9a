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
}

impl KernelCaches for Notifier {
    fn inval_entry(&self, parent: u64, name: &str) {
        let _ = Notifier::inval_entry(self, INodeNo(parent), OsStr::new(name));
    }

    fn inval_inode(&self, ino: u64) {
        let _ = Notifier::inval_inode(self, INodeNo(ino), 0, 0);
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
    for (parent, name) in &stale.entries {
        kernel.inval_entry(parent.0, name);
    }
    for ino in &stale.inodes {
        kernel.inval_inode(ino.0);
    }
}
