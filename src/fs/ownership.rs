//! Per-path owner, group and mode: rules of glob patterns on mount paths (`sm/prod/ssh/*`), the
//! first match wins, so ssh, libpq and a database server each get files they accept.

/// One rule: nodes whose mount path matches `pattern` get these owner, group and modes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnerRule {
    /// A glob on mount paths (`ps/...`, `sm/...`): `*` and `?` within one path part, `**` across
    /// parts.
    pub pattern: String,
    /// Owner of matching nodes.
    pub uid: Option<u32>,
    /// Group of matching nodes.
    pub gid: Option<u32>,
    /// Permission bits of matching files.
    pub file_mode: Option<u16>,
    /// Permission bits of matching directories.
    pub dir_mode: Option<u16>,
    /// How long values at matching paths are served before they are refreshed (ssm-cache's
    /// per-parameter `max_age`), instead of `--cache-ttl`.
    pub ttl: Option<std::time::Duration>,
}

impl OwnerRule {
    /// Whether the rule applies to the node at `path` (`sm/prod/ssh/id_ed25519`).
    pub fn matches(&self, path: &str) -> bool {
        matches_glob(&self.pattern, path)
    }
}

/// The first rule of `rules` matching `path`.
pub fn rule_for<'a>(rules: &'a [OwnerRule], path: &str) -> Option<&'a OwnerRule> {
    rules.iter().find(|rule| rule.matches(path))
}

/// Whether the mount path `path` matches the glob `pattern` (see [`OwnerRule::pattern`]).
pub fn matches_glob(pattern: &str, path: &str) -> bool {
    glob_match(pattern.as_bytes(), path.as_bytes())
}

/// Glob matching: `**` any run of characters, `*` any run without `/`, `?` one character
/// other than `/`, anything else itself.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern {
        [] => text.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=text.len()).any(|skip| glob_match(rest, &text[skip..])),
        [b'*', rest @ ..] => {
            let part = text.iter().position(|&c| c == b'/').unwrap_or(text.len());
            (0..=part).any(|skip| glob_match(rest, &text[skip..]))
        }
        [b'?', rest @ ..] => matches!(text, [c, tail @ ..] if *c != b'/' && glob_match(rest, tail)),
        [c, rest @ ..] => matches!(text, [t, tail @ ..] if t == c && glob_match(rest, tail)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str) -> OwnerRule {
        OwnerRule { pattern: pattern.into(), ..OwnerRule::default() }
    }

    #[test]
    fn globs_match_within_and_across_path_parts() {
        assert!(rule("sm/prod/ssh/*").matches("sm/prod/ssh/id_ed25519"));
        assert!(!rule("sm/prod/ssh/*").matches("sm/prod/ssh/keys/id"));
        assert!(rule("sm/prod/ssh/**").matches("sm/prod/ssh/keys/id"));
        assert!(rule("ps/**/root").matches("ps/prod/db/root"));
        assert!(rule("ps/*/db/?oot").matches("ps/prod/db/root"));
        assert!(!rule("ps/*/db/?oot").matches("ps/prod/db/oot"));
        assert!(rule("sm/prod/tls/*.key").matches("sm/prod/tls/server.key"));
        assert!(!rule("sm/prod/tls/*.key").matches("sm/prod/tls/server.crt"));
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let rules = [OwnerRule { uid: Some(1), ..rule("sm/prod/ssh/*") }, OwnerRule { uid: Some(2), ..rule("sm/**") }];
        assert_eq!(rule_for(&rules, "sm/prod/ssh/key").unwrap().uid, Some(1));
        assert_eq!(rule_for(&rules, "sm/prod/db").unwrap().uid, Some(2));
        assert!(rule_for(&rules, "ps/x").is_none());
    }
}
