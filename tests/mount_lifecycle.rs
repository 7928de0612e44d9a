//! The daemon's process life through a real mount: clean stops with files open, signals that
//! must not kill it (even sent as the mount appears), mount points others could write to, no core dumps, and a background
//! daemon that holds nothing of whoever started it.

#[path = "common/mount.rs"]
mod mount;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use mount::{is_mounted, local_copy, Mounted, BINARY};

#[test]
fn a_stop_with_files_open_detaches_the_mount_names_unsaved_writes_and_exits_0() {
    let (_dir, store) = local_copy();
    let mut m = Mounted::start(&["--local", store.to_str().unwrap(), "--file-mode", "0600"], &[]);
    let reader = std::fs::File::open(m.path("ps/prod/db/root")).unwrap();
    let mut writer = std::fs::OpenOptions::new().write(true).open(m.path("ps/prod/db/host")).unwrap();
    writer.write_all(b"never-closed").unwrap();
    let before = std::fs::read(&store).unwrap();
    m.signal(libc::SIGTERM);
    let (code, stderr) = m.wait_exit();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!is_mounted(&m.dir), "the path is free at once");
    assert!(stderr.contains("ps/prod/db/host: written but never closed"), "{stderr}");
    assert!(!stderr.contains("never-closed"), "never a value: {stderr}");
    assert_eq!(std::fs::read(&store).unwrap(), before, "nothing half-written was stored");
    drop((reader, writer));
    let again = Mounted::start_binary(std::path::Path::new(BINARY), &["--local", store.to_str().unwrap()], &[]);
    assert!(again.path("ps/prod/db/root").exists(), "a new mount works right after");
}

#[test]
fn unmount_of_a_busy_mount_names_the_problem_and_lazy_detaches_it() {
    let m = Mounted::local(&[]);
    let held = std::fs::File::open(m.path("ps/prod/db/root")).unwrap();
    let out = Command::new(BINARY).arg("unmount").arg(&m.dir).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--lazy"), "{:?}", out);
    let out = Command::new(BINARY).args(["unmount", "--lazy"]).arg(&m.dir).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!is_mounted(&m.dir));
    drop(held);
}

#[test]
fn sighup_refreshes_and_usr1_usr2_do_not_kill() {
    let (_dir, store) = local_copy();
    let mut m = Mounted::start(&["--local", store.to_str().unwrap()], &[]);
    assert!(std::fs::read(m.path("ps/prod/db/root")).is_ok());
    for signal in [libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2, libc::SIGHUP] {
        m.signal(signal);
        std::thread::sleep(Duration::from_millis(200));
        assert!(is_mounted(&m.dir), "signal {signal} must not end the daemon");
        assert!(std::fs::read(m.path("ps/prod/db/root")).is_ok());
    }
    assert!(m.signal_and_wait(libc::SIGTERM));
}

