//! Rendered views through a real mount against moto: a JSON secret as `.env`, dotenv,
//! `.properties`, JSON and YAML files read back byte for byte by real parsers (bash `.`,
//! python-dotenv, jproperties, PyYAML) with hostile values; a connection-string template; a
//! rotation re-rendering both; errors that make a view unreadable (EIO, one log line naming
//! it, no value logged); owner rules; and views refused at mount when misconfigured.

#[path = "common/moto.rs"]
mod moto;
#[path = "common/mount.rs"]
mod mount;

use std::process::Command;

use aws_sdk_ssm::types::ParameterType;
use moto::{venv_python, Aws, Moto};
use mount::{Mounted, BINARY};

/// Values a quoting mistake would change; every one carries the canary, which no log may show.
fn hostile() -> serde_json::Value {
    serde_json::json!({
        "newline": "CANARY first\nsecond\n",
        "single": "CANARY it's",
        "double": "CANARY say \"hi\"",
        "dollar": "CANARY $HOME `id` ${X} $(id)",
        "punct": "CANARY a=b#c !x:y; & | < >",
        "unicode": "CANARY ünï©ødé ✓ 😀",
        "backslash": "CANARY back\\slash \\n \\",
        "leading": " CANARY leading and trailing ",
        "both": "CANARY it's $HOME",
        "port": 5432,
        "nested": {"sslmode": "require"}
    })
}

/// The text each member reads back as in env-like formats (non-strings as compact JSON).
fn expected_text() -> serde_json::Map<String, serde_json::Value> {
    hostile()
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), serde_json::Value::String(text))
        })
        .collect()
}

