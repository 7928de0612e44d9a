//! secretfs: AWS Parameter Store parameters and Secrets Manager secrets as files, over FUSE.
//!
//! Layers, each depending only on those below it: `app` (composition root) → `fuse_adapter`
//! (the only code that touches fuser) → `fs` (FUSE-free core) → `inodes` / `namespace` (paths)
//! → `cache` → `provider` (Parameter Store, Secrets Manager, local store, in-memory).
//! `deadline` carries the current FUSE request's deadline down to the waits and AWS calls
//! made for it.

pub mod app;
pub mod cache;
pub mod deadline;
pub mod error;
pub mod fs;
pub mod fuse_adapter;
pub mod inodes;
pub mod logging;
pub mod namespace;
pub mod provider;
pub mod request_stats;
pub mod views;
pub mod warm_cache;
