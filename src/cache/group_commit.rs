//! Group commit: writers of one name whose commit arrives while an update of that name is in
//! flight join one batch; when the update ends, one of them applies every edit of the batch in
//! arrival order to the value stored now and makes one update call, whose outcome every joined
//! writer gets. A lone writer makes the same calls as without it.

use std::collections::HashMap;
use std::sync::Arc;

use super::lock;
use super::sync::mpsc::{channel, Receiver, Sender};
use super::sync::Mutex;
use crate::error::{Error, Result};
use crate::provider::Fetched;

/// One writer's edit: the new bytes from the value as it stands (owned, so the writer that
/// runs the batch may run it).
pub type Edit = Box<dyn FnOnce(&Fetched) -> Result<Vec<u8>> + Send>;

/// The edits of one batch, each with where its writer waits for the outcome.
pub type Batch = Vec<(Edit, Sender<Result<bool>>)>;

/// The open batch of each name: edits that will go in the next update of that name.
#[derive(Default)]
pub struct Batches {
    open: Mutex<HashMap<String, Arc<Mutex<Batch>>>>,
}

/// What a writer does after [`Batches::join`].
pub enum Joined {
    /// It opened the batch: it takes the name's write lock, then [`Batches::close`]s the batch
    /// and runs it.
    Leader(Arc<Mutex<Batch>>, Receiver<Result<bool>>),
    /// It joined a batch another writer runs: it waits for the outcome.
    Follower(Receiver<Result<bool>>),
}

impl Batches {
    /// Add `edit` to the open batch of `name`, opening one if there is none.
    pub fn join(&self, name: &str, edit: Edit) -> Joined {
        let (sender, receiver) = channel();
        let mut open = lock(&self.open);
        match open.get(name) {
            Some(batch) => {
                lock(batch).push((edit, sender));
                Joined::Follower(receiver)
            }
            None => {
                let batch = Arc::new(Mutex::new(vec![(edit, sender)]));
                open.insert(name.to_string(), batch.clone());
                Joined::Leader(batch, receiver)
            }
        }
    }

    /// Close the open batch of `name` (`batch`, opened by the caller): writers arriving from now
    /// on open the next one. Returns its edits.
    pub fn close(&self, name: &str, batch: &Arc<Mutex<Batch>>) -> Batch {
        let mut open = lock(&self.open);
        if open.get(name).is_some_and(|current| Arc::ptr_eq(current, batch)) {
            open.remove(name);
        }
        std::mem::take(&mut *lock(batch))
    }
}

/// Wait for the outcome of a joined batch (a runner that panicked counts as a failure).
pub fn outcome(receiver: &Receiver<Result<bool>>) -> Result<bool> {
    receiver.recv().unwrap_or_else(|_| Err(Error::Transient("the write batch was abandoned".into())))
}