fn python(script: &str, file: &std::path::Path) -> serde_json::Map<String, serde_json::Value> {
    let out = Command::new(venv_python()).arg("-c").arg(script).arg(file).output().unwrap();
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

const CONFIG: &str = r#"
[[view]]
path = "views/app.env"
from = "sm/app/db"
format = "env"

[[view]]
path = "views/app.dotenv"
from = "sm/app/db"
format = "dotenv"

[[view]]
path = "views/app.properties"
from = "sm/app/db"
format = "properties"

[[view]]
path = "views/app.json"
from = "sm/app/db"
format = "json"

[[view]]
path = "views/app.yaml"
from = "sm/app/db"
format = "yaml"

[[view]]
path = "views/db.url"
template = "postgres://{{ sm('conn').username }}:{{ sm('conn').password | urlencode }}@{{ ps('/conn/host') }}:{{ sm('conn').port }}/app\n"

[[view]]
path = "views/previous"
template = "{{ sm('conn:AWSPREVIOUS').password }}"

[[view]]
path = "views/broken/missing"
template = "{{ sm('no/such/secret') }}"

[[view]]
path = "views/broken/filter"
template = "{{ sm('conn').password | int }}{{ sm('conn').password.x }}"

[[view]]
path = "views/broken/not-json"
from = "ps/conn/host"
format = "env"

[[rule]]
path = "views/db.url"
mode = "0440"
gid = 4242

[[on-change]]
path = "views/db.url"
command = ["sh", "-c", "printf '%s\\n' \"$SECRETFS_CHANGED_PATHS\" >> @RAN@"]
debounce-ms = 100
"#;

#[test]
fn views_render_values_that_real_parsers_read_back_exactly_and_follow_rotations() {
    let moto = Moto::start();
    let aws = Aws::new(&moto);
    aws.create_secret("app/db", &hostile().to_string());
    aws.create_secret("conn", r#"{"username":"app","password":"CANARY p@ss/w:rd?#","port":5432}"#);
    aws.put_parameter("/conn/host", "db.internal", ParameterType::String);
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("secretfs.toml");
    let ran = work.path().join("on-change.log");
    std::fs::write(&config, CONFIG.replace("@RAN@", ran.to_str().unwrap())).unwrap();
    let m = Mounted::start(&["--config", config.to_str().unwrap(), "--timeout", "1"], &moto.env());
    let expected = expected_text();

    // bash reads every value of the env format exactly.
    let env = m.path("views/app.env");
    let keys: Vec<&String> = expected.keys().collect();
    let script = format!(
        "set -a; . '{}'; for k in {}; do eval \"printf '%s\\0' \\\"\\$$k\\\"\"; done",
        env.display(),
        keys.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(" ")
    );
    let out = Command::new("bash").arg("-c").arg(&script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let read: Vec<String> = String::from_utf8(out.stdout).unwrap().split('\0').map(str::to_string).collect();
    for (key, value) in keys.iter().zip(&read) {
        assert_eq!(expected[key.as_str()], value.as_str(), "bash read {key} differently");
    }

    // python-dotenv reads the dotenv format exactly, and the env format too except a value with
    // both a quote or backslash and a `$` (README: use `dotenv` for python-dotenv). With its
    // default interpolation it expands `${NAME}` in any value (it has no escape for it).
    let without = |keys: &[&str]| {
        let mut map = expected.clone();
        keys.iter().for_each(|k| drop(map.remove(*k)));
        map
    };
    let literal = "import json, sys, dotenv; print(json.dumps(dotenv.dotenv_values(sys.argv[1], interpolate=False)))";
    let interpolated = "import json, sys, dotenv; print(json.dumps(dotenv.dotenv_values(sys.argv[1])))";
    assert_eq!(python(literal, &m.path("views/app.dotenv")), expected);
    let mut read = python(interpolated, &m.path("views/app.dotenv"));
    assert_eq!(read.remove("dollar").unwrap(), "CANARY $HOME `id`  $(id)", "python-dotenv expands ${{X}}");
    assert_eq!(read, without(&["dollar"]));
    let mut read = python(literal, &env);
    assert_ne!(read.remove("both"), expected.get("both").cloned());
    assert_eq!(read, without(&["both"]));

    // Java's format, as jproperties reads it.
    let properties = "import json, sys, jproperties; p = jproperties.Properties(); p.load(open(sys.argv[1], 'rb'), 'iso-8859-1'); print(json.dumps({k: v.data for k, v in p.items()}))";
    assert_eq!(python(properties, &m.path("views/app.properties")), expected);

    // JSON and YAML keep each member's type.
    let original = hostile();
    let json: serde_json::Value = serde_json::from_str(&m.read("views/app.json").unwrap()).unwrap();
    assert_eq!(json, original);
    let yaml = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))";
    assert_eq!(serde_json::Value::Object(python(yaml, &m.path("views/app.yaml"))), original);

    // The template, its owner rule, and a rotation re-rendering it at the next open.
    assert_eq!(m.read("views/db.url").unwrap(), "postgres://app:CANARY%20p%40ss%2Fw%3Ard%3F%23@db.internal:5432/app\n");
    let meta = std::fs::metadata(m.path("views/db.url")).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!((meta.permissions().mode() & 0o7777, meta.gid()), (0o440, 4242));
    aws.put_secret_value("conn", r#"{"username":"app","password":"CANARY-rotated","port":6543}"#);
    aws.put_secret_value("app/db", r#"{"only":"CANARY-new"}"#);
    let refreshed = Command::new(BINARY).args(["refresh"]).arg(&m.dir).args(["sm/conn", "sm/app/db"]).output().unwrap();
    assert!(refreshed.status.success(), "{refreshed:?}");
    assert_eq!(m.read("views/db.url").unwrap(), "postgres://app:CANARY-rotated@db.internal:6543/app\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string(&ran).is_ok_and(|text| text.contains("views/db.url")) {
        assert!(std::time::Instant::now() < deadline, "an on-change rule on a view runs when its source rotates");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(m.read("views/app.env").unwrap(), "only='CANARY-new'\n");
    assert_eq!(m.read("views/previous").unwrap(), "CANARY p@ss/w:rd?#", "selectors work in templates");

    // Views are read-only; broken ones are unreadable (EIO) and listed.
    let written = std::fs::write(m.path("views/app.env"), "x");
    assert!(written.is_err());
    let removed = std::fs::remove_file(m.path("views/app.env")).unwrap_err();
    assert_eq!(removed.raw_os_error(), Some(libc::EPERM), "a view is there, and cannot be removed");
    assert_eq!(std::fs::metadata(m.path("nothing-here")).unwrap_err().raw_os_error(), Some(libc::ENOENT));
    let mut listed: Vec<String> = std::fs::read_dir(m.path("views/broken"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    listed.sort();
    assert_eq!(listed, ["filter", "missing", "not-json"]);
    for broken in ["missing", "filter", "not-json"] {
        let err = std::fs::read(m.path(&format!("views/broken/{broken}"))).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{broken}");
    }
    assert!(std::fs::read(m.path("views/nope")).is_err());
    let log = m.stop();
    assert!(log.contains("view views/broken/missing: ") && log.contains("sm('no/such/secret'): not found"), "{log}");
    assert!(log.contains("view views/broken/not-json: ps/conn/host"), "{log}");
    assert!(!log.contains("CANARY"), "a value in the log: {log}");
}

#[test]
fn misconfigured_views_are_refused_at_mount_naming_the_line() {
    let work = tempfile::tempdir().unwrap();
    let cases = [
        ("[[view]]\npath = \"ps/x\"\ntemplate = \"x\"\n", "outside ps/"),
        ("[[view]]\npath = \"v\"\ntemplate = \"{{ x\"\n", "1: view \"v\""),
        ("[[view]]\npath = \"v\"\nfrom = \"sm/a\"\nformat = \"toml\"\n", "none of env"),
        ("[[view]]\npath = \"v\"\nfrom = \"sm/a\"\n", "`from` and `format`, or a `template`"),
        ("[[view]]\npath = \"v\"\ntemplate = \"x\"\nmode = \"0400\"\n", "unknown view key `mode`"),
    ];
    for (text, message) in cases {
        let config = work.path().join("c.toml");
        std::fs::write(&config, text).unwrap();
        let out = Command::new(BINARY)
            .args(["mount", "/nonexistent-mountpoint", "--config"])
            .arg(&config)
            .args(["--local", "examples/secrets.json"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{text}: {stderr}");
        assert!(stderr.contains(message), "{text}: {stderr}");
    }
}
