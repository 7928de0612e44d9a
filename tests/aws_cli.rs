//! The commands that work without FUSE (`get`, `get-by-path`, `exists`, `update`, `exec`)
//! against moto: exact bytes out, key paths and selectors, the calls each makes, every exit
//! code (missing, denied, throttled, unreachable), and no value on any error line.

#[path = "common/fault_proxy.rs"]
mod fault_proxy;
#[path = "common/moto.rs"]
mod moto;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use aws_sdk_ssm::types::ParameterType;
use fault_proxy::{Fault, FaultProxy};
use moto::{Aws, Moto};

const BINARY: &str = env!("CARGO_BIN_EXE_secretfs");
/// Bytes that must never appear on stderr: they are in every value seeded below.
const CANARY: &str = "CANARY";

/// Run `secretfs ARGS` (killed after 30 s: `timeout` exits 124) with `env`, `stdin` as its input.
fn secretfs(env: &[(&str, String)], args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new("timeout")
        .arg("30")
        .arg(BINARY)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(124), "secretfs {args:?} hung");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(CANARY), "a value on stderr of {args:?}: {stderr}");
    out
}

/// (exit code, stdout, stderr) of `secretfs ARGS`.
fn run(env: &[(&str, String)], args: &[&str]) -> (i32, String, String) {
    let out = secretfs(env, args, b"");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

fn seed(aws: &Aws) {
    aws.put_parameter("/prod/db/root", "CANARY-r00t \"q\" ✓", ParameterType::SecureString);
    aws.put_parameter("/prod/db/host", "CANARY.db.internal", ParameterType::String);
    aws.put_parameter("/prod/db/replica/host", "CANARY.replica", ParameterType::String);
    aws.put_parameter("/prod/other", "CANARY-other", ParameterType::String);
    let json = r#"{"username":"CANARY-app","password":"CANARY-pw\"1","options":{"sslmode":"require","x.y":"dotted"},"port":5432}"#;
    aws.create_secret("prod/db", json);
    aws.create_secret("prod/api/token", "CANARY-token");
    aws.create_secret("staging/db", "CANARY-staging");
}

#[test]
fn get_prints_exact_bytes_follows_key_paths_and_selectors_in_one_call() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    seed(&aws);
    let proxy = FaultProxy::start(moto.port);
    let env = moto.env_via(proxy.endpoint());

    assert_eq!(run(&env, &["get", "ps", "/prod/db/root"]), (0, "CANARY-r00t \"q\" ✓".into(), String::new()));
    let calls: u64 = proxy.seen_all().values().sum();
    assert_eq!((proxy.seen("GetParameters"), calls), (1, 1), "one parameter costs one call: {:?}", proxy.seen_all());
    assert_eq!(run(&env, &["get", "ps", "/prod/db/root", "--newline"]).1, "CANARY-r00t \"q\" ✓\n");
    let (code, _, debug) = run(&env, &["get", "ps", "/prod/db/root", "--debug"]);
    assert!(code == 0 && debug.contains("GetParameters"), "--debug logs the calls (never the value): {debug}");
    let key = |key: &str| run(&env, &["get", "sm", "prod/db", "--key", key]);
    assert_eq!(key("password").1, "CANARY-pw\"1");
    assert_eq!(key("options.sslmode").1, "require");
    assert_eq!(key("options.x\\.y").1, "dotted");
    assert_eq!(key("port").1, "5432");
    assert_eq!(key("options").1, r#"{"sslmode":"require","x.y":"dotted"}"#);
    let (code, out, err) = key("nope");
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err.trim(), "secretfs: sm prod/db key nope: not found");

    aws.put_parameter("/prod/db/root", "CANARY-new", ParameterType::SecureString);
    aws.put_secret_value("prod/db", r#"{"password":"CANARY-rotated"}"#);
    assert_eq!(run(&env, &["get", "ps", "/prod/db/root:1"]).1, "CANARY-r00t \"q\" ✓");
    assert_eq!(run(&env, &["get", "ps", "/prod/db/root"]).1, "CANARY-new");
    assert_eq!(run(&env, &["get", "sm", "prod/db:AWSPREVIOUS", "--key", "password"]).1, "CANARY-pw\"1");
    assert_eq!(run(&env, &["get", "sm", "prod/db", "--key", "password"]).1, "CANARY-rotated");
}

#[test]
fn get_by_path_prints_full_names_recursive_or_not() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    seed(&aws);
    let env = moto.env();
    let object = |args: &[&str]| {
        let (code, out, err) = run(&env, args);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&out).unwrap()
    };
    let all = object(&["get-by-path", "ps", "/prod/db"]);
    let names: Vec<&str> = all.keys().map(String::as_str).collect();
    assert_eq!(names, ["/prod/db/host", "/prod/db/replica/host", "/prod/db/root"]);
    assert_eq!(all["/prod/db/root"], "CANARY-r00t \"q\" ✓");
    let direct = object(&["get-by-path", "ps", "/prod/db/", "--no-recursive"]);
    assert_eq!(direct.keys().collect::<Vec<_>>(), ["/prod/db/host", "/prod/db/root"]);
    let secrets = object(&["get-by-path", "sm", "prod/"]);
    assert_eq!(secrets.keys().collect::<Vec<_>>(), ["prod/api/token", "prod/db"]);
    assert_eq!(secrets["prod/api/token"], "CANARY-token");
    assert_eq!(object(&["get-by-path", "sm", "prod/", "--no-recursive"]).keys().collect::<Vec<_>>(), ["prod/db"]);
    assert!(object(&["get-by-path", "ps", "/nothing/here"]).is_empty());
}

