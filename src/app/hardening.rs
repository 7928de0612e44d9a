//! Keeping secrets inside the process: no core dumps, no ptrace by other users' processes,
//! optionally no swap; and, for a root daemon, no privilege beyond what it needs.

use crate::error::{Error, Result};

/// Allocator arenas of the daemon: one (the heap), whatever the number of threads.
pub const ARENAS: libc::c_int = 1;

/// Give the process one allocator arena. With glibc's default (eight per core), memory freed on
/// one thread and allocated again on another spreads over arenas, and RSS crept up 7 % over
/// 300 rotations of a secret (0.7 % with one arena); each extra arena also reserves 64 MiB of
/// address space, which `--lock-memory` would lock. Call before any thread starts; per-thread
/// caches still serve most small allocations without taking the arena's lock.
pub fn one_allocator_arena() {
    // SAFETY: mallopt only changes allocator tuning; it is called before other threads exist.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENAS) };
}

/// Make the process non-dumpable (no core file, no ptrace attach or /proc/PID/mem read by
/// anyone but root) and set its core size limit to 0. With `lock_memory`, lock the pages the
/// daemon uses in RAM so values never reach swap: pages are locked as they are first touched
/// (MCL_ONFAULT), so what is locked is what is resident, not the address space reserved for
/// thread stacks and allocator arenas.
pub fn harden(lock_memory: bool) -> Result<()> {
    let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain system calls on this process with valid arguments.
    let (dumpable, core) =
        unsafe { (libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0), libc::setrlimit(libc::RLIMIT_CORE, &no_core)) };
    if dumpable != 0 || core != 0 {
        return Err(Error::Config(format!(
            "cannot disable core dumps of the daemon: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: mlockall has no memory-safety preconditions.
    if lock_memory && unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) } != 0 {
        return Err(Error::Config(format!(
            "--lock-memory: cannot lock the daemon's memory ({}); raise `ulimit -l` or LimitMEMLOCK=",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// Give up every capability but those the daemon needs from now on, and the ability to gain
/// any (no_new_privs), before any other thread starts (capabilities are per thread; threads
/// started later inherit these). Kept: `CAP_SYS_ADMIN` to mount, and to unmount its own mount
/// at exit; `CAP_IPC_LOCK` with `--lock-memory` (pages are locked as they are first touched);
/// `CAP_DAC_OVERRIDE` with a local store (its file may belong to another user). A daemon not run
/// as root has no capabilities, and is left as it is: its unmount goes through the setuid
/// `fusermount3`, which no_new_privs would stop.
pub fn drop_privileges(lock_memory: bool, local_store: bool) -> Result<()> {
    use caps::{CapSet, Capability, CapsHashSet};
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let mut keep = CapsHashSet::from([Capability::CAP_SYS_ADMIN]);
    if lock_memory {
        keep.insert(Capability::CAP_IPC_LOCK);
    }
    if local_store {
        keep.insert(Capability::CAP_DAC_OVERRIDE);
    }
    let failed = |what: &str, err: caps::errors::CapsError| {
        Error::Config(format!("cannot drop the daemon's privileges ({what}: {err})"))
    };
    let bounding = caps::read(None, CapSet::Bounding).map_err(|e| failed("reading the bounding set", e))?;
    for cap in bounding.difference(&keep) {
        caps::drop(None, CapSet::Bounding, *cap).map_err(|e| failed("bounding set", e))?;
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| failed("ambient set", e))?;
    caps::clear(None, CapSet::Inheritable).map_err(|e| failed("inheritable set", e))?;
    caps::set(None, CapSet::Effective, &keep).map_err(|e| failed("effective set", e))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(|e| failed("permitted set", e))?;
    // SAFETY: a plain prctl on this process.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(Error::Config(format!("cannot set no_new_privs: {}", std::io::Error::last_os_error())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hardened_process_is_not_dumpable() {
        // In a child process, so the test binary itself stays as it was.
        // SAFETY: the child only makes system calls and exits.
        match unsafe { libc::fork() } {
            0 => {
                let ok = harden(false).is_ok() && unsafe { libc::prctl(libc::PR_GET_DUMPABLE) } == 0;
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
            child => {
                let mut status = 0;
                // SAFETY: waiting for the child just forked.
                unsafe { libc::waitpid(child, &mut status, 0) };
                assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
            }
        }
    }
}
