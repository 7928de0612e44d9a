//! Restarts and containers: `mount; unmount; mount` in a loop always leaves a live mount (a
//! daemon only unmounts its own mount, and `unmount` returns once the daemon has exited), and
//! the DaemonSet, sidecar and in-app recipes run as written in mount namespaces
//! (tests/recipes/daemonset.sh).

#[path = "common/mount.rs"]
mod mount;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mount::{is_mounted, local_copy, BINARY};

#[test]
#[allow(clippy::zombie_processes)] // a failed round panics; the test process then ends
fn mount_unmount_mount_a_hundred_times_leaves_a_live_mount_each_time() {
    let (_store_dir, store) = local_copy();
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    let started = Instant::now();
    for round in 0..100 {
        let mut daemon = Command::new(BINARY)
            .args(["mount", "-f", "--local", store.to_str().unwrap()])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !is_mounted(&dir) {
            assert!(Instant::now() < deadline, "round {round}: the mount never appeared");
            assert!(daemon.try_wait().unwrap().is_none(), "round {round}: the daemon exited before mounting");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(std::fs::read_to_string(dir.join("ps/prod/db/root")).unwrap(), "S3cr3Tp4Ssw0Rd!^", "round {round}");
        let unmount = Command::new(BINARY).arg("unmount").arg(&dir).output().unwrap();
        assert!(unmount.status.success(), "round {round}: {}", String::from_utf8_lossy(&unmount.stderr));
        // `unmount` returned: the daemon has let go of its connection (it can no longer touch
        // the next mount) and its process ends within moments.
        let exit_by = Instant::now() + Duration::from_secs(1);
        let mut status = None;
        while status.is_none() && Instant::now() < exit_by {
            status = daemon.try_wait().unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(status.is_some_and(|s| s.success()), "round {round}: the daemon outlived `unmount`: {status:?}");
        let mut stderr = String::new();
        daemon.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        assert!(!stderr.contains("WARN") && !stderr.contains("ERROR"), "round {round}: a clean stop warned: {stderr}");
        assert!(!is_mounted(&dir), "round {round}: still mounted after unmount");
    }
    eprintln!("100 rounds of mount, read, unmount in {:?}", started.elapsed());
}

#[test]
fn the_daemonset_and_sidecar_recipes_run_in_mount_namespaces() {
    if Command::new("unshare").arg("--version").output().is_err() {
        eprintln!("SKIPPED: unshare (util-linux) is missing");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/recipes/daemonset.sh");
    for recipe in ["daemonset", "sidecar"] {
        let (_store_dir, store) = local_copy();
        let work = work.path().join(recipe);
        let out = Command::new("timeout")
            .args(["120", "unshare", "--mount", "--propagation", "private", script, BINARY])
            .arg(&store)
            .arg(&work)
            .arg(recipe)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{recipe}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("consumer sees the mount come back after a restart"), "{recipe}: {stdout}");
    }
}

#[test]
fn the_in_app_container_recipe_mounts_in_its_own_namespace_only() {
    if Command::new("unshare").arg("--version").output().is_err() {
        eprintln!("SKIPPED: unshare (util-linux) is missing");
        return;
    }
    let (_store_dir, store) = local_copy();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("run/secrets");
    std::fs::create_dir_all(&dir).unwrap();
    // README: `secretfs mount /run/secrets && exec app ...` inside the container, here on a
    // 0777 tmpfs volume (an emptyDir with medium Memory): a mount root, accepted.
    // A rotation (a write through the mount) is read back, and a restart serves it again.
    let script = format!(
        "mount -t tmpfs -o mode=0777 emptydir {dir} && {bin} mount --local {store} {dir} --file-mode 0600 --dir-mode 0700 \
         && cat {dir}/ps/prod/db/root && printf rotated-1 | cat > {dir}/ps/prod/db/root && printf ' ' && cat {dir}/ps/prod/db/root \
         && {bin} unmount {dir} && {bin} mount --local {store} {dir} --read-only && printf ' ' && cat {dir}/ps/prod/db/root \
         && {bin} unmount {dir}",
        bin = BINARY,
        store = store.display(),
        dir = dir.display()
    );
    let out = Command::new("timeout")
        .args(["60", "unshare", "--mount", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "S3cr3Tp4Ssw0Rd!^ rotated-1 rotated-1");
    assert!(!is_mounted(&dir), "the container's mount leaked into the host's namespace");
}