#[test]
fn exists_answers_0_or_1_and_every_other_failure_its_own_code() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    seed(&aws);
    let proxy = FaultProxy::start(moto.port);
    let env = moto.env_via(proxy.endpoint());
    let quiet = |args: &[&str]| {
        let (code, out, err) = run(&env, args);
        assert_eq!((out.as_str(), err.as_str()), ("", ""), "exists prints nothing: {args:?}");
        code
    };
    assert_eq!(quiet(&["exists", "ps", "/prod/db/root"]), 0);
    assert_eq!(quiet(&["exists", "ps", "/prod/db"]), 0, "a path with values below it exists");
    assert_eq!(quiet(&["exists", "ps", "/prod/nope"]), 1);
    assert_eq!(quiet(&["exists", "sm", "prod/db", "--key", "options.sslmode"]), 0);
    assert_eq!(quiet(&["exists", "sm", "prod/db", "--key", "nope"]), 1);
    assert_eq!(quiet(&["exists", "sm", "prod/api/token", "--key", "x"]), 1, "a value that is not JSON has no keys");
    assert_eq!(quiet(&["exists", "sm", "nope"]), 1);

    let failing = |args: &[&str]| {
        let (code, out, err) = run(&env, args);
        assert_eq!((out.as_str(), err.lines().count()), ("", 1), "{args:?}: one line on stderr: {err}");
        (code, err)
    };
    let (code, err) = failing(&["get", "ps", "/prod/nope"]);
    assert_eq!((code, err.trim()), (1, "secretfs: ps /prod/nope: not found"));
    let (code, err) = failing(&["exists", "ps", "bad name"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("not a valid parameter name"), "{err}");
    let (code, err) = failing(&["update", "ps", "/prod/db/root:1", "x"]);
    assert_eq!(code, 3, "a selected version is read-only: {err}");

    proxy.fail("GetParameters", Fault::AccessDenied);
    let (code, err) = failing(&["exists", "ps", "/prod/db/root"]);
    assert_eq!(code, 5, "denied: {err}");
    assert!(err.contains("access denied"), "{err}");
    proxy.fail("GetParameters", Fault::Throttling);
    let (code, err) = failing(&["exists", "ps", "/prod/db/root", "--timeout", "1"]);
    assert_eq!(code, 4, "throttled past the timeout: {err}");
    proxy.heal();
    let unreachable = moto.env_via("http://127.0.0.1:9".into());
    let (code, _, err) = run(&unreachable, &["exists", "sm", "prod/db", "--timeout", "1"]);
    assert_eq!(code, 4, "unreachable: {err}");
    let no_credentials: Vec<(&str, String)> = vec![
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_CONFIG_FILE", "/nonexistent".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".into()),
    ];
    let (code, _, err) = run(&no_credentials, &["get", "ps", "/prod/db/root", "--timeout", "1"]);
    assert_eq!(code, 4, "no credentials: {err}");
}

