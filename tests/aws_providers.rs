//! The Parameter Store and Secrets Manager providers against moto's standalone server:
//! pagination, batching, call counts, binary, Unicode, size limits and missing names.

#[path = "common/core.rs"]
mod core;
#[path = "common/moto.rs"]
mod moto;

use std::sync::Arc;

use aws_sdk_ssm::types::ParameterType;
use core::{filesystem, filesystem_with_prefixes, names, read};
use moto::{Aws, Moto};
use secretfs::error::Error;
use secretfs::provider::{shown_version, Provider, ValueKind};

fn fetch_one(provider: &dyn Provider, name: &str) -> secretfs::error::Result<secretfs::provider::Fetched> {
    let mut results = provider.fetch(&[name.to_string()]).unwrap();
    assert_eq!(results.len(), 1);
    results.remove(0).1
}

#[test]
fn parameter_listing_pages_past_50_and_reads_batch_by_10() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    for i in 0..120 {
        aws.put_parameter(&format!("/page/p{i:03}"), &format!("value-{i}"), ParameterType::String);
    }
    aws.put_parameter("/other/x", "outside", ParameterType::String);
    let ps = aws.parameter_store();
    let listed = ps.list("/page/").unwrap();
    assert_eq!(listed.len(), 120);
    assert!(listed.iter().all(|l| l.last_modified.is_some()));
    // secretfs asks for 50 a page (the AWS maximum); moto answers 10 a page whatever is asked,
    // plus one empty page when the count is a multiple of 10.
    assert_eq!(ps.call_counts()["DescribeParameters"], 13, "120 names at moto's 10 a page");
    let all = ps.list("/").unwrap();
    assert_eq!(all.len(), 121);
    let names: Vec<String> = (0..10).map(|i| format!("/page/p{i:03}")).collect();
    let fetched = ps.fetch(&names).unwrap();
    assert_eq!(fetched.len(), 10);
    assert_eq!(ps.call_counts()["GetParameters"], 1);
}

#[test]
fn parameter_types_values_and_limits_are_exact() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.put_parameter("/t/secure", "S3cr3Tp4Ssw0Rd!^", ParameterType::SecureString);
    aws.put_parameter("/t/list", "a,b,c", ParameterType::StringList);
    aws.put_parameter("/t/unicode", "Grüße, 世界 ✓ 🦀", ParameterType::String);
    let four_kb = "x".repeat(4096);
    let eight_kb = "y".repeat(8192);
    aws.put_parameter("/t/4k", &four_kb, ParameterType::String);
    aws.put_parameter("/t/8k", &eight_kb, ParameterType::SecureString);
    let ps = aws.parameter_store();
    let secure = fetch_one(&ps, "/t/secure").unwrap();
    assert_eq!((secure.kind, secure.bytes.as_slice()), (ValueKind::SecureString, &b"S3cr3Tp4Ssw0Rd!^"[..]));
    assert_eq!(secure.version.as_deref().map(shown_version), Some("1"));
    assert_eq!(fetch_one(&ps, "/t/list").unwrap().kind, ValueKind::StringList);
    assert_eq!(fetch_one(&ps, "/t/unicode").unwrap().bytes.as_slice(), "Grüße, 世界 ✓ 🦀".as_bytes());
    assert_eq!(fetch_one(&ps, "/t/4k").unwrap().bytes.as_slice(), four_kb.as_bytes());
    assert_eq!(fetch_one(&ps, "/t/8k").unwrap().bytes.as_slice(), eight_kb.as_bytes());
    assert_eq!(fetch_one(&ps, "/t/missing").unwrap_err(), Error::NotFound);
}

#[test]
fn secret_listing_pages_past_100() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    for i in 0..105 {
        aws.create_secret(&format!("bulk/s{i:03}"), "v");
    }
    aws.create_secret("elsewhere/s", "v");
    let sm = aws.secrets_manager();
    assert_eq!(sm.list("bulk/").unwrap().len(), 105);
    assert_eq!(sm.call_counts()["ListSecrets"], 2, "105 names at 100 a page");
    assert_eq!(sm.list("").unwrap().len(), 106);
}

