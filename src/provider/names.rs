//! The naming rules of each service, checked before any API call so a bad name fails with
//! EINVAL and costs nothing.

use super::Service;
use crate::error::{Error, Result};

/// Longest parameter name Parameter Store accepts.
pub const MAX_PARAMETER_NAME_LEN: usize = 1011;
/// Deepest parameter hierarchy Parameter Store accepts.
pub const MAX_PARAMETER_LEVELS: usize = 15;
/// Longest secret name Secrets Manager accepts.
pub const MAX_SECRET_NAME_LEN: usize = 512;

/// Check that `service` would accept `name` for a new parameter or secret: a valid name
/// ([`check_name`]) outside the prefixes AWS reserves (`aws`, `ssm`).
pub fn check_new_name(service: Service, name: &str) -> Result<()> {
    check_name(service, name)?;
    let first = name.trim_start_matches('/').to_ascii_lowercase();
    if service == Service::ParameterStore && (first.starts_with("aws") || first.starts_with("ssm")) {
        return Err(invalid(service, name, "names may not begin with `aws` or `ssm`"));
    }
    Ok(())
}

/// Check that `name` could name a parameter or secret of `service` (length, characters and
/// depth; AWS's own, such as `/aws/reference/secretsmanager/NAME`, included).
pub fn check_name(service: Service, name: &str) -> Result<()> {
    let problem = match service {
        Service::ParameterStore if name.len() > MAX_PARAMETER_NAME_LEN => Some("longer than 1011 characters"),
        Service::ParameterStore if !name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c)) => {
            Some("only letters, digits, `_ . - /` are allowed")
        }
        Service::ParameterStore if name.trim_start_matches('/').split('/').count() > MAX_PARAMETER_LEVELS => {
            Some("deeper than 15 levels")
        }
        Service::ParameterStore if name.trim_matches('/').is_empty() => Some("empty"),
        Service::SecretsManager if name.is_empty() || name.len() > MAX_SECRET_NAME_LEN => {
            Some("between 1 and 512 characters")
        }
        Service::SecretsManager if !name.chars().all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c)) => {
            Some("only letters, digits, `/ _ + = . @ -` are allowed")
        }
        _ => None,
    };
    match problem {
        Some(why) => Err(invalid(service, name, why)),
        None => Ok(()),
    }
}

fn invalid(service: Service, name: &str, why: &str) -> Error {
    Error::InvalidInput(format!("{name:?} is not a valid {} name: {why}", title(service)))
}

fn title(service: Service) -> &'static str {
    match service {
        Service::ParameterStore => "parameter",
        Service::SecretsManager => "secret",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_names() {
        let ok = |n: &str| check_new_name(Service::ParameterStore, n).is_ok();
        assert!(ok("/prod/db/root") && ok("flat.name-1_x"));
        assert!(!ok("/prod/db root") && !ok("/prod/p@ss") && !ok("/prod/é"));
        assert!(!ok("/aws/x") && !ok("/SSM/x") && !ok("awsome") && ok("/prod/aws"));
        assert!(ok(&"/a".repeat(15)) && !ok(&"/a".repeat(16)));
        assert!(!ok(&format!("/{}", "a".repeat(1011))));
        assert!(check_name(Service::ParameterStore, "/aws/reference/secretsmanager/x").is_ok());
        assert!(check_name(Service::ParameterStore, "/").is_err());
    }

    #[test]
    fn secret_names() {
        let ok = |n: &str| check_new_name(Service::SecretsManager, n).is_ok();
        assert!(ok("prod/db") && ok("a+b=c.d@e-f_g"));
        assert!(!ok("prod/db x") && !ok("prod:db") && !ok("prod/ünï") && !ok(""));
        assert!(!ok(&"a".repeat(513)));
    }
}
