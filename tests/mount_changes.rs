//! Real-mount tests of name changes with shell tools, against the local store and moto:
//! `sed -i`, `cp` of a new secret, `mkdir`, `rm`, `mv`, refused names, and what close() reports
//! when AWS denies or throttles a write (through a fault-injecting proxy).

#[path = "common/fault_proxy.rs"]
mod fault_proxy;
#[path = "common/moto.rs"]
mod moto;
#[path = "common/mount.rs"]
mod mount;

use aws_sdk_ssm::types::ParameterType;
use std::process::Command;

use fault_proxy::{Fault, FaultProxy};
use moto::{Aws, Moto};
use mount::{local_copy, run, sh, Mounted};

fn ok(script: &str) {
    let out = sh(script);
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The stderr of a command that must fail.
fn fails(script: &str) -> String {
    let out = sh(script);
    assert!(!out.status.success(), "{script} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn saved(store: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(store).unwrap()).unwrap()
}

#[test]
fn sed_cp_mkdir_and_rm_work_on_the_local_store() {
    let (dir, store) = local_copy();
    let m = Mounted::start(&["--local", store.to_str().unwrap(), "--allow-delete"], &[]);
    let p = |rel: &str| m.path(rel).display().to_string();

    ok(&format!("sed -i 's/db.prod.internal/db2.prod.internal/' {}", p("sm/prod/db/.value")));
    assert_eq!(run("cat", &[&p("sm/prod/db/host")]), "db2.prod.internal");
    assert_eq!(saved(&store)["secrets"]["prod/db"]["string"].as_str().unwrap().matches("db2.prod").count(), 1);
    ok(&format!("sed -i 's/S3cr3T/N3w/' {}", p("ps/prod/db/root")));
    assert_eq!(run("cat", &[&p("ps/prod/db/root")]), "N3wp4Ssw0Rd!^");
    assert_eq!(saved(&store)["parameters"]["/prod/db/root"]["type"], "SecureString", "type kept");
    let listing = run("ls", &["-a", &p("sm/prod/db")]);
    assert!(!listing.contains("sed"), "no temp file left behind: {listing}");

    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").unwrap();
    ok(&format!("cp {} {}", cert.display(), p("sm/prod/tls-cert")));
    assert_eq!(std::fs::read(m.path("sm/prod/tls-cert")).unwrap(), std::fs::read(&cert).unwrap());
    assert!(saved(&store)["secrets"]["prod/tls-cert"]["string"].as_str().unwrap().starts_with("-----BEGIN"));

    ok(&format!("mkdir -p {} && printf s3cret > {}", p("ps/staging/db"), p("ps/staging/db/root")));
    assert_eq!(saved(&store)["parameters"]["/staging/db/root"]["type"], "SecureString");
    assert_eq!(run("ls", &[&p("ps/staging")]), "db\n");
    ok(&format!("printf 'ana' > {}", p("sm/prod/db/owner")));
    assert!(saved(&store)["secrets"]["prod/db"]["string"].as_str().unwrap().contains(r#""owner":"ana""#));

    // A value that becomes a JSON object becomes a directory at once, and back.
    ok(&format!("printf '{{\"a\":1}}' > {0} && ls {0} && cat {0}/a", p("sm/prod/j")));
    ok(&format!("printf plain > {0}/.value && cat {0}", p("sm/prod/j")));
    assert_eq!(run("cat", &[&p("sm/prod/j")]), "plain");

    ok(&format!("rm {} {}", p("sm/prod/db/owner"), p("ps/staging/db/root")));
    assert!(!saved(&store)["secrets"]["prod/db"]["string"].as_str().unwrap().contains("owner"));
    assert!(saved(&store)["parameters"].get("/staging/db/root").is_none());
    ok(&format!("rm -r {}", p("ps/staging")));
    assert!(!m.path("ps/staging").exists());
    // mv of a stored name copies and deletes (EXDEV, then the fallback).
    ok(&format!("mv {} {}", p("sm/dev/api-token"), p("sm/dev/token")));
    assert_eq!(saved(&store)["secrets"]["dev/token"]["string"], "tok_test_1234");
    assert!(saved(&store)["secrets"].get("dev/api-token").is_none());
}

#[test]
fn editors_and_in_place_tools_update_through_their_temp_files() {
    let (_dir, store) = local_copy();
    let m = Mounted::start(&["--local", store.to_str().unwrap(), "--file-mode", "0600", "--dir-mode", "0700"], &[]);
    let p = |rel: &str| m.path(rel).display().to_string();
    // perl -i names its temp file with 8 random characters: it is scratch because mkstemp
    // opened it read-write and exclusive.
    ok(&format!("perl -pi -e 's/dev-password/perl-pw/' {}", p("ps/dev/db/root")));
    assert_eq!(run("cat", &[&p("ps/dev/db/root")]), "perl-pw");
    // vim writes a swap file (larger than a parameter may be) and the file itself.
    ok(&format!("vim -u NONE -es -c '%s/db.prod.internal/vim-host/' -c 'wq' {}", p("ps/prod/db/host")));
    assert_eq!(run("cat", &[&p("ps/prod/db/host")]), "vim-host\n", "vim ends the file with a newline");
    ok(&format!("vim -u NONE -es -c '%s/admin/root/' -c 'wq' {}", p("sm/prod/db/.value")));
    assert_eq!(run("cat", &[&p("sm/prod/db/username")]), "root");
    // The atomic-write pattern of config tools: mkstemp in the directory, then os.replace.
    let script = "import os,tempfile,sys\nfd,t=tempfile.mkstemp(dir=sys.argv[1])\nos.write(fd,b'py-token')\nos.close(fd)\nos.replace(t,sys.argv[2])";
    let out = Command::new("python3").args(["-c", script, &p("sm/prod"), &p("sm/prod/api-token")]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(run("cat", &[&p("sm/prod/api-token")]), "py-token");
    let saved = saved(&store);
    assert_eq!(saved["parameters"]["/dev/db/root"]["value"], "perl-pw");
    assert_eq!(saved["secrets"]["prod/api-token"]["string"], "py-token");
    assert_eq!(saved["parameters"].as_object().unwrap().len(), 8, "no temp file became a parameter");
    assert_eq!(saved["secrets"].as_object().unwrap().len(), 5, "no temp file became a secret");
    for dir in ["ps/dev/db", "ps/prod/db", "sm/prod", "sm/prod/db"] {
        let listing = run("ls", &["-A", &p(dir)]);
        assert!(!listing.contains(".swp") && !listing.contains("tmp"), "{dir}: {listing}");
    }
    let stderr = m.stop();
    assert!(!stderr.contains("Not Implemented"), "xattr and ioctl probes are answered quietly: {stderr}");
}

#[test]
fn refusals_are_clear_and_store_nothing() {
    let (_dir, store) = local_copy();
    let before = std::fs::read_to_string(&store).unwrap();
    let m = Mounted::start(&["--local", store.to_str().unwrap()], &[]);
    let p = |rel: &str| m.path(rel).display().to_string();
    assert!(fails(&format!("rm {}", p("ps/prod/db/root"))).contains("Operation not permitted"));
    assert!(fails(&format!("rm {}", p("sm/prod/db/password"))).contains("Operation not permitted"));
    assert!(fails(&format!("printf x > '{}'", p("ps/prod/bad name"))).contains("Invalid argument"));
    assert!(fails(&format!("printf x > {}", p("ps/awsthing"))).contains("Invalid argument"));
    assert!(fails(&format!("printf x > '{}'", p("sm/prod/a#b"))).contains("Invalid argument"));
    assert!(fails(&format!("mkdir {}", p("sm/prod/db/nested"))).contains("Operation not permitted"));
    assert!(fails(&format!("rmdir {}", p("ps/prod"))).contains("not empty"));
    // A new file whose content is refused (larger than a parameter holds) is not created, and
    // leaves no empty file behind.
    let too_big = format!("head -c 9000 /dev/zero | tr '\\0' a | cat > {}", p("ps/prod/newbig"));
    assert!(fails(&too_big).contains("File too large"));
    assert!(!m.path("ps/prod/newbig").exists(), "no phantom file");
    assert!(!run("ls", &["-1", &p("ps/prod")]).lines().any(|name| name == "newbig"), "not listed either");
    assert_eq!(std::fs::read_to_string(&store).unwrap(), before, "nothing was saved");
    // A temp file is never saved, and disappears when removed.
    ok(&format!("printf draft > {} && rm {}", p("ps/prod/.draft.swp"), p("ps/prod/.draft.swp")));
    assert_eq!(std::fs::read_to_string(&store).unwrap(), before);
    drop(m);
    let m = Mounted::start(&["--local", store.to_str().unwrap(), "--read-only"], &[]);
    let p = |rel: &str| m.path(rel).display().to_string();
    assert!(fails(&format!("printf x > {}", p("ps/prod/new"))).contains("Read-only file system"));
    assert!(fails(&format!("mkdir {}", p("ps/new"))).contains("Read-only file system"));
}

#[test]
fn moto_creates_updates_through_sed_and_deletes() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.create_secret("prod/app", r#"{"host":"old-host","port":5432}"#);
    aws.put_parameter("/prod/db/root", "old", ParameterType::SecureString);
    let m = Mounted::start(&["--allow-delete"], &moto.env());
    let p = |rel: &str| m.path(rel).display().to_string();

    ok(&format!("sed -i 's/old-host/new-host/' {}", p("sm/prod/app/.value")));
    let secret = aws.runtime.block_on(aws.sm.get_secret_value().secret_id("prod/app").send()).unwrap();
    assert_eq!(secret.secret_string(), Some(r#"{"host":"new-host","port":5432}"#));
    assert_eq!(run("cat", &[&p("sm/prod/app/host")]), "new-host");

    let cert = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(cert.path(), "-----BEGIN CERTIFICATE-----\nMIIB\n").unwrap();
    ok(&format!("cp {} {}", cert.path().display(), p("sm/prod/tls-cert")));
    let secret = aws.runtime.block_on(aws.sm.get_secret_value().secret_id("prod/tls-cert").send()).unwrap();
    assert_eq!(secret.secret_string(), Some("-----BEGIN CERTIFICATE-----\nMIIB\n"));
    assert_eq!(run("cat", &[&p("sm/prod/tls-cert")]), "-----BEGIN CERTIFICATE-----\nMIIB\n");

    ok(&format!("printf 'r3pl' > {}", p("ps/prod/db/replica")));
    let stored =
        aws.runtime.block_on(aws.ssm.get_parameter().name("/prod/db/replica").with_decryption(true).send()).unwrap();
    assert_eq!(stored.parameter().unwrap().value(), Some("r3pl"));
    assert_eq!(stored.parameter().unwrap().r#type(), Some(&ParameterType::SecureString), "new parameters are secure");

    let count = || aws.runtime.block_on(aws.ssm.describe_parameters().send()).unwrap().parameters().len();
    assert!(fails(&format!("printf x > '{}'", p("ps/prod/db/bad name"))).contains("Invalid argument"));
    assert!(fails(&format!("printf x > {}", p("ps/ssm-thing"))).contains("Invalid argument"));
    assert_eq!(count(), 2, "a refused name makes no parameter");

    ok(&format!("rm {} {}", p("ps/prod/db/replica"), p("sm/prod/tls-cert")));
    let gone = aws.runtime.block_on(aws.ssm.get_parameter().name("/prod/db/replica").send());
    assert!(gone.is_err(), "the parameter is deleted");
    let described = aws.runtime.block_on(aws.sm.describe_secret().secret_id("prod/tls-cert").send()).unwrap();
    assert!(described.deleted_date().is_some(), "the secret is scheduled for deletion, not forced");
    assert!(!m.path("sm/prod/tls-cert").exists());
}

#[test]
fn denied_and_throttled_writes_fail_at_close_and_keep_the_old_value() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.create_secret("prod/app", r#"{"host":"h","password":"old"}"#);
    aws.put_parameter("/prod/db/root", "old", ParameterType::SecureString);
    let proxy = FaultProxy::start(moto.port);
    let mut env = moto.env();
    env.retain(|(k, _)| *k != "AWS_ENDPOINT_URL");
    env.push(("AWS_ENDPOINT_URL", proxy.endpoint()));
    let m = Mounted::start(&[], &env);
    let p = |rel: &str| m.path(rel).display().to_string();
    let remote_secret = || {
        let out = aws.runtime.block_on(aws.sm.get_secret_value().secret_id("prod/app").send()).unwrap();
        out.secret_string().unwrap().to_string()
    };

    // A shell builtin's `>` ignores close()'s result; `cat` (like cp, tee, dd) reports it.
    proxy.fail("PutSecretValue", Fault::AccessDenied);
    assert!(fails(&format!("printf new | cat > {}", p("sm/prod/app/password"))).contains("Permission denied"));
    assert_eq!(remote_secret(), r#"{"host":"h","password":"old"}"#);
    assert_eq!(run("cat", &[&p("sm/prod/app/password")]), "old");

    proxy.fail("PutSecretValue", Fault::Throttling);
    let refused = proxy.refused();
    assert!(fails(&format!("printf new | cat > {}", p("sm/prod/app/password"))).contains("Input/output error"));
    assert!(proxy.refused() - refused >= 2, "throttling is retried before giving up");
    assert_eq!(remote_secret(), r#"{"host":"h","password":"old"}"#);

    proxy.fail("PutSecretValue", Fault::LimitExceeded);
    assert!(fails(&format!("printf new | cat > {}", p("sm/prod/app/password"))).contains("Input/output error"));
    assert_eq!(remote_secret(), r#"{"host":"h","password":"old"}"#);

    proxy.fail("PutParameter", Fault::AccessDenied);
    assert!(fails(&format!("printf new | cat > {}", p("ps/prod/db/root"))).contains("Permission denied"));
    assert!(fails(&format!("printf new | cat > {}", p("ps/prod/db/new"))).contains("Permission denied"));
    assert!(!m.path("ps/prod/db/new").exists(), "a failed create leaves no file");
    proxy.fail("CreateSecret", Fault::Throttling);
    assert!(fails(&format!("printf new | cat > {}", p("sm/prod/new"))).contains("Input/output error"));

    proxy.heal();
    ok(&format!("printf new > {}", p("sm/prod/app/password")));
    assert_eq!(remote_secret(), r#"{"host":"h","password":"new"}"#);
    let stderr = m.stop();
    assert!(stderr.contains("AccessDeniedException") && stderr.contains("ThrottlingException"), "{stderr}");
    assert!(stderr.contains("refused a write because of a limit"), "the log names the limit: {stderr}");
}
