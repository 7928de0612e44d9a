//! The change stream: every change to a stored value (a write through the mount, a refresh that
//! finds a new version, a deletion, a name discovered) becomes one [`Change`], emitted by the
//! cache layer after its locks are released and delivered to every subscriber's channel.
//! Emitting never blocks and never runs a subscriber's code: consumers (the kernel notifier,
//! on-change commands) read their channel on their own threads.

use std::sync::mpsc::Sender;
use std::sync::Arc;

use super::sync::Mutex;

use crate::provider::Service;

/// What happened to a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Its value changed (or became unreadable: access to it was revoked).
    Updated,
    /// It no longer exists.
    Deleted,
    /// It exists and was not known before (created through the mount, or found by a listing
    /// refresh).
    Discovered,
    /// The first listing of its directory showed it, beside names known before (read by exact
    /// name): nothing changed in the service, but a listing of the directory shown from those
    /// names alone is stale. One per directory.
    Listed,
}

/// Who made the change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Found in the service (a refresh, a listing, a write's version check): made out of band.
    Service,
    /// A write through this mount.
    Mount,
}

/// One change to one stored name. Carries names only, never values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The service holding the name.
    pub service: Service,
    /// The full name in the service (`/prod/db/root`, `prod/db`).
    pub name: String,
    /// What happened.
    pub kind: ChangeKind,
    /// Who did it.
    pub origin: Origin,
}

type Subscriber = Box<dyn Fn(&Change) -> bool + Send>;

/// The stream every cache of a mount emits into. Cheap to clone; clones share subscribers.
#[derive(Clone, Default)]
pub struct ChangeStream {
    subscribers: Arc<Mutex<Vec<Subscriber>>>,
}

impl ChangeStream {
    /// Deliver every change from now on into `sender`, converted by `into` (so a consumer can
    /// merge the stream into its own queue). A subscriber whose receiver is gone is dropped.
    pub fn subscribe<T: Send + 'static>(&self, sender: Sender<T>, into: fn(Change) -> T) {
        let deliver: Subscriber = Box::new(move |change| sender.send(into(change.clone())).is_ok());
        super::lock(&self.subscribers).push(deliver);
    }

    /// Deliver `changes` to every subscriber, in order. Call with no cache lock held.
    pub(crate) fn emit(&self, changes: impl IntoIterator<Item = Change>) {
        let mut subscribers = super::lock(&self.subscribers);
        for change in changes {
            subscribers.retain(|deliver| deliver(&change));
        }
    }
}
