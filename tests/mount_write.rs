//! Real-mount write tests against the local store and moto: shell writes become updates,
//! refusals keep the old value, concurrent writers lose nothing, and readers see whole values.

#[path = "common/moto.rs"]
mod moto;
#[path = "common/mount.rs"]
mod mount;

use std::io::Write;

use aws_sdk_ssm::types::ParameterType;
use moto::{Aws, Moto};
use mount::{local_copy, run, sh, Mounted};

#[test]
fn shell_writes_update_the_local_store_atomically() {
    let (_dir, store) = local_copy();
    let m = Mounted::start(&["--local", store.to_str().unwrap()], &[]);
    let root = m.path("ps/prod/db/root");
    assert!(sh(&format!("echo -n 'n3w-R00t!' > {}", root.display())).status.success());
    assert_eq!(run("cat", &[root.to_str().unwrap()]), "n3w-R00t!");
    assert!(sh(&format!("echo -n newpass > {}", m.path("sm/prod/db/password").display())).status.success());
    assert!(sh(&format!("printf 6543 > {}", m.path("sm/prod/db/port").display())).status.success());
    let raw: serde_json::Value = serde_json::from_slice(&std::fs::read(m.path("sm/prod/db/.value")).unwrap()).unwrap();
    assert_eq!(raw["password"], "newpass");
    assert_eq!(raw["port"], 6543, "a number stays a number");
    assert_eq!(raw["username"], "admin");
    assert_eq!(std::fs::metadata(m.path("sm/prod/db/password")).unwrap().len(), 7);
    let saved = std::fs::read_to_string(&store).unwrap();
    assert!(saved.contains("n3w-R00t!") && saved.contains("newpass"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&store).unwrap().permissions().mode() & 0o777, 0o600);
    // Appends act on the current value.
    assert!(sh(&format!("printf ',c.example.com' >> {}", m.path("ps/prod/app/allowed-hosts").display()))
        .status
        .success());
    assert_eq!(
        std::fs::read(m.path("ps/prod/app/allowed-hosts")).unwrap(),
        b"app1.example.com,app2.example.com,c.example.com"
    );
}

#[test]
fn refused_writes_fail_at_close_and_keep_the_old_value() {
    let (_dir, store) = local_copy();
    let m = Mounted::start(&["--local", store.to_str().unwrap()], &[]);
    let token = m.path("sm/prod/api-token");
    let big = vec![b'a'; 70_000];
    let err = std::fs::write(&token, &big).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EFBIG));
    assert_eq!(std::fs::read(&token).unwrap(), b"tok_live_8f14e45fceea167a5a36dedd4bea2543");
    let host = m.path("ps/prod/db/host");
    let mut file = std::fs::OpenOptions::new().write(true).truncate(true).open(&host).unwrap();
    file.write_all(&[0xff, 0xfe]).unwrap();
    let err = file.sync_all().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "fsync reports the failed commit");
    drop(file);
    assert_eq!(std::fs::read(&host).unwrap(), b"db.prod.internal");
    let out = sh(&format!("chmod 600 {}", host.display()));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"));
    assert!(!std::fs::read_to_string(&store).unwrap().contains("aaaaaaaaaa"));
}

