//! `--config FILE`: a TOML file holding mount options under their long names
//! (`region = "eu-west-1"`, `cache-ttl = 60`, `read-only = true`, `services = ["ps"]`) and
//! `[[rule]]` tables of per-path owner, group and modes (first match wins), `[[on-change]]`
//! commands and `[[view]]` rendered files. The options become
//! command-line arguments placed before the user's own, so the command line overrides the file.
//! Every error names the file, the line and the key.

use std::collections::BTreeMap;
use std::path::Path;

use secretfs::app::on_change::{OnChangeRule, DEFAULT_DEBOUNCE};
use secretfs::fs::ownership::OwnerRule;
use secretfs::views::{Format, ViewSource, ViewSpec};
use toml::{Spanned, Value};

/// What a config file contributes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConfigFile {
    /// `secretfs mount` arguments, in the order of the file.
    pub args: Vec<String>,
    /// Owner rules, in the order of the file.
    pub rules: Vec<OwnerRule>,
    /// On-change commands, in the order of the file.
    pub on_change: Vec<OnChangeRule>,
    /// Rendered views, in the order of the file.
    pub views: Vec<ViewSpec>,
}

/// Read `path`. `known` says whether a long option exists and whether it takes a value.
pub fn load(path: &Path, known: impl Fn(&str) -> Option<bool>) -> Result<ConfigFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("--config {}: {e}", path.display()))?;
    parse(&text, known).map_err(|e| format!("{}:{e}", path.display()))
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Parse the text of a config file; errors start with the line number.
pub fn parse(text: &str, known: impl Fn(&str) -> Option<bool>) -> Result<ConfigFile, String> {
    let table: BTreeMap<Spanned<String>, Spanned<Value>> = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
        format!("{line}: {}", e.message())
    })?;
    let mut entries: Vec<(&Spanned<String>, &Spanned<Value>)> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    let mut config = ConfigFile::default();
    for (key, value) in entries {
        let line = line_of(text, key.span().start);
        let name = key.get_ref().as_str();
        if name == "rule" {
            config.rules = rules(value.get_ref(), text, line)?;
            continue;
        }
        if name == "on-change" {
            config.on_change = on_change(value.get_ref(), text, line)?;
            continue;
        }
        if name == "view" {
            config.views = views(value.get_ref(), text, line)?;
            continue;
        }
        if name == "config" {
            return Err(format!("{line}: `config` cannot point to another file"));
        }
        let takes_value = known(name).ok_or_else(|| format!("{line}: unknown key `{name}`"))?;
        match (takes_value, value.get_ref()) {
            (false, Value::Boolean(true)) => config.args.push(format!("--{name}")),
            (false, Value::Boolean(false)) => {}
            (false, _) => return Err(format!("{line}: `{name}` is true or false")),
            (true, value) => {
                let text = scalar(value).ok_or_else(|| format!("{line}: `{name}` needs a string or a number"))?;
                config.args.extend([format!("--{name}"), text]);
            }
        }
    }
    Ok(config)
}

/// A value as command-line text: strings as they are, numbers in decimal, lists comma-joined.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Integer(n) => Some(n.to_string()),
        Value::Array(items) => items.iter().map(scalar).collect::<Option<Vec<_>>>().map(|v| v.join(",")),
        _ => None,
    }
}

/// The `[[rule]]` tables: `path` (a glob), `uid`, `gid`, `mode` (files), `dir-mode`.
fn rules(value: &Value, text: &str, line: usize) -> Result<Vec<OwnerRule>, String> {
    each_table(value, text, line, "rule", |line, table| {
        let mut rule = OwnerRule::default();
        for (key, value) in table {
            let bad = || format!("{line}: rule `{key}` has a bad value");
            match key.as_str() {
                "path" => rule.pattern = value.as_str().ok_or_else(bad)?.to_string(),
                "uid" => rule.uid = Some(id(value).ok_or_else(bad)?),
                "gid" => rule.gid = Some(id(value).ok_or_else(bad)?),
                "mode" => rule.file_mode = Some(mode(value).ok_or_else(bad)?),
                "dir-mode" => rule.dir_mode = Some(mode(value).ok_or_else(bad)?),
                "ttl" => {
                    let seconds = value.as_integer().and_then(|n| u64::try_from(n).ok()).filter(|n| *n > 0);
                    rule.ttl = Some(std::time::Duration::from_secs(seconds.ok_or_else(bad)?));
                }
                other => {
                    return Err(format!("{line}: unknown rule key `{other}` (path, uid, gid, mode, dir-mode, ttl)"))
                }
            }
        }
        if rule.pattern.is_empty() {
            return Err(format!("{line}: a rule needs a `path` glob"));
        }
        Ok(rule)
    })
}

