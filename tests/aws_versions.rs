//! Versions and stages as files, through a real mount against moto behind the counting proxy:
//! `ps/NAME:VERSION`, `ps/NAME:LABEL`, `sm/NAME:STAGE`, `sm/NAME:VERSIONID` and the JSON view
//! below them; looked up without any listing call, never listed, read-only.

#[path = "common/fault_proxy.rs"]
mod fault_proxy;
#[path = "common/moto.rs"]
mod moto;
#[path = "common/mount.rs"]
mod mount;

use aws_sdk_ssm::types::ParameterType;
use fault_proxy::FaultProxy;
use moto::{Aws, Moto};
use mount::{run, sh, Mounted};

#[test]
fn versions_labels_and_stages_are_files_that_cost_no_listing_and_refuse_writes() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    for value in ["pw-1", "pw-2", "pw-3"] {
        aws.put_parameter("/app/db/password", value, ParameterType::SecureString);
    }
    aws.runtime
        .block_on(
            aws.ssm.label_parameter_version().name("/app/db/password").parameter_version(2).labels("stable").send(),
        )
        .unwrap();
    aws.create_secret("app/db", r#"{"user":"admin","password":"old"}"#);
    aws.put_secret_value("app/db", r#"{"user":"admin","password":"new"}"#);
    let pending = aws
        .runtime
        .block_on(
            aws.sm
                .put_secret_value()
                .secret_id("app/db")
                .secret_string(r#"{"user":"admin","password":"next"}"#)
                .version_stages("AWSPENDING")
                .send(),
        )
        .unwrap();
    let pending_id = pending.version_id().unwrap().to_string();
    let proxy = FaultProxy::start(moto.port);
    let m = Mounted::start(&["--file-mode", "0600", "--dir-mode", "0700"], &moto.env_via(proxy.endpoint()));
    assert_eq!(m.read("ps/app/db/password").unwrap(), "pw-3");
    assert_eq!(m.read("sm/app/db/password").unwrap(), "new");
    let listings = || proxy.seen("DescribeParameters") + proxy.seen("ListSecrets");
    let before = listings();
    assert_eq!(m.read("ps/app/db/password:1").unwrap(), "pw-1");
    assert_eq!(m.read("ps/app/db/password:2").unwrap(), "pw-2");
    assert_eq!(m.read("ps/app/db/password:stable").unwrap(), "pw-2", "a label");
    assert_eq!(m.read("sm/app/db:AWSPREVIOUS/password").unwrap(), "old", "the JSON view of a stage");
    assert_eq!(m.read("sm/app/db:AWSCURRENT/password").unwrap(), "new");
    assert_eq!(m.read("sm/app/db:AWSPENDING/password").unwrap(), "next");
    assert_eq!(m.read(&format!("sm/app/db:{pending_id}/.value")).unwrap(), r#"{"user":"admin","password":"next"}"#);
    assert_eq!(m.read("ps/app/db/password:9").unwrap_err().raw_os_error(), Some(libc::ENOENT));
    assert_eq!(m.read("sm/app/db:NOSUCHSTAGE").unwrap_err().raw_os_error(), Some(libc::ENOENT));
    assert_eq!(listings(), before, "no listing call for a name with a selector");
    // Never listed.
    assert!(!run("ls", &["-1", m.path("ps/app/db").to_str().unwrap()]).contains(':'));
    assert!(!run("ls", &["-1", m.path("sm/app").to_str().unwrap()]).contains(':'));
    // Read-only, with a clear errno, and nothing stored.
    let refused = sh(&format!("printf x | cat > {}", m.path("ps/app/db/password:1").display()));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Read-only file system"), "{refused:?}");
    let refused = sh(&format!("printf x | cat > {}", m.path("sm/app/db:AWSPREVIOUS/password").display()));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Read-only file system"), "{refused:?}");
    assert_eq!(aws.parameter("/app/db/password"), "pw-3");
    assert_eq!(aws.secret("app/db"), r#"{"user":"admin","password":"new"}"#);
    drop(m);
}

#[test]
fn metadata_is_shown_as_extended_attributes_and_never_a_value() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.put_parameter("/app/db/password", "pw-1", ParameterType::SecureString);
    aws.put_parameter("/app/db/password", "pw-2", ParameterType::SecureString);
    aws.create_secret("app/db", r#"{"user":"admin","password":"s3cret"}"#);
    let m = Mounted::start(&[], &moto.env());
    let attributes = |path: &str| run("getfattr", &["-d", "--absolute-names", m.path(path).to_str().unwrap()]);
    let parameter = attributes("ps/app/db/password");
    assert!(parameter.contains(r#"user.secretfs.version="2""#), "{parameter}");
    assert!(parameter.contains(r#"user.secretfs.type="SecureString""#), "{parameter}");
    assert!(parameter.contains(r#"user.secretfs.arn="arn:aws:ssm:"#), "{parameter}");
    assert!(parameter.contains("user.secretfs.last_modified=\"20"), "{parameter}");
    let secret = attributes("sm/app/db");
    assert!(secret.contains(r#"user.secretfs.stages="AWSCURRENT""#), "{secret}");
    assert!(secret.contains(r#"user.secretfs.type="string""#), "{secret}");
    assert!(secret.contains(r#"user.secretfs.arn="arn:aws:secretsmanager:"#), "{secret}");
    let key = attributes("sm/app/db/password");
    assert!(key.contains("user.secretfs.version="), "a JSON key shows its secret's metadata: {key}");
    assert_eq!(attributes("ps/app"), "", "a plain directory has none");
    for shown in [&parameter, &secret, &key] {
        assert!(!shown.contains("pw-") && !shown.contains("s3cret") && !shown.contains("admin"), "{shown}");
    }
    let refused = sh(&format!("setfattr -n user.secretfs.version -v 9 {}", m.path("ps/app/db/password").display()));
    assert!(!refused.status.success(), "{refused:?}");
    let one = run(
        "getfattr",
        &["--only-values", "-n", "user.secretfs.version", m.path("ps/app/db/password").to_str().unwrap()],
    );
    assert_eq!(one, "2");
}

#[test]
fn ssm_cache_options_filters_no_decrypt_the_reference_bridge_and_string_list_items() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.put_parameter("/app/password", "pw", ParameterType::SecureString);
    aws.put_parameter("/app/host", "db.internal", ParameterType::String);
    aws.put_parameter("/app/hosts", "a.internal,b.internal,c.internal", ParameterType::StringList);
    aws.create_secret("app/token", "tok-1");
    aws.create_secret("app/db", r#"{"user":"admin","password":"s3cret"}"#);
    let proxy = FaultProxy::start(moto.port);
    let env = moto.env_via(proxy.endpoint());

    // Filters, as ssm-cache's: only SecureString parameters are shown, listed or read.
    let m = Mounted::start(&["--ps-filter", "Type=SecureString"], &env);
    assert_eq!(run("ls", &[m.path("ps/app").to_str().unwrap()]).split_whitespace().collect::<Vec<_>>(), ["password"]);
    assert_eq!(m.read("ps/app/password").unwrap(), "pw");
    assert_eq!(m.read("ps/app/host").unwrap_err().raw_os_error(), Some(libc::ENOENT));
    drop(m);
    aws.runtime
        .block_on(
            aws.ssm
                .put_parameter()
                .name("/app/own-key")
                .value("ok")
                .r#type(ParameterType::SecureString)
                .key_id("alias/app-key")
                .send(),
        )
        .unwrap();
    let m = Mounted::start(&["--ps-filter", "KeyId=alias/app-key", "--ps-filter", "Type=SecureString"], &env);
    assert_eq!(run("ls", &[m.path("ps/app").to_str().unwrap()]).split_whitespace().collect::<Vec<_>>(), ["own-key"]);
    assert_eq!(m.read("ps/app/own-key").unwrap(), "ok");
    drop(m);
    let bad = sh(&format!("{} mount /nonexistent --ps-filter Type=Secret", mount::BINARY));
    assert_eq!(bad.status.code(), Some(2), "a bad filter is refused before anything is sent");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("String, StringList or SecureString"), "{bad:?}");

    // No decryption: the SecureString as the service returns it without decrypting.
    let m = Mounted::start(&["--no-decrypt"], &env);
    assert_ne!(m.read("ps/app/password").unwrap(), "pw");
    assert_eq!(m.read("ps/app/host").unwrap(), "db.internal");
    drop(m);

    let m = Mounted::start(&[], &env);
    // The reference bridge: a secret through Parameter Store, and its JSON view; never listed.
    let listings = || proxy.seen("DescribeParameters");
    let before = listings();
    assert_eq!(m.read("ps/aws/reference/secretsmanager/app/token").unwrap(), "tok-1");
    assert_eq!(m.read("ps/aws/reference/secretsmanager/app/db/password").unwrap(), "s3cret");
    assert_eq!(m.read("ps/aws/reference/secretsmanager/app/nope").unwrap_err().raw_os_error(), Some(libc::ENOENT));
    assert_eq!(listings(), before, "a reference is read by its exact name");
    assert!(!run("ls", &[m.path("ps").to_str().unwrap()]).contains("aws"));
    // StringList items, one file each, read-only.
    assert_eq!(m.read("ps/app/hosts").unwrap(), "a.internal,b.internal,c.internal");
    assert_eq!(m.read("ps/app/hosts:items/1").unwrap(), "b.internal");
    let items = run("ls", &["-A", m.path("ps/app/hosts:items").to_str().unwrap()]);
    assert_eq!(items.split_whitespace().collect::<Vec<_>>(), [".value", "0", "1", "2"]);
    assert_eq!(m.read("ps/app/host:items").unwrap_err().raw_os_error(), Some(libc::ENOENT), "not a StringList");
    let refused = sh(&format!("printf x > {}", m.path("ps/app/hosts:items/0").display()));
    assert!(!refused.status.success());
    drop(m);
}

#[test]
fn a_version_stage_chooses_what_plain_secret_names_show_and_store() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.create_secret("app/db", r#"{"password":"current"}"#);
    aws.runtime
        .block_on(
            aws.sm
                .put_secret_value()
                .secret_id("app/db")
                .secret_string(r#"{"password":"pending"}"#)
                .version_stages("AWSPENDING")
                .send(),
        )
        .unwrap();
    let m = Mounted::start(&["--version-stage", "AWSPENDING", "--file-mode", "0600"], &moto.env());
    assert_eq!(m.read("sm/app/db/password").unwrap(), "pending");
    assert_eq!(m.read("sm/app/db:AWSCURRENT/password").unwrap(), "current");
    std::fs::write(m.path("sm/app/db/password"), "next").unwrap();
    assert_eq!(m.read("sm/app/db/password").unwrap(), "next");
    drop(m);
    assert_eq!(aws.secret("app/db"), r#"{"password":"current"}"#, "AWSCURRENT did not move");
    let pending =
        aws.runtime.block_on(aws.sm.get_secret_value().secret_id("app/db").version_stage("AWSPENDING").send()).unwrap();
    assert_eq!(pending.secret_string(), Some(r#"{"password":"next"}"#), "the write gave the new version AWSPENDING");
}

#[test]
fn a_config_rule_gives_a_path_its_own_ttl() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.put_parameter("/fast/key", "f-1", ParameterType::String);
    // Elsewhere: a secret, whose cache makes no call with the fast parameter's refreshes (a
    // parameter could ride along in them: a value due within 30 % of its TTL fills a
    // revalidation call that is made anyway, and a first refresh may be due early).
    aws.create_secret("slow/key", "s-1");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("secretfs.toml");
    std::fs::write(&config, "cache-ttl = 900\n[[rule]]\npath = \"ps/fast/**\"\nttl = 1\n").unwrap();
    let m = Mounted::start(&["--config", config.to_str().unwrap()], &moto.env());
    assert_eq!(m.read("ps/fast/key").unwrap(), "f-1");
    assert_eq!(m.read("sm/slow/key").unwrap(), "s-1");
    aws.put_parameter("/fast/key", "f-2", ParameterType::String);
    aws.put_secret_value("slow/key", "s-2");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while m.read("ps/fast/key").unwrap() != "f-2" {
        assert!(std::time::Instant::now() < deadline, "the 1-second rule was not applied");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(m.read("sm/slow/key").unwrap(), "s-1", "--cache-ttl 900 everywhere else");
}