#[test]
fn moto_updates_keep_type_and_json_and_readers_see_whole_values() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.runtime
        .block_on(
            aws.ssm
                .put_parameter()
                .name("/prod/db/root")
                .value("old")
                .r#type(ParameterType::SecureString)
                .description("db root password")
                .send(),
        )
        .unwrap();
    aws.create_secret("prod/db", r#"{"username":"admin","password":"old","port":5432}"#);
    aws.create_binary_secret("prod/bin", &[1, 2, 3]);
    let m = Mounted::start(&[], &moto.env());
    let root = m.path("ps/prod/db/root");
    let early_reader = std::fs::File::open(&root).unwrap();
    assert!(sh(&format!("echo -n 'S3cr3Tp4Ssw0Rd!^' > {}", root.display())).status.success());
    assert_eq!(std::fs::read(&root).unwrap(), b"S3cr3Tp4Ssw0Rd!^");
    let mut old = String::new();
    std::io::Read::read_to_string(&mut &early_reader, &mut old).unwrap();
    assert_eq!(old, "old", "a reader opened before the write sees the whole old value");
    drop(early_reader); // An open file keeps the mount busy and `secretfs unmount` would fail.
    let stored =
        aws.runtime.block_on(aws.ssm.get_parameter().name("/prod/db/root").with_decryption(true).send()).unwrap();
    let parameter = stored.parameter().unwrap();
    assert_eq!(parameter.value(), Some("S3cr3Tp4Ssw0Rd!^"));
    assert_eq!(parameter.r#type(), Some(&ParameterType::SecureString));
    let described = aws.runtime.block_on(aws.ssm.describe_parameters().send()).unwrap();
    assert_eq!(described.parameters()[0].description(), Some("db root password"));

    assert!(sh(&format!("echo -n newpass > {}", m.path("sm/prod/db/password").display())).status.success());
    let secret = aws.runtime.block_on(aws.sm.get_secret_value().secret_id("prod/db").send()).unwrap();
    assert_eq!(secret.secret_string(), Some(r#"{"username":"admin","password":"newpass","port":5432}"#));
    std::fs::write(m.path("sm/prod/bin"), [9u8, 0, 255]).unwrap();
    let secret = aws.runtime.block_on(aws.sm.get_secret_value().secret_id("prod/bin").send()).unwrap();
    assert_eq!(secret.secret_binary().map(|b| b.as_ref().to_vec()), Some(vec![9, 0, 255]));
    assert!(secret.secret_string().is_none(), "binary stays binary");
    // Too large for a secret: refused, remote value unchanged.
    let err = std::fs::write(m.path("sm/prod/db/password"), vec![b'x'; 70_000]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EFBIG));
    let secret = aws.runtime.block_on(aws.sm.get_secret_value().secret_id("prod/db").send()).unwrap();
    assert!(secret.secret_string().unwrap().contains("newpass"));
    let stderr = m.stop();
    assert!(!stderr.contains("S3cr3Tp4Ssw0Rd!^") && !stderr.contains("newpass"), "{stderr}");
}

/// Write `content` to `path` and fsync, so a failed commit is an error here (dropping a `File`
/// ignores close()'s result).
fn store(path: &std::path::Path, content: &[u8]) {
    let mut file = std::fs::OpenOptions::new().write(true).truncate(true).open(path).unwrap();
    file.write_all(content).unwrap();
    file.sync_all().unwrap_or_else(|e| panic!("commit of {} failed: {e}", path.display()));
}

#[test]
fn moto_concurrent_writers_lose_no_key_and_readers_see_whole_values() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.create_secret("prod/db", r#"{"username":"u0","password":"p0"}"#);
    aws.put_parameter("/prod/db/root", "start", ParameterType::SecureString);
    let m = std::sync::Arc::new(Mounted::start(&[], &moto.env()));
    let rounds = 8;
    let mut writers = Vec::new();
    for (file, letter) in [("sm/prod/db/username", 'u'), ("sm/prod/db/password", 'p')] {
        let m = m.clone();
        writers.push(std::thread::spawn(move || {
            for i in 1..=rounds {
                store(&m.path(file), format!("{letter}{i}").as_bytes());
            }
        }));
    }
    // Two writers of one file, with values of different lengths, and a reader checking that
    // every read is one whole value.
    let value = |writer: usize, i: usize| format!("writer{writer}-round{i}-{}", "x".repeat(writer * 7 + i));
    for writer in 1..=2 {
        let m = m.clone();
        writers.push(std::thread::spawn(move || {
            for i in 1..=rounds {
                store(&m.path("ps/prod/db/root"), value(writer, i).as_bytes());
            }
        }));
    }
    let reader = {
        let m = m.clone();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..40 {
                seen.push(String::from_utf8(std::fs::read(m.path("ps/prod/db/root")).unwrap()).unwrap());
            }
            seen
        })
    };
    for writer in writers {
        writer.join().unwrap();
    }
    let whole: Vec<String> = std::iter::once("start".to_string())
        .chain((1..=2).flat_map(|w| (1..=rounds).map(move |i| value(w, i))))
        .collect();
    for read in reader.join().unwrap() {
        assert!(whole.contains(&read), "a read saw a mix: {read:?}");
    }
    let secret = aws.runtime.block_on(aws.sm.get_secret_value().secret_id("prod/db").send()).unwrap();
    assert_eq!(secret.secret_string(), Some(r#"{"username":"u8","password":"p8"}"#), "no lost key");
    let root = aws.runtime.block_on(aws.ssm.get_parameter().name("/prod/db/root").with_decryption(true).send());
    let root = root.unwrap().parameter().unwrap().value().unwrap().to_string();
    assert!(root == value(1, rounds) || root == value(2, rounds), "the last close wins: {root}");
    assert_eq!(std::fs::read_to_string(m.path("ps/prod/db/root")).unwrap(), root);
}

/// Edit the local store file as an outside tool would: rewrite it whole.
fn edit_store(path: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut store: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut store);
    let temp = path.with_extension("edit");
    std::fs::write(&temp, serde_json::to_string_pretty(&store).unwrap()).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

#[test]
fn the_local_store_follows_outside_edits_and_writes_never_erase_them() {
    let (_dir, store) = mount::local_copy();
    let m =
        mount::Mounted::start(&["--local", store.to_str().unwrap(), "--cache-ttl", "2", "--file-mode", "0600"], &[]);
    assert_eq!(m.read("ps/prod/db/host").unwrap(), "db.prod.internal");
    edit_store(&store, |s| {
        s["parameters"]["/prod/db/host"] = "db2.prod.internal".into();
        s["parameters"]["/prod/db/added"] = "by hand".into();
    });
    // SIGHUP (or the TTL) reads the file again.
    m.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while m.read("ps/prod/db/host").unwrap() != "db2.prod.internal" {
        assert!(std::time::Instant::now() < deadline, "the outside edit was never seen");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(m.read("ps/prod/db/added").unwrap(), "by hand");
    // A write through the mount after another outside edit keeps that edit.
    edit_store(&store, |s| s["secrets"]["dev/api-token"] = "tok_test_edited".into());
    std::fs::write(m.path("ps/prod/db/port"), "6432").unwrap();
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&store).unwrap()).unwrap();
    assert_eq!(saved["parameters"]["/prod/db/port"]["value"], "6432");
    assert_eq!(saved["parameters"]["/prod/db/host"]["value"], "db2.prod.internal");
    assert_eq!(saved["secrets"]["dev/api-token"]["string"], "tok_test_edited", "the outside edit survived the write");
    // A malformed edit: the last good content is served, one error names the line.
    std::fs::write(&store, "{\n  \"parameters\": {\n    \"/prod/db/host\": \"x\",,\n").unwrap();
    m.signal(libc::SIGHUP);
    std::thread::sleep(std::time::Duration::from_millis(500));
    m.signal(libc::SIGHUP);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(m.read("ps/prod/db/host").unwrap(), "db2.prod.internal");
    let log = m.stop();
    let errors: Vec<&str> = log.lines().filter(|line| line.contains("serving its last good content")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(errors[0].contains("line 3"), "{}", errors[0]);
}
