//! The `mount.fuse` form of the command line, used by `mount -t fuse.secretfs` and `/etc/fstab`:
//! `secretfs SOURCE MOUNTPOINT [-o OPTIONS]`, turned into `secretfs mount MOUNTPOINT --options`.
//! SOURCE is `aws` or `local:PATH`; OPTIONS are the long options without dashes
//! (`region=eu-west-1,cache-ttl=60,read-only`), plus mount(8)'s generic flags. A list value
//! separates its items with `:` (`services=ps:sm`), since `,` separates the options.

use std::ffi::OsString;

/// Generic mount flags that need nothing from secretfs: its mounts are always `nosuid`,
/// `nodev` and `noexec`; boot-time and user flags are mount(8)'s and systemd's business.
/// (`dev`, `suid` and `exec`, which mount.fuse adds, are ignored too: secretfs never allows them.)
const IGNORED: [&str; 22] = [
    "rw",
    "defaults",
    "_netdev",
    "noauto",
    "auto",
    "nofail",
    "nosuid",
    "nodev",
    "noexec",
    "dev",
    "suid",
    "exec",
    "user",
    "users",
    "nouser",
    "owner",
    "group",
    "relatime",
    "noatime",
    "atime",
    "strictatime",
    "async",
];

/// Options whose value is a list: written `a:b` in `-o`, passed on as `a,b`.
const LIST_OPTIONS: [&str; 1] = ["services"];

/// If `args` (program name first) use the mount helper form, the equivalent `secretfs mount`
/// arguments, or an error naming the problem; `None` for the ordinary command line.
/// `known` says whether a long option of `secretfs mount` exists and whether it takes a value.
pub fn translate(args: &[OsString], known: impl Fn(&str) -> Option<bool>) -> Option<Result<Vec<OsString>, String>> {
    let words: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let first = words.get(1)?;
    if !(first == "aws" || first.starts_with("local:")) {
        return None;
    }
    Some(translate_words(&words, known))
}

fn translate_words(words: &[String], known: impl Fn(&str) -> Option<bool>) -> Result<Vec<OsString>, String> {
    let (source, mountpoint) = match (words.get(1), words.get(2)) {
        (Some(source), Some(mountpoint)) => (source, mountpoint),
        _ => return Err("usage: secretfs aws|local:PATH MOUNTPOINT [-o OPTIONS]".into()),
    };
    let mut out: Vec<String> = vec![words[0].clone(), "mount".into(), mountpoint.clone()];
    if let Some(path) = source.strip_prefix("local:") {
        out.extend(["--local".into(), path.to_string()]);
    }
    let mut rest = words[3..].iter();
    while let Some(word) = rest.next() {
        let options = match word.as_str() {
            "-o" => rest.next().ok_or("-o needs a list of options")?.clone(),
            other => match other.strip_prefix("-o") {
                Some(list) if !list.is_empty() => list.to_string(),
                _ => return Err(format!("unexpected argument {other:?}; options go in -o a,b=c")),
            },
        };
        for option in options.split(',').filter(|o| !o.is_empty()) {
            let (key, value) = match option.split_once('=') {
                Some((key, value)) => (key, Some(value)),
                None => (option, None),
            };
            if key == "ro" && value.is_none() {
                out.push("--read-only".into());
                continue;
            }
            if IGNORED.contains(&key) || key.starts_with("x-") || key == "foreground" || key == "f" {
                continue;
            }
            match (known(key), value) {
                (None, _) => return Err(format!("unknown mount option `{key}`")),
                (Some(true), Some(value)) if LIST_OPTIONS.contains(&key) => {
                    out.extend([format!("--{key}"), value.replace(':', ",")])
                }
                (Some(true), Some(value)) => out.extend([format!("--{key}"), value.to_string()]),
                (Some(true), None) => return Err(format!("mount option `{key}` needs a value: {key}=...")),
                (Some(false), None) => out.push(format!("--{key}")),
                (Some(false), Some(_)) => return Err(format!("mount option `{key}` takes no value")),
            }
        }
    }
    Ok(out.into_iter().map(OsString::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(key: &str) -> Option<bool> {
        match key {
            "region" | "cache-ttl" | "uid" | "file-mode" | "local" | "services" => Some(true),
            "read-only" | "allow-other" => Some(false),
            _ => None,
        }
    }

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn strings(result: Vec<OsString>) -> Vec<String> {
        result.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn the_helper_form_becomes_a_mount_command() {
        let got = translate(
            &args(&[
                "secretfs",
                "aws",
                "/mnt/s",
                "-o",
                "rw,region=eu-west-1,cache-ttl=60,allow-other,_netdev,x-systemd.automount",
            ]),
            known,
        );
        assert_eq!(
            strings(got.unwrap().unwrap()),
            ["secretfs", "mount", "/mnt/s", "--region", "eu-west-1", "--cache-ttl", "60", "--allow-other"]
        );
        let got = translate(&args(&["secretfs", "local:/etc/s.json", "/m", "-oro,uid=1000,services=ps:sm"]), known);
        assert_eq!(
            strings(got.unwrap().unwrap()),
            [
                "secretfs",
                "mount",
                "/m",
                "--local",
                "/etc/s.json",
                "--read-only",
                "--uid",
                "1000",
                "--services",
                "ps,sm"
            ]
        );
    }

    #[test]
    fn the_ordinary_command_line_is_left_alone_and_bad_options_are_named() {
        assert!(translate(&args(&["secretfs", "mount", "/m"]), known).is_none());
        let err = translate(&args(&["secretfs", "aws", "/m", "-o", "colour=blue"]), known).unwrap().unwrap_err();
        assert_eq!(err, "unknown mount option `colour`");
        assert!(translate(&args(&["secretfs", "aws", "/m", "-o", "region"]), known).unwrap().is_err());
        assert!(translate(&args(&["secretfs", "aws"]), known).unwrap().is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2000), failure_persistence: None, ..Default::default() })]

        /// Fuzzing: any mount.fuse option string is translated or refused; nothing panics, and
        /// a translation only ever holds options that exist.
        #[test]
        fn any_option_string_is_translated_or_refused(
            options in proptest::collection::vec(
                proptest::prop_oneof![".{0,20}", "(region|cache-ttl|uid|file-mode|local|services|read-only|allow-other|rw|ro|noauto|_netdev|x-systemd.automount|nope)(=[a-z0-9,=:/]{0,10})?"],
                0..8,
            )
        ) {
            let joined = options.join(",");
            if let Some(Ok(translated)) = translate(&args(&["secretfs", "aws", "/mnt/s", "-o", &joined]), known) {
                for word in translated.iter().filter_map(|w| w.to_str()?.strip_prefix("--")) {
                    let name = word.split('=').next().unwrap_or(word);
                    proptest::prop_assert!(known(name).is_some() || name == "foreground", "{name} is not an option");
                }
            }
        }
    }
}
