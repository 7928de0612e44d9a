//! Version selectors in names: `NAME:VERSION` or `NAME:LABEL` for parameters (SSM's own
//! selector syntax, which GetParameters accepts as is), `NAME:STAGE` or `NAME:VERSIONID` for
//! secrets. `:` is legal in neither service's names, so a selector never collides with a name.

/// A name split at its selector: (`NAME`, `SELECTOR`), or `None` for a plain name.
pub fn split(name: &str) -> Option<(&str, &str)> {
    name.rsplit_once(':').filter(|(base, selector)| !base.is_empty() && !selector.is_empty())
}

/// Whether `name` carries a selector.
pub fn has_selector(name: &str) -> bool {
    split(name).is_some()
}

/// Whether `name` selects one version that can never change: a parameter version number, or a
/// secret's VersionId (a UUID). A label or a stage can move to another version.
pub fn is_immutable(name: &str) -> bool {
    match split(name) {
        Some((_, selector)) => selector.bytes().all(|b| b.is_ascii_digit()) || is_version_id(selector),
        None => false,
    }
}

/// Whether `selector` has the form of a Secrets Manager VersionId (a UUID: 32 hex digits and
/// four dashes) rather than a staging label.
pub fn is_version_id(selector: &str) -> bool {
    selector.len() == 36
        && selector.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_split_and_told_apart() {
        assert_eq!(split("/app/db/password:3"), Some(("/app/db/password", "3")));
        assert_eq!(split("prod/db:AWSPREVIOUS"), Some(("prod/db", "AWSPREVIOUS")));
        assert_eq!(split("/plain/name"), None);
        assert_eq!(split(":x"), None);
        assert_eq!(split("x:"), None);
        assert!(is_immutable("/p:12") && !is_immutable("/p:prod-label"));
        assert!(is_immutable("s:a1b2c3d4-0000-4000-8000-0123456789ab"));
        assert!(!is_immutable("s:AWSCURRENT") && !is_immutable("plain"));
    }
}
