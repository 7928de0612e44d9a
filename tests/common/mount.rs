//! A real kernel mount of the `secretfs` binary on a temp dir, unmounted when dropped.
#![allow(dead_code)] // Shared by several test binaries; each uses a part.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_secretfs");

pub fn example_store() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/secrets.json")
}

/// A private copy of the example store, for tests that write to it.
pub fn local_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    std::fs::copy(example_store(), &store).unwrap();
    (dir, store)
}

/// The builds a benchmark compares: the baseline (`SECRETFS_BASELINE`, if given), then this
/// tree's (`SECRETFS_BUILD`, its release binary, since the test itself may be a debug build;
/// else the binary this test was built with).
pub fn benchmark_builds() -> Vec<(&'static str, PathBuf)> {
    let mut builds = Vec::new();
    if let Some(baseline) = std::env::var_os("SECRETFS_BASELINE") {
        builds.push(("baseline", PathBuf::from(baseline)));
    }
    let this = std::env::var_os("SECRETFS_BUILD").map_or_else(|| PathBuf::from(BINARY), PathBuf::from);
    builds.push(("this build", this));
    builds
}

/// Run `script` with `sh -c`.
pub fn sh(script: &str) -> std::process::Output {
    Command::new("sh").arg("-c").arg(script).output().unwrap()
}

/// `getxattr` of `name` on `path` (`lgetxattr` unless `follow`): the attribute's size, or the
/// errno.
pub fn xattr_size(path: &Path, name: &str, follow: bool) -> Result<usize, i32> {
    let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    // SAFETY: both strings are NUL-terminated; a null buffer of size 0 asks for the size only.
    let size = unsafe {
        match follow {
            true => libc::getxattr(path.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0),
            false => libc::lgetxattr(path.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0),
        }
    };
    usize::try_from(size).map_err(|_| std::io::Error::last_os_error().raw_os_error().unwrap())
}

/// A field of /proc/PID/status in kB (`VmLck:`, `VmRSS:`).
pub fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

pub fn is_mounted(dir: &Path) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir = dir.to_string_lossy();
    mountinfo.lines().any(|line| line.split(' ').nth(4) == Some(dir.as_ref()))
}

/// The mount options column of mountinfo for `dir`.
pub fn mount_options(dir: &Path) -> String {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir = dir.to_string_lossy();
    mountinfo
        .lines()
        .find(|line| line.split(' ').nth(4) == Some(dir.as_ref()))
        .and_then(|line| line.split(' ').nth(5))
        .unwrap_or_default()
        .to_string()
}

/// `secretfs mount -f` running on a fresh temp dir; its stderr is collected as it comes (a
/// verbose daemon must never block on a full pipe).
pub struct Mounted {
    _parent: tempfile::TempDir,
    pub dir: PathBuf,
    child: Option<Child>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// How long a mount may take to appear (`MOUNT_DEADLINE_SECS`, default 60; benchmarks mount big
/// accounts with slow baselines).
fn mount_deadline() -> Duration {
    let secs = std::env::var("MOUNT_DEADLINE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    Duration::from_secs(secs)
}

impl Mounted {
    pub fn start(args: &[&str], env: &[(&str, String)]) -> Mounted {
        Mounted::start_binary(Path::new(BINARY), args, env)
    }

    /// Mount with another build of secretfs (a baseline in benchmarks).
    pub fn start_binary(binary: &Path, args: &[&str], env: &[(&str, String)]) -> Mounted {
        let mut mounted = Mounted::spawn(binary, args, env);
        mounted.wait_until_mounted(Duration::from_millis(20));
        mounted
    }

    /// Start the daemon without waiting for its mount.
    pub fn spawn(binary: &Path, args: &[&str], env: &[(&str, String)]) -> Mounted {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("mnt");
        std::fs::create_dir(&dir).unwrap();
        let mut child = Command::new(binary)
            .arg("mount")
            .arg("-f")
            .arg(&dir)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        });
        Mounted { _parent: parent, dir, child: Some(child), stderr: Some(stderr) }
    }

    /// Wait for the mount to appear, looking every `poll`; fails if the daemon exits first or
    /// the mount deadline passes.
    pub fn wait_until_mounted(&mut self, poll: Duration) {
        let deadline = Instant::now() + mount_deadline();
        while !is_mounted(&self.dir) {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("secretfs exited with {status} before mounting: {}", self.collected_stderr());
            }
            assert!(Instant::now() < deadline, "mount did not appear");
            std::thread::sleep(poll);
        }
    }

    /// Whether the daemon has exited.
    pub fn has_exited(&mut self) -> bool {
        self.child.as_mut().is_none_or(|child| child.try_wait().ok().flatten().is_some())
    }

    pub fn local(args: &[&str]) -> Mounted {
        let store = example_store();
        let mut all = vec!["--local", store.to_str().unwrap()];
        all.extend_from_slice(args);
        Mounted::start(&all, &[])
    }

    /// Send `signal` to the daemon and wait for it to exit; returns whether it exited with 0.
    pub fn signal_and_wait(&mut self, signal: i32) -> bool {
        self.signal(signal);
        let mut child = self.child.take().expect("daemon running");
        child.wait().unwrap().success()
    }

    /// Send `signal` to the daemon.
    pub fn signal(&self, signal: i32) {
        let child = self.child.as_ref().expect("daemon running");
        // SAFETY: signalling the daemon this harness started, by its PID.
        unsafe { libc::kill(child.id() as i32, signal) };
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// Wait for the daemon to exit after a signal; returns (exit code, stderr).
    pub fn wait_exit(&mut self) -> (Option<i32>, String) {
        let mut child = self.child.take().expect("daemon running");
        let status = child.wait().unwrap();
        (status.code(), self.collected_stderr())
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    /// The text of the file at `relative` in the mount.
    pub fn read(&self, relative: &str) -> std::io::Result<String> {
        std::fs::read_to_string(self.path(relative))
    }

    /// Unmount with `secretfs unmount` and wait for the daemon to exit; returns its stderr.
    pub fn stop(mut self) -> String {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> String {
        let Some(mut child) = self.child.take() else { return String::new() };
        let _ = Command::new(BINARY).arg("unmount").arg(&self.dir).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if child.try_wait().ok().flatten().is_none() {
            let _ = child.kill();
            let _ = child.wait();
            let path = std::ffi::CString::new(self.dir.to_string_lossy().as_bytes()).unwrap();
            // SAFETY: valid C string; a lazy unmount of our own temp mount.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
        self.collected_stderr()
    }

    /// Everything the daemon wrote to stderr (once it has exited).
    fn collected_stderr(&mut self) -> String {
        self.stderr.take().map(|reader| reader.join().unwrap_or_default()).unwrap_or_default()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Run a shell tool and return its stdout, asserting success.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}
