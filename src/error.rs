//! The one error type of secretfs and its single, exhaustive mapping to errno values.

use std::fmt;

/// Result alias used throughout the library.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong below the CLI. Messages never carry a secret value:
/// they hold names, AWS error codes and AWS error messages only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The name does not exist (in the service, the listing, or the JSON object).
    NotFound,
    /// The service refused access to this name (IAM, KMS, resource policy).
    AccessDenied(String),
    /// A failure that may pass: timeout, connection failure, 5xx, throttling.
    Transient(String),
    /// AWS refused the daemon's own credentials (expired, invalid, unknown, a signature out of
    /// date): the credential chain's problem, not a revocation of the value, so known values
    /// stay served as through any outage. Not retried at once (the same credentials would be
    /// refused again); the next attempt waits the name's backoff.
    Credentials(String),
    /// A service error that is neither of the above (bad request, unknown code).
    Service(String),
    /// The value is larger than the service allows.
    TooLarge,
    /// The mount (or this part of it) does not accept writes.
    ReadOnly,
    /// A name or value the service would reject.
    InvalidInput(String),
    /// A directory was expected.
    NotADirectory,
    /// A file was expected.
    IsADirectory,
    /// The operation is not permitted on this node (chmod, delete without --allow-delete).
    NotPermitted,
    /// A file handle the kernel gave us is unknown.
    BadHandle,
    /// The inode shows a fixed version of a value and cannot be written: the path has a new
    /// inode for writers, which the kernel looks up on ESTALE before it tries again.
    Replaced,
    /// The name already exists (exclusive create, or a secret scheduled for deletion).
    AlreadyExists,
    /// A directory that still has entries.
    NotEmpty,
    /// A rename this filesystem cannot do in place (a stored name, a directory); `mv` then
    /// copies and deletes instead.
    CrossDevice,
    /// A bad configuration (options, local store, region); one line, exit code 3.
    Config(String),
    /// AWS unreachable or refusing the credentials at mount; one line, exit code 4.
    AwsAccess(String),
    /// The mount itself failed (mount point, FUSE, unmount); one line, exit code 32.
    Mount(String),
    /// Answering would wait on a provider, on a thread that must not (see
    /// `cache::memory_only`); the request is retried where it may wait.
    WouldBlock,
    /// Some of several items failed, each already named on stderr (`secretfs refresh`).
    Partial(String),
    /// `secretfs exec` could not start its program (`missing`: there is no such program).
    CannotRun {
        /// The system's reason.
        reason: String,
        /// The program was not found (exit 127, as shells say it; otherwise 126).
        missing: bool,
    },
}

/// Exit code of a usage error (clap's, as mount(8)'s "incorrect invocation").
pub const EXIT_USAGE: i32 = 2;

impl Error {
    /// The errno the kernel should return for this error. A new variant must decide here.
    pub fn errno(&self) -> i32 {
        match self {
            Error::NotFound => libc::ENOENT,
            Error::AccessDenied(_) => libc::EACCES,
            Error::Transient(_) | Error::Service(_) | Error::Credentials(_) => libc::EIO,
            Error::TooLarge => libc::EFBIG,
            Error::ReadOnly => libc::EROFS,
            Error::InvalidInput(_) => libc::EINVAL,
            Error::NotADirectory => libc::ENOTDIR,
            Error::IsADirectory => libc::EISDIR,
            Error::NotPermitted => libc::EPERM,
            Error::BadHandle => libc::EBADF,
            Error::Replaced => libc::ESTALE,
            Error::AlreadyExists => libc::EEXIST,
            Error::NotEmpty => libc::ENOTEMPTY,
            Error::CrossDevice => libc::EXDEV,
            Error::Config(_) => libc::EINVAL,
            Error::AwsAccess(_) | Error::Mount(_) => libc::EIO,
            Error::WouldBlock => libc::EAGAIN,
            Error::Partial(_) => libc::EIO,
            Error::CannotRun { missing: true, .. } => libc::ENOENT,
            Error::CannotRun { missing: false, .. } => libc::ENOEXEC,
        }
    }

    /// The process exit code for this error, one table for every command (README "Exit
    /// codes"): 1 only for a name or key that does not exist (what `secretfs exists` answers)
    /// and for a command that names several failures; 2 is a usage error (clap's); 126 and 127
    /// as shells use them.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NotFound | Error::Partial(_) => 1,
            Error::Config(_)
            | Error::InvalidInput(_)
            | Error::TooLarge
            | Error::ReadOnly
            | Error::NotADirectory
            | Error::IsADirectory
            | Error::AlreadyExists
            | Error::NotEmpty
            | Error::CrossDevice
            | Error::NotPermitted => 3,
            Error::AwsAccess(_) | Error::Transient(_) | Error::Credentials(_) | Error::WouldBlock => 4,
            Error::AccessDenied(_) => 5,
            Error::Service(_) | Error::BadHandle | Error::Replaced => 6,
            Error::Mount(_) => 32,
            Error::CannotRun { missing: true, .. } => 127,
            Error::CannotRun { missing: false, .. } => 126,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound => write!(f, "not found"),
            Error::AccessDenied(m) => write!(f, "access denied: {m}"),
            Error::Transient(m) => write!(f, "temporary failure: {m}"),
            Error::Credentials(m) => write!(f, "AWS refused the daemon's credentials: {m}"),
            Error::Service(m) => write!(f, "service error: {m}"),
            Error::TooLarge => write!(f, "value too large for the service"),
            Error::ReadOnly => write!(f, "read-only"),
            Error::InvalidInput(m) => write!(f, "invalid input: {m}"),
            Error::NotADirectory => write!(f, "not a directory"),
            Error::IsADirectory => write!(f, "is a directory"),
            Error::NotPermitted => write!(f, "operation not permitted"),
            Error::BadHandle => write!(f, "unknown file handle"),
            Error::Replaced => write!(f, "a fixed version: look the path up again"),
            Error::AlreadyExists => write!(f, "already exists"),
            Error::NotEmpty => write!(f, "directory not empty"),
            Error::CrossDevice => write!(f, "cannot be renamed in place"),
            Error::Config(m) | Error::AwsAccess(m) | Error::Mount(m) => write!(f, "{m}"),
            Error::WouldBlock => write!(f, "would wait on the service"),
            Error::Partial(m) => write!(f, "{m}"),
            Error::CannotRun { reason, .. } => write!(f, "cannot run it: {reason}"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_are_never_enoent() {
        assert_eq!(Error::Transient("throttled".into()).errno(), libc::EIO);
        assert_eq!(Error::Service("bad".into()).errno(), libc::EIO);
        assert_eq!(Error::NotFound.errno(), libc::ENOENT);
        assert_eq!(Error::AccessDenied("x".into()).errno(), libc::EACCES);
        assert_eq!(Error::TooLarge.errno(), libc::EFBIG);
        assert_eq!(Error::ReadOnly.errno(), libc::EROFS);
    }
}
