//! The container and Kubernetes recipes stay true: the manifests parse as YAML (with the PyYAML
//! that moto brings into .venv), propagate mounts as FUSE needs, and every secretfs option they
//! and the Dockerfile pass is a real option of this build.

#[path = "common/mount.rs"]
mod mount;

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The YAML documents of `file` as JSON text, parsed by PyYAML.
fn yaml_as_json(file: &Path) -> serde_json::Value {
    let python = Path::new(ROOT).join(".venv/bin/python");
    let python = if python.exists() { python } else { "python3".into() };
    let script = "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))";
    let out = Command::new(python).args(["-c", script]).arg(file).output().unwrap();
    assert!(out.status.success(), "{} does not parse: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every `--option` in `args` must be listed by `secretfs mount --help`.
fn assert_real_options(args: &[String], context: &str) {
    let help =
        String::from_utf8(Command::new(mount::BINARY).args(["mount", "--help"]).output().unwrap().stdout).unwrap();
    for arg in args.iter().filter(|a| a.starts_with("--")) {
        assert!(
            help.contains(&format!("{arg} ")) || help.contains(&format!("{arg}\n")),
            "{context}: {arg} is not an option"
        );
    }
    assert!(args.first().is_some_and(|a| a == "mount" || a.ends_with("secretfs")), "{context}: {args:?}");
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value.as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

#[test]
fn manifests_parse_propagate_mounts_and_use_real_options() {
    let mut secretfs_containers = 0;
    for name in ["daemonset.yaml", "consumer-pod.yaml", "sidecar-pod.yaml"] {
        let docs = yaml_as_json(&Path::new(ROOT).join("deploy").join(name));
        let text = docs.to_string();
        assert!(text.contains("mountPropagation"), "{name}: mount propagation is what makes FUSE visible");
        for doc in docs.as_array().unwrap().iter().filter(|doc| doc["kind"] != "ServiceAccount") {
            let spec = doc.pointer("/spec/template/spec").or_else(|| doc.pointer("/spec")).unwrap();
            let sidecars = spec["initContainers"].as_array().into_iter().flatten();
            for container in spec["containers"].as_array().unwrap().iter().chain(sidecars) {
                let image = container["image"].as_str().unwrap_or_default();
                if !image.starts_with("secretfs") {
                    continue;
                }
                secretfs_containers += 1;
                assert_real_options(&strings(&container["args"]), name);
                assert_eq!(container.pointer("/securityContext/privileged"), Some(&serde_json::json!(true)), "{name}");
                let propagation = container["volumeMounts"][0]["mountPropagation"].as_str();
                assert_eq!(propagation, Some("Bidirectional"), "{name}");
            }
        }
    }
    assert_eq!(secretfs_containers, 2);
}

#[test]
fn the_dockerfile_is_multi_stage_with_fuse3_and_real_options() {
    let dockerfile = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    assert_eq!(dockerfile.lines().filter(|l| l.starts_with("FROM ")).count(), 2, "multi-stage");
    assert!(dockerfile.contains("fuse3"));
    // The build stage must hold everything `cargo build` reads.
    for needed in ["Cargo.toml", "Cargo.lock", "build.rs", "src"] {
        let copied = dockerfile.lines().any(|l| l.starts_with("COPY ") && l.split_whitespace().any(|w| w == needed));
        assert!(copied, "the Dockerfile does not copy {needed}");
    }
    let cmd = dockerfile.lines().find_map(|l| l.strip_prefix("CMD ")).unwrap();
    let args: Vec<String> = serde_json::from_str(cmd).unwrap();
    assert_real_options(&args, "Dockerfile CMD");
}
