//! `secretfs update`: store a new value (or one JSON member) through the cache's write
//! protocol, as a write through the mount does.

use std::io::Read;

use super::{Failure, Session, Target};
use crate::error::{Error, Result};
use crate::fs::resolve::Part;
use crate::fs::write::new_value;
use crate::provider::SecretBytes;

/// Where the new value comes from.
#[derive(Debug)]
pub enum NewValue {
    /// The command line's argument (visible to other users in /proc/PID/cmdline while it runs).
    Argument(String),
    /// Standard input, to its end (`-`).
    Stdin,
}

impl NewValue {
    /// The bytes; standard input is read whole.
    fn bytes(self) -> Result<SecretBytes> {
        match self {
            NewValue::Argument(text) => Ok(SecretBytes::new(text.into_bytes())),
            NewValue::Stdin => {
                let mut bytes = Vec::new();
                let read = std::io::stdin().lock().read_to_end(&mut bytes);
                let bytes = SecretBytes::new(bytes);
                read.map_err(|e| Error::Config(format!("cannot read the value from stdin: {e}")))?;
                Ok(bytes)
            }
        }
    }
}

/// Replace the value `target` names with `new`: the whole value keeps how it is stored (type,
/// KMS key, description, tier, pattern; string or binary secret); a key path replaces that
/// member (keeping its JSON type when the text parses as it) or adds it as a string. The value
/// stored now is what is edited, never a stale copy. Never creates a name. Returns whether
/// anything changed (an equal value makes no update call).
pub fn update(session: &Session, target: &Target, new: NewValue) -> std::result::Result<bool, Failure> {
    let bytes = new.bytes().map_err(Failure::whole)?;
    let keys = target.keys.clone();
    let edit = Box::new(move |current: &crate::provider::Fetched| {
        if keys.is_empty() {
            return Ok(bytes.as_slice().to_vec());
        }
        let current = current.bytes.as_slice();
        match new_value(current, &Part::Member(keys.clone()), bytes.as_slice()) {
            Err(Error::NotFound) => new_value(current, &Part::NewMember(keys), bytes.as_slice()),
            replaced => replaced,
        }
    });
    session.cache(target.service).edit(&target.name, edit).map_err(|err| target.failure(err))
}
