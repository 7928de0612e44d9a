//! Answering from memory only: a request tried first on a FUSE reading thread must never wait
//! on a provider. Where it would (a fetch or a listing to start or to wait for, a write), the
//! cache answers [`Error::WouldBlock`] instead, and the FUSE layer hands the request to the
//! pool, where it runs again and may wait.

use std::cell::Cell;

use crate::error::{Error, Result};

thread_local! {
    static MEMORY_ONLY: Cell<bool> = const { Cell::new(false) };
}

/// Run `attempt` with every provider wait on this thread refused with `WouldBlock`.
pub fn from_memory<T>(attempt: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            MEMORY_ONLY.set(false);
        }
    }
    MEMORY_ONLY.set(true);
    let _reset = Reset;
    attempt()
}

/// `Ok` where this thread may wait on a provider; `WouldBlock` inside [`from_memory`].
pub fn may_wait() -> Result<()> {
    match MEMORY_ONLY.get() {
        true => Err(Error::WouldBlock),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_inside_from_memory_is_waiting_refused() {
        assert_eq!(may_wait(), Ok(()));
        assert_eq!(from_memory(may_wait), Err(Error::WouldBlock));
        assert_eq!(may_wait(), Ok(()), "reset afterwards");
        let panicked = std::panic::catch_unwind(|| from_memory(|| panic!("boom")));
        assert!(panicked.is_err());
        assert_eq!(may_wait(), Ok(()), "reset after a panic too");
    }
}