#[test]
fn signals_sent_as_soon_as_the_mount_appears_do_not_kill_the_daemon() {
    // A `systemctl reload` or a status request right after start: the handlers are in place
    // before the mount is visible (a signal taking its default action ends the process and
    // leaves a dead mount).
    let (_dir, store) = local_copy();
    let mut m = Mounted::spawn(std::path::Path::new(BINARY), &["--local", store.to_str().unwrap()], &[]);
    m.wait_until_mounted(Duration::ZERO);
    let burst_ends = Instant::now() + Duration::from_millis(100);
    while Instant::now() < burst_ends {
        m.signal(libc::SIGUSR2);
        std::thread::sleep(Duration::from_micros(200));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(!m.has_exited(), "the daemon died of a signal sent as the mount appeared");
    let read = std::fs::read(m.path("ps/prod/db/root"));
    assert!(read.is_ok(), "{read:?}");
    assert!(m.signal_and_wait(libc::SIGTERM), "a clean stop after the burst");
}

#[test]
fn a_mount_point_others_can_write_to_is_refused() {
    let parent = tempfile::tempdir().unwrap();
    for mode in [0o777, 0o1777, 0o775] {
        let dir = parent.path().join(format!("m{mode:o}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        let out =
            Command::new(BINARY).arg("mount").arg(&dir).args(["--local", "examples/secrets.json"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("writable by others"), "{mode:o}: {stderr}");
        assert_eq!(stderr.lines().count(), 1);
    }
}

#[test]
fn locked_memory_is_what_the_daemon_uses_not_what_it_reserves() {
    let m = Mounted::local(&["--lock-memory"]);
    let out = mount::sh(&format!("cat {0}/ps/prod/db/root {0}/sm/prod/db/password", m.dir.display()));
    assert!(out.status.success());
    let (locked, resident) = (mount::status_kb(m.pid(), "VmLck:"), mount::status_kb(m.pid(), "VmRSS:"));
    println!("--lock-memory: {locked} kB locked, {resident} kB resident");
    assert!(locked > 0, "memory is locked");
    // Locked address space: the binary, fuser's request buffers (16 MiB per FUSE thread, mostly
    // never touched), thread stacks and one allocator arena; pages are locked as they are first
    // touched, so what is held in RAM is what is resident.
    assert!(locked < 256 * 1024, "{locked} kB of address space locked (README: at most 256 MiB)");
    assert!(resident < 64 * 1024, "{resident} kB resident");
    drop(m);
}

#[test]
fn the_daemon_cannot_dump_core() {
    let cwd = tempfile::tempdir().unwrap();
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    let store = mount::example_store();
    let mut command = Command::new(BINARY);
    command.arg("mount").arg("-f").arg(&dir).arg("--local").arg(&store).current_dir(cwd.path());
    // SAFETY: setrlimit in the child before exec: raise the core limit as a user would.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| {
            let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
            libc::setrlimit(libc::RLIMIT_CORE, &unlimited);
            Ok(())
        });
    }
    let mut child = command.stderr(std::process::Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !is_mounted(&dir) {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(std::fs::read(dir.join("ps/prod/db/root")).is_ok(), "a value is in memory");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let core = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap();
    assert!(core.split_whitespace().nth(4) == Some("0"), "{core}");
    // Rust's runtime handles the first SIGSEGV (stack-overflow detection) by restoring the
    // default action; a signal sent with kill(2) then needs a second one, as `kill -SEGV` would.
    let status = loop {
        // SAFETY: signalling the daemon this test started.
        unsafe { libc::kill(child.id() as i32, libc::SIGSEGV) };
        std::thread::sleep(Duration::from_millis(300));
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
    };
    assert!(!status.success());
    let path = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    // SAFETY: lazy unmount of this test's own dead mount.
    unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    if !pattern.starts_with('|') {
        let cores: Vec<_> = std::fs::read_dir(cwd.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(cores.is_empty(), "no core file: {cores:?}");
    }
}

#[test]
fn the_background_daemon_leaves_the_directory_terminal_and_descriptors_of_its_starter() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    let marker = parent.path().join("inherited-marker");
    let inherited = std::fs::File::create(&marker).unwrap();
    let mut command = Command::new(BINARY);
    command.arg("mount").arg(&dir).arg("--local").arg(mount::example_store()).current_dir(parent.path());
    // SAFETY: dup2 in the child before exec: an inherited descriptor 9 (no close-on-exec).
    unsafe {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let fd = inherited.as_raw_fd();
        command.pre_exec(move || {
            libc::dup2(fd, 9);
            Ok(())
        });
    }
    let out = command.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let pid = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains(dir.to_str().unwrap())
        })
        .expect("the daemon runs");
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    let fds: Vec<std::path::PathBuf> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .collect();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    let out = Command::new(BINARY).arg("unmount").arg(&dir).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(cwd, std::path::Path::new("/"), "chdir(\"/\")");
    assert!(!fds.contains(&marker), "inherited descriptors are closed: {fds:?}");
    assert_eq!(fields[3], pid.to_string(), "its own session (setsid), so no controlling terminal");
    assert_eq!(fields[4], "0", "no controlling terminal");
}

/// The fields of `/proc/PID/status` named `key`.
fn proc_status(pid: u32, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|line| line.strip_prefix(&format!("{key}:"))).unwrap_or_default().trim().to_string()
}

#[test]
fn a_root_daemon_keeps_only_the_capability_to_unmount_and_can_gain_none() {
    let (_dir, store) = mount::local_copy();
    let m = Mounted::start(&["--local", store.to_str().unwrap(), "--file-mode", "0600"], &[]);
    let pid = m.pid();
    // CAP_SYS_ADMIN (21) to unmount at exit, CAP_DAC_OVERRIDE (1) for a local store.
    let kept = (1u64 << 21) | (1u64 << 1);
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(u64::from_str_radix(&proc_status(pid, set), 16).unwrap(), kept, "{set}");
    }
    assert_eq!(proc_status(pid, "CapInh"), "0000000000000000");
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
    // The filter goes on just after the mount appears.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while proc_status(pid, "Seccomp") != "2" && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(proc_status(pid, "Seccomp"), "2", "the system-call filter is installed");
    // It still serves, writes, refreshes, reports, logs and stops cleanly.
    assert_eq!(m.read("ps/prod/db/host").unwrap(), "db.prod.internal");
    std::fs::write(m.path("ps/prod/db/port"), "6543").unwrap();
    assert!(std::fs::read_to_string(&store).unwrap().contains("6543"));
    m.signal(libc::SIGHUP);
    assert!(m.read(".secretfs/status").unwrap().contains("ps: reachable"));
    // SIGTERM: the daemon unmounts its own mount (the capability it kept) and exits 0.
    let mut m = m;
    m.signal(libc::SIGTERM);
    let (code, log) = m.wait_exit();
    assert_eq!(code, Some(0), "{log}");
    assert!(!is_mounted(&m.dir), "the daemon left its mount behind");
    assert!(log.contains("updated ps /prod/db/port"), "{log}");
}