/// The `[[on-change]]` tables: `path` (a glob), `command` (a list: program and arguments) and
/// `debounce-ms`.
fn on_change(value: &Value, text: &str, line: usize) -> Result<Vec<OnChangeRule>, String> {
    each_table(value, text, line, "on-change", |line, table| {
        let mut rule = OnChangeRule { pattern: String::new(), command: Vec::new(), debounce: DEFAULT_DEBOUNCE };
        for (key, value) in table {
            let bad = || format!("{line}: on-change `{key}` has a bad value");
            match key.as_str() {
                "path" => rule.pattern = value.as_str().ok_or_else(bad)?.to_string(),
                "command" => {
                    let words = value.as_array().ok_or_else(bad)?.iter().map(|w| w.as_str().map(str::to_string));
                    rule.command = words.collect::<Option<Vec<_>>>().ok_or_else(bad)?;
                }
                "debounce-ms" => {
                    let ms = value.as_integer().and_then(|n| u64::try_from(n).ok()).ok_or_else(bad)?;
                    rule.debounce = std::time::Duration::from_millis(ms);
                }
                other => return Err(format!("{line}: unknown on-change key `{other}` (path, command, debounce-ms)")),
            }
        }
        if rule.pattern.is_empty() || rule.command.is_empty() {
            return Err(format!("{line}: an on-change rule needs a `path` glob and a `command` list"));
        }
        Ok(rule)
    })
}

/// The `[[view]]` tables: `path` (relative to the mount root) and either `from` (a mount path)
/// with `format` (env, dotenv, json, properties, yaml) or `template`.
fn views(value: &Value, text: &str, line: usize) -> Result<Vec<ViewSpec>, String> {
    each_table(value, text, line, "view", |line, table| {
        let text_of = |key: &str| -> Result<Option<String>, String> {
            match table.get(key) {
                None => Ok(None),
                Some(value) => {
                    value.as_str().map(|s| Some(s.to_string())).ok_or(format!("{line}: view `{key}` is a string"))
                }
            }
        };
        if let Some(other) = table.keys().find(|k| !["path", "from", "format", "template"].contains(&k.as_str())) {
            return Err(format!("{line}: unknown view key `{other}` (path, from, format, template)"));
        }
        let path = text_of("path")?.ok_or(format!("{line}: a view needs a `path`"))?;
        let source = match (text_of("from")?, text_of("format")?, text_of("template")?) {
            (Some(from), Some(format), None) => {
                let format = Format::named(&format)
                    .ok_or(format!("{line}: view format `{format}` is none of env, dotenv, json, properties, yaml"))?;
                ViewSource::Members { from, format }
            }
            (None, None, Some(template)) => ViewSource::Template(template),
            _ => return Err(format!("{line}: a view has `from` and `format`, or a `template`")),
        };
        let spec = ViewSpec { path, source };
        spec.check().map_err(|e| format!("{line}: {e}"))?;
        Ok(spec)
    })
}

/// Parse each `[[name]]` table of `value` with `parse(line of its header, table)`.
fn each_table<T>(
    value: &Value,
    text: &str,
    line: usize,
    name: &str,
    parse: impl Fn(usize, &toml::Table) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let Value::Array(tables) = value else { return Err(format!("{line}: `{name}` is a list of [[{name}]] tables")) };
    let header = format!("[[{name}]]");
    let headers: Vec<usize> = text.match_indices(&header).map(|(at, _)| line_of(text, at)).collect();
    tables
        .iter()
        .enumerate()
        .map(|(index, table)| {
            let line = headers.get(index).copied().unwrap_or(line);
            let Value::Table(table) = table else { return Err(format!("{line}: each {header} is a table")) };
            parse(line, table)
        })
        .collect()
}

fn id(value: &Value) -> Option<u32> {
    value.as_integer().and_then(|n| u32::try_from(n).ok())
}