#[test]
fn update_keeps_how_values_are_stored_and_edits_one_key() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    seed(&aws);
    aws.runtime
        .block_on(
            aws.ssm
                .put_parameter()
                .name("/app/described")
                .value("CANARY-v1")
                .r#type(ParameterType::SecureString)
                .description("the app's key")
                .send(),
        )
        .unwrap();
    let proxy = FaultProxy::start(moto.port);
    let env = moto.env_via(proxy.endpoint());
    assert_eq!(run(&env, &["update", "ps", "/app/described", "CANARY-v2"]).0, 0);
    let calls = ["GetParameters", "DescribeParameters", "PutParameter"].map(|action| proxy.seen(action));
    assert_eq!((calls, proxy.seen_all().values().sum::<u64>()), ([1, 1, 1], 3), "read, version check, update");
    assert_eq!(aws.parameter("/app/described"), "CANARY-v2");
    let described = aws.runtime.block_on(aws.ssm.describe_parameters().send()).unwrap();
    let parameter = described.parameters().iter().find(|p| p.name() == Some("/app/described")).unwrap();
    assert_eq!(parameter.r#type(), Some(&ParameterType::SecureString));
    assert_eq!(parameter.description(), Some("the app's key"));

    let from_stdin = secretfs(&env, &["update", "ps", "/prod/db/host", "-"], b"CANARY line 1\nline 2\n");
    assert!(from_stdin.status.success(), "{from_stdin:?}");
    assert_eq!(aws.parameter("/prod/db/host"), "CANARY line 1\nline 2\n");

    assert_eq!(run(&env, &["update", "sm", "prod/db", "--key", "password", "CANARY-set"]).0, 0);
    assert_eq!(run(&env, &["update", "sm", "prod/db", "--key", "options.added", "CANARY-added"]).0, 0);
    assert_eq!(run(&env, &["update", "sm", "prod/db", "--key", "port", "6543"]).0, 0);
    let stored: serde_json::Value = serde_json::from_str(&aws.secret("prod/db")).unwrap();
    assert_eq!(stored["password"], "CANARY-set");
    assert_eq!(stored["username"], "CANARY-app", "other members are kept");
    assert_eq!(stored["options"]["added"], "CANARY-added");
    assert_eq!(stored["port"], 5432 + 1111, "a number stays a number");
    assert_eq!(run(&env, &["update", "sm", "staging/db", "CANARY-whole"]).0, 0);
    assert_eq!(aws.secret("staging/db"), "CANARY-whole");

    let (code, _, err) = run(&env, &["update", "ps", "/app/never-created", "CANARY-x"]);
    assert_eq!(code, 1, "update never creates: {err}");
    assert_eq!(run(&env, &["exists", "ps", "/app/never-created"]).0, 1);
    let (code, _, err) = run(&env, &["update", "ps", "/prod/other", &"x".repeat(9000)]);
    assert_eq!(code, 3, "too large: {err}");
    assert_eq!(aws.parameter("/prod/other"), "CANARY-other", "a refused write keeps the old value");
}

#[test]
fn exec_runs_a_program_with_values_in_its_environment() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    seed(&aws);
    let proxy = FaultProxy::start(moto.port);
    let env = moto.env_via(proxy.endpoint());
    let (code, out, err) = run(
        &env,
        &[
            "exec",
            "--env",
            "ROOT=ps:/prod/db/root",
            "--env",
            "HOST=ps:/prod/db/host",
            "--env",
            "PASS=sm:prod/db#password",
            "--env",
            "MODE=sm:prod/db#options.sslmode",
            "--",
            "sh",
            "-c",
            r#"printf '%s|%s|%s|%s|%s' "$ROOT" "$HOST" "$PASS" "$MODE" "$1"; exit 7"#,
            "sh",
            "--not-an-option-of-secretfs",
        ],
    );
    assert_eq!(code, 7, "the program's own exit code: {err}");
    assert_eq!(out, "CANARY-r00t \"q\" ✓|CANARY.db.internal|CANARY-pw\"1|require|--not-an-option-of-secretfs");
    let seen = proxy.seen_all();
    let parameter_calls = seen.get("GetParameters").copied().unwrap_or(0);
    let secret_calls: u64 = ["GetSecretValue", "BatchGetSecretValue"].iter().filter_map(|a| seen.get(*a)).sum();
    assert_eq!((parameter_calls, secret_calls), (1, 1), "names of one service share a call: {seen:?}");

    let (code, _, err) = run(&env, &["exec", "--env", "X=sm:prod/nope", "--", "true"]);
    assert_eq!((code, err.trim()), (1, "secretfs: X (sm prod/nope): not found"));
    let (code, _, err) = run(&env, &["exec", "--env", "X=ps:/prod/other", "--", "/no/such/program"]);
    assert_eq!(code, 127, "{err}");
    assert_eq!(run(&env, &["exec", "--env", "1X=ps:/prod/other", "--", "true"]).0, 2, "usage");
}

#[test]
fn a_binary_value_reaches_a_terminal_only_when_asked() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.create_binary_secret("bin", b"\xffCANARY\x00\x01");
    let env = moto.env();
    let piped = secretfs(&env, &["get", "sm", "bin"], b"");
    assert_eq!(piped.stdout, b"\xffCANARY\x00\x01", "a pipe gets the exact bytes");
    let on_terminal = |extra: &str| {
        let command = format!("timeout 30 {BINARY} get sm bin {extra}; echo \" rc=$?\"");
        let out = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let refused = on_terminal("");
    assert!(refused.contains("pass --binary") && refused.contains("rc=3"), "{refused:?}");
    assert!(!refused.contains("CANARY"), "{refused:?}");
    let asked = on_terminal("--binary");
    assert!(asked.contains("CANARY") && asked.contains("rc=0"), "{asked:?}");
}