#[test]
fn secret_values_strings_binary_unicode_64k_and_missing() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    let big = "z".repeat(65_536);
    let binary: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    aws.create_secret("v/json", r#"{"username":"admin","password":"pw"}"#);
    aws.create_secret("v/unicode", "пароль-密码-🔑");
    aws.create_secret("v/big", &big);
    aws.create_binary_secret("v/bin", &binary);
    let sm = aws.secrets_manager();
    assert_eq!(fetch_one(&sm, "v/unicode").unwrap().bytes.as_slice(), "пароль-密码-🔑".as_bytes());
    assert_eq!(fetch_one(&sm, "v/big").unwrap().bytes.len(), 65_536);
    let bin = fetch_one(&sm, "v/bin").unwrap();
    assert_eq!((bin.kind, bin.bytes.as_slice()), (ValueKind::SecretBinary, binary.as_slice()));
    assert_eq!(fetch_one(&sm, "v/missing").unwrap_err(), Error::NotFound);
    let names: Vec<String> = ["v/json", "v/bin", "v/missing"].iter().map(|s| s.to_string()).collect();
    let batch = sm.fetch(&names).unwrap();
    assert_eq!(sm.call_counts()["BatchGetSecretValue"], 1);
    let find = |n: &str| batch.iter().find(|(name, _)| name == n).map(|(_, r)| r.clone());
    assert_eq!(find("v/json").unwrap().unwrap().bytes.as_slice(), br#"{"username":"admin","password":"pw"}"#);
    assert_eq!(find("v/bin").unwrap().unwrap().bytes.as_slice(), binary.as_slice());
    assert!(matches!(find("v/missing"), None | Some(Err(Error::NotFound))));
}

/// The figures of the closing note: reading 100 parameters of one directory and 40 secrets.
#[test]
fn reading_a_directory_costs_about_n_over_batch_calls() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    for i in 0..100 {
        aws.put_parameter(&format!("/app/p{i:03}"), &format!("param-{i}"), ParameterType::SecureString);
    }
    for i in 0..40 {
        aws.create_secret(&format!("app/s{i:02}"), &format!(r#"{{"user":"u{i}","password":"p{i}"}}"#));
    }
    let ps = Arc::new(aws.parameter_store());
    let sm = Arc::new(aws.secrets_manager());
    let fs = filesystem(ps.clone(), sm.clone(), true);
    assert_eq!(names(&fs, "ps/app").len(), 100);
    for i in 0..100 {
        assert_eq!(read(&fs, &format!("ps/app/p{i:03}")).unwrap(), format!("param-{i}").as_bytes());
    }
    for i in 0..40 {
        assert_eq!(read(&fs, &format!("sm/app/s{i:02}/password")).unwrap(), format!("p{i}").as_bytes());
    }
    let (ps_calls, sm_calls) = (ps.call_counts(), sm.call_counts());
    println!("100 parameters: {ps_calls:?}");
    println!("40 secrets: {sm_calls:?}");
    // The lookup of `app` asks for the first page of `/app` (a partial one tells it is a
    // directory), then `ls` lists it: 100 names at moto's 10 a page (AWS: 50).
    assert!(ps_calls["DescribeParameters"] <= 12, "{ps_calls:?}");
    assert_eq!(ps_calls["GetParameters"], 10, "100 values at 10 a call");
    assert_eq!(ps_calls.get("GetParametersByPath"), None);
    assert_eq!(sm_calls["ListSecrets"], 1);
    assert_eq!(sm_calls["BatchGetSecretValue"], 2, "40 values at 20 a call");
    assert_eq!(sm_calls.get("GetSecretValue"), None);
}

#[test]
fn prefixes_filter_on_the_server_side_too() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.put_parameter("/prod/db/root", "pw", ParameterType::SecureString);
    aws.put_parameter("/dev/db/root", "dev", ParameterType::SecureString);
    aws.create_secret("prod/api", "tok");
    aws.create_secret("dev/api", "devtok");
    let fs = filesystem_with_prefixes(
        Arc::new(aws.parameter_store()),
        "/prod/",
        Arc::new(aws.secrets_manager()),
        "prod/",
        true,
    );
    assert_eq!(names(&fs, "ps"), ["db"]);
    assert_eq!(read(&fs, "ps/db/root").unwrap(), b"pw");
    assert_eq!(names(&fs, "sm"), ["api"]);
}

#[test]
fn versions_are_asked_by_metadata_without_reading_values() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    for i in 0..60 {
        aws.put_parameter(&format!("/v/p{i:02}"), "one", ParameterType::SecureString);
    }
    aws.put_parameter("/v/p07", "two", ParameterType::SecureString);
    let ps = aws.parameter_store();
    let mut names: Vec<String> = (0..60).map(|i| format!("/v/p{i:02}")).collect();
    names.push("/v/missing".into());
    let versions = ps.versions(&names).unwrap();
    assert_eq!(versions.len(), 60, "every existing name, the missing one left out");
    assert_eq!(shown_version(&versions["/v/p07"]), "2");
    assert_eq!(shown_version(&versions["/v/p08"]), "1");
    let counts = ps.call_counts();
    assert!(!counts.contains_key("GetParameters"), "no value was read: {counts:?}");
    println!("versions of 61 parameters: {} DescribeParameters calls", counts["DescribeParameters"]);

    aws.create_secret("v/s1", "a");
    aws.create_secret("v/s2", "b");
    let sm = aws.secrets_manager();
    let fetched = sm.fetch(&["v/s1".to_string()]).unwrap().remove(0).1.unwrap();
    let versions = sm.versions(&["v/s1".into(), "v/s2".into(), "v/missing".into()]).unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(Some(&versions["v/s1"]), fetched.version.as_ref(), "the AWSCURRENT version id");
    assert_eq!(sm.call_counts()["DescribeSecret"], 3);
}

#[test]
fn listing_by_prefix_returns_the_name_itself_and_everything_below() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    for name in ["/prod", "/prod/db/root", "/production/x", "/other/y"] {
        aws.put_parameter(name, "v", ParameterType::String);
    }
    let mut listed: Vec<String> = aws.parameter_store().list("/prod").unwrap().into_iter().map(|l| l.name).collect();
    listed.sort();
    assert_eq!(listed, ["/prod", "/prod/db/root", "/production/x"]);
    for name in ["prod", "prod/db", "production", "other"] {
        aws.create_secret(name, "v");
    }
    let mut listed: Vec<String> = aws.secrets_manager().list("prod").unwrap().into_iter().map(|l| l.name).collect();
    listed.sort();
    assert_eq!(listed, ["prod", "prod/db", "production"]);
}