/// A mode as an octal string (`"0400"`); integers are refused, since `400` would be decimal.
fn mode(value: &Value) -> Option<u16> {
    let text = value.as_str()?;
    u16::from_str_radix(text.trim_start_matches("0o"), 8).ok().filter(|m| *m <= 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(key: &str) -> Option<bool> {
        match key {
            "region" | "cache-ttl" | "services" | "file-mode" => Some(true),
            "read-only" | "allow-other" => Some(false),
            _ => None,
        }
    }

    #[test]
    fn options_and_rules_are_read_in_order() {
        let text = r#"
region = "eu-west-1"
cache-ttl = 60
read-only = true
allow-other = false
services = ["ps", "sm"]

[[rule]]
path = "sm/prod/ssh/*"
uid = 1001
mode = "0400"

[[rule]]
path = "sm/prod/pg/**"
gid = 70
dir-mode = "0750"
"#;
        let config = parse(text, known).unwrap();
        assert_eq!(config.args, ["--region", "eu-west-1", "--cache-ttl", "60", "--read-only", "--services", "ps,sm"]);
        assert_eq!(config.rules.len(), 2);
        assert_eq!((config.rules[0].uid, config.rules[0].file_mode), (Some(1001), Some(0o400)));
        assert_eq!((config.rules[1].gid, config.rules[1].dir_mode), (Some(70), Some(0o750)));
    }

    #[test]
    fn errors_name_the_line_and_key() {
        assert_eq!(parse("region = \"x\"\ncolour = \"blue\"\n", known).unwrap_err(), "2: unknown key `colour`");
        assert_eq!(parse("\nread-only = \"yes\"\n", known).unwrap_err(), "2: `read-only` is true or false");
        let err = parse("region = \"x\"\n\n[[rule]]\npath = \"a\"\nmode = 400\n", known).unwrap_err();
        assert_eq!(err, "3: rule `mode` has a bad value");
        assert!(parse("[[rule]]\nowner = 1\n", known).unwrap_err().starts_with("1: unknown rule key `owner`"));
        assert!(parse("region = \n", known).unwrap_err().starts_with("1: "));
    }

    #[test]
    fn on_change_rules_are_read_with_their_command_and_debounce() {
        let text =
            "[[on-change]]\npath = \"sm/tls/**\"\ncommand = [\"nginx\", \"-s\", \"reload\"]\ndebounce-ms = 250\n";
        let config = parse(text, known).unwrap();
        let rule = &config.on_change[0];
        assert_eq!((rule.pattern.as_str(), rule.debounce), ("sm/tls/**", std::time::Duration::from_millis(250)));
        assert_eq!(rule.command, ["nginx", "-s", "reload"]);
        let err = parse("\n[[on-change]]\npath = \"ps/**\"\n", known).unwrap_err();
        assert_eq!(err, "2: an on-change rule needs a `path` glob and a `command` list");
        let err = parse("[[on-change]]\npath = \"ps/**\"\ncommand = \"nginx -s reload\"\n", known).unwrap_err();
        assert_eq!(err, "1: on-change `command` has a bad value");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2000), failure_persistence: None, ..Default::default() })]

        /// Fuzzing: any text, and any mix of known keys, tables and values, is parsed or refused
        /// with a line number; nothing panics.
        #[test]
        fn any_config_text_is_parsed_or_refused_with_a_line(
            lines in proptest::collection::vec(
                proptest::prop_oneof![
                    ".{0,40}",
                    "(region|cache-ttl|services|file-mode|read-only|allow-other|config|nope) = (\"[a-z0-9-]{0,8}\"|[0-9]{1,6}|true|false|\\[\"ps\"\\]|-1)",
                    "\\[\\[(rule|on-change|view)\\]\\]",
                    "(path|uid|gid|mode|dir-mode|ttl|command|debounce-ms|from|format|template) = (\"[*a-z/]{0,10}\"|[0-9]{1,5}|\\[\"x\"\\]|-3)",
                ],
                0..12,
            )
        ) {
            let text = lines.join("\n");
            if let Err(message) = parse(&text, known) {
                let line: Option<usize> = message.split(':').next().and_then(|n| n.trim().parse().ok());
                proptest::prop_assert!(line.is_some(), "no line number in {message:?}");
            }
        }
    }
}
