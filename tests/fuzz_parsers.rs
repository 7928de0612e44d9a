//! Bounded fuzzing (proptest, on stable, in CI) of the parsers that take outside input: a
//! value's JSON directory view, the local store file and the names written through the mount.
//! No input may panic, take unbounded time, or put a value into an error message. The config
//! file and the mount.fuse option translation are fuzzed in their own modules (the binary's).
//! `PROPTEST_CASES=200000 cargo test --test fuzz_parsers` runs longer.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use secretfs::cache::CachedValue;
use secretfs::fs::json_view::{listed_keys, member, render};
use secretfs::provider::names::check_new_name;
use secretfs::provider::{Fetched, Metadata, SecretBytes, Service, ValueKind};

const CANARY: &str = "CANARY-c4f3";

fn value(bytes: Vec<u8>, kind: ValueKind) -> CachedValue {
    CachedValue::new(Fetched {
        bytes: SecretBytes::new(bytes),
        kind,
        version: Some("1".into()),
        last_modified: None,
        meta: Metadata::default(),
    })
}

/// Arbitrary JSON text, mostly well-formed, sometimes cut or spliced.
fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<f64>().prop_map(|n| n.to_string()),
        "[0-9]{1,40}".prop_map(|n| n),
        ".{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
    ];
    let tree = leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(|items| format!("[{}]", items.join(","))),
            proptest::collection::vec((".{0,8}", inner), 0..6).prop_map(|members| {
                let members: Vec<String> = members
                    .into_iter()
                    .map(|(key, value)| format!("{}:{value}", serde_json::to_string(&key).unwrap()))
                    .collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    });
    (tree, 0..3usize, any::<usize>()).prop_map(|(text, damage, at)| match damage {
        0 => text.chars().take(at % (text.chars().count() + 1)).collect(),
        1 => format!("{text}{CANARY}"),
        _ => text,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2000), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_json_view_takes_any_value(text in json_text(), raw in proptest::collection::vec(any::<u8>(), 0..64)) {
        for bytes in [text.into_bytes(), raw] {
            let cached = value(bytes, ValueKind::SecretString);
            if let Some(object) = cached.json_object() {
                for (key, member_value) in listed_keys(object) {
                    let _ = render(member_value);
                    let _ = member(object, &[key.to_string()]);
                    prop_assert!(!key.is_empty() && !key.contains('/') && key != "." && key != "..");
                }
            }
        }
    }

    #[test]
    fn the_local_store_parser_takes_any_text_and_names_no_value(text in json_text()) {
        let store = format!(r#"{{"parameters": {{"/p": {text}}}, "secrets": {{"s": {text}}}}}"#);
        for input in [text.as_str(), store.as_str()] {
            if let Err(message) = secretfs::provider::local::parse(input) {
                prop_assert!(!message.contains(CANARY), "an error quoted a value: {message}");
            }
        }
    }

    #[test]
    fn name_checks_take_any_name(name in ".{0,300}", service in prop_oneof![Just(Service::ParameterStore), Just(Service::SecretsManager)]) {
        if let Err(err) = check_new_name(service, &format!("{name}{CANARY}")) {
            // A refusal names the name (that is its job), never more than it was given.
            prop_assert!(err.to_string().len() < 2000);
        }
    }
}

#[test]
fn a_value_nested_a_hundred_thousand_deep_is_served_raw_at_once() {
    let deep = format!("{}{}", "{\"a\":".repeat(100_000), "1}".repeat(100_000));
    assert!(deep.len() > 600_000);
    let started = Instant::now();
    let cached = value(deep.into_bytes(), ValueKind::SecretString);
    assert!(cached.json_object().is_none(), "too deep to be a directory: shown as a file, byte for byte");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}
