//! A JSON object's members as one file in a format programs read: shell `.env`, python-dotenv,
//! Java `.properties`, JSON or YAML, each quoted so every value reads back byte for byte.

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::fs::json_view::render as member_text;

/// A file format for a JSON object's members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `KEY='value'` lines for `set -a; . FILE` (bash, dash); python-dotenv reads them too
    /// unless a value holds both a quote or backslash and a `$` or backtick.
    Env,
    /// `KEY='value'` lines as python-dotenv (and tools following it) reads them, for every value.
    Dotenv,
    /// The object as JSON.
    Json,
    /// Java `.properties` (ISO-8859-1 with `\uXXXX` escapes, as `Properties.load` reads).
    Properties,
    /// A YAML mapping (each key and value a double-quoted scalar or JSON flow value).
    Yaml,
}

impl Format {
    /// The format named `name` in a config file.
    pub fn named(name: &str) -> Option<Format> {
        match name {
            "env" => Some(Format::Env),
            "dotenv" => Some(Format::Dotenv),
            "json" => Some(Format::Json),
            "properties" => Some(Format::Properties),
            "yaml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

/// The members of `object` as a file in `format`. A member that is not a string is written as
/// its compact JSON text (as the mount's key files show it), except in JSON and YAML, which
/// keep its type. Env formats refuse a key that is not a variable name, and every value with a
/// NUL byte (no shell variable can hold one); the error names the key, never the value.
pub fn render(object: &Map<String, Value>, format: Format) -> Result<Vec<u8>> {
    let mut out = String::new();
    match format {
        Format::Json => {
            out = serde_json::to_string_pretty(object).unwrap_or_default();
            out.push('\n');
        }
        Format::Yaml => {
            for (key, value) in object {
                out.push_str(&format!("{}: {}\n", Value::String(key.clone()), value));
            }
        }
        Format::Env | Format::Dotenv => {
            for (key, value) in object {
                check_variable(key)?;
                let text = text_of(value);
                if text.contains('\0') {
                    return Err(Error::InvalidInput(format!(
                        "key {key:?} holds a NUL byte, which no variable can hold"
                    )));
                }
                let quoted = match format {
                    Format::Env => shell_quoted(&text),
                    _ => dotenv_quoted(&text),
                };
                out.push_str(&format!("{key}={quoted}\n"));
            }
        }
        Format::Properties => {
            for (key, value) in object {
                out.push_str(&properties_escaped(key, true));
                out.push('=');
                out.push_str(&properties_escaped(&text_of(value), false));
                out.push('\n');
            }
        }
    }
    Ok(out.into_bytes())
}

fn text_of(value: &Value) -> String {
    String::from_utf8(member_text(value)).unwrap_or_default()
}

fn check_variable(key: &str) -> Result<()> {
    let valid = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match valid {
        true => Ok(()),
        false => Err(Error::InvalidInput(format!("key {key:?} is not a shell variable name"))),
    }
}

/// Quoted for a POSIX shell, and where possible also as python-dotenv reads it: single quotes
/// when the text has no `'` or `\` (both read it literally); double quotes when it has one of
/// them but no `$` or backtick (both undo `\\` and `\"` alike); otherwise single quotes with
/// `'\''` for each quote, which only shells read.
fn shell_quoted(text: &str) -> String {
    if !text.contains(['\'', '\\']) {
        return format!("'{text}'");
    }
    if !text.contains(['$', '`']) {
        return format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""));
    }
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// Single-quoted as python-dotenv reads it: no interpolation; `\\` and `\'` are its only escapes.
fn dotenv_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Escaped for a `.properties` file: backslash escapes for `\`, line breaks, tabs and form
/// feeds; `\uXXXX` (UTF-16) beyond ASCII; a leading space (values) or any space, `=`, `:`, `#`
/// and `!` (keys) escaped so the parser keeps them.
fn properties_escaped(text: &str, key: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{c}' => out.push_str("\\f"),
            ' ' if key || i == 0 => out.push_str("\\ "),
            '=' | ':' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_picks_the_form_both_parsers_share() {
        assert_eq!(shell_quoted("pa$s \"x\"\nline"), "'pa$s \"x\"\nline'");
        assert_eq!(shell_quoted("it's \\ \"q\""), "\"it's \\\\ \\\"q\\\"\"");
        assert_eq!(shell_quoted("it's $HOME"), "'it'\\''s $HOME'");
        assert_eq!(dotenv_quoted("it's \\ $x"), "'it\\'s \\\\ $x'");
    }

    #[test]
    fn properties_escape_what_the_parser_would_change() {
        assert_eq!(properties_escaped(" a=b:c", false), "\\ a\\=b\\:c");
        assert_eq!(properties_escaped("k y", true), "k\\ y");
        assert_eq!(properties_escaped("é😀\n", false), "\\u00e9\\ud83d\\ude00\\n");
    }

    #[test]
    fn env_refuses_keys_that_are_not_variables() {
        let object: Map<String, Value> = serde_json::from_str(r#"{"db-host": "x"}"#).unwrap();
        assert!(render(&object, Format::Env).is_err());
        assert!(render(&object, Format::Properties).is_ok());
    }
}
