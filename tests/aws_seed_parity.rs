//! The README's "Coming from s1crets, ssm-cache or aws-secretsmanager-caching" table, row by
//! row, as shell commands on a real mount against moto: what each library call returns, the
//! mount shows.

#[path = "common/moto.rs"]
mod moto;
#[path = "common/mount.rs"]
mod mount;

use aws_sdk_ssm::types::ParameterType;
use moto::{Aws, Moto};
use mount::{sh, Mounted};

fn shell(m: &Mounted, script: &str) -> String {
    let out = sh(&format!("cd {} && {script}", m.dir.display()));
    assert!(out.status.success(), "{script}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_row_of_the_seed_library_table_works_on_the_mount() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.put_parameter("/prod/db/root", "root-pw", ParameterType::SecureString);
    aws.put_parameter("/prod/db/host", "db.internal", ParameterType::String);
    aws.put_parameter("/prod/db/replica/host", "replica.internal", ParameterType::String);
    aws.put_parameter("/prod/hosts", "a,b", ParameterType::StringList);
    aws.put_parameter("/prod/db/root", "root-pw-2", ParameterType::SecureString);
    aws.create_secret("prod/db", r#"{"username":"admin","options":{"sslmode":"require"}}"#);
    aws.put_secret_value("prod/db", r#"{"username":"admin2","options":{"sslmode":"require"}}"#);
    aws.create_secret("app/token", "tok-1");
    let m = Mounted::start(&["--file-mode", "0600", "--dir-mode", "0700"], &moto.env());

    // get / SSMParameter.value
    assert_eq!(shell(&m, "cat ps/prod/db/root"), "root-pw-2");
    // sm.get (the JSON whole) and keypath
    assert_eq!(shell(&m, "cat sm/prod/db/.value"), r#"{"username":"admin2","options":{"sslmode":"require"}}"#);
    assert_eq!(shell(&m, "cat sm/prod/db/options/sslmode"), "require");
    // get_by_path / group.parameters: every name below a path with its value
    let by_path = shell(&m, "grep -r . ps/prod/db | sort");
    assert_eq!(
        by_path,
        "ps/prod/db/host:db.internal\nps/prod/db/replica/host:replica.internal\nps/prod/db/root:root-pw-2\n"
    );
    // recursive=False: the files of one level
    assert_eq!(shell(&m, "find ps/prod/db -maxdepth 1 -type f | sort"), "ps/prod/db/host\nps/prod/db/root\n");
    // path_exists
    assert_eq!(
        shell(&m, "test -e ps/prod/db && test -e ps/prod/db/root && ! test -e ps/prod/nope && echo yes"),
        "yes\n"
    );
    // versions and labels, stages
    assert_eq!(shell(&m, "cat ps/prod/db/root:1"), "root-pw");
    assert_eq!(shell(&m, "cat sm/prod/db:AWSPREVIOUS/username"), "admin");
    // StringList as a list
    assert_eq!(shell(&m, "cat ps/prod/hosts:items/1"), "b");
    // SecretsManagerParameter
    assert_eq!(shell(&m, "cat ps/aws/reference/secretsmanager/app/token"), "tok-1");
    // refresh / refresh_secret_now
    assert_eq!(shell(&m, "cat sm/app/token"), "tok-1");
    aws.put_secret_value("app/token", "tok-2");
    assert_eq!(shell(&m, "cat sm/app/token"), "tok-1");
    assert_eq!(shell(&m, "echo sm/app/token > .secretfs/refresh && cat sm/app/token"), "tok-2");
    // update (keeps the type)
    shell(&m, "printf new-root > ps/prod/db/root");
    assert_eq!(aws.parameter("/prod/db/root"), "new-root");
    let kind = aws
        .runtime
        .block_on(aws.ssm.get_parameter().name("/prod/db/root").send())
        .unwrap()
        .parameter()
        .and_then(|p| p.r#type().cloned());
    assert_eq!(kind, Some(ParameterType::SecureString));
}
