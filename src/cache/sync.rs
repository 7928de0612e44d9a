//! The locks, condition variables and channels of the cache core: the standard library's, or,
//! in a build with the `shuttle` feature (the schedule-exploration test only), shuttle's, whose
//! every operation is a point where its scheduler may switch threads.

#[cfg(feature = "shuttle")]
pub use shuttle::sync::{mpsc, Condvar, Mutex, MutexGuard};
#[cfg(not(feature = "shuttle"))]
pub use std::sync::{mpsc, Condvar, Mutex, MutexGuard};
