//! `secretfs exec --env VAR=SERVICE:NAME[#KEY] -- PROGRAM ARGS`: run a program with values in
//! its environment. The values go from memory into the new program's environment (this
//! process is replaced by it); nothing is written anywhere.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;

use super::{read, Failure, Session, Target};
use crate::error::{Error, Result};
use crate::provider::{SecretBytes, Service};

/// One `--env VAR=SPEC`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The environment variable.
    pub variable: String,
    /// What it holds.
    pub target: Target,
}

impl Binding {
    /// Parse `VAR=ps:/prod/db/root` or `VAR=sm:prod/db#password`.
    pub fn parse(text: &str) -> Result<Binding> {
        let (variable, spec) = text
            .split_once('=')
            .ok_or_else(|| Error::InvalidInput(format!("{text:?} is not VAR=SERVICE:NAME[#KEY]")))?;
        let valid = !variable.is_empty()
            && !variable.starts_with(|c: char| c.is_ascii_digit())
            && variable.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(Error::InvalidInput(format!("{variable:?} is not an environment variable name")));
        }
        Ok(Binding { variable: variable.to_string(), target: Target::parse(spec)? })
    }
}

/// The value of each binding, read together: the names of one service share their calls, and
/// more than one call's worth are read in parallel batches.
pub fn environment(
    session: &Session,
    bindings: &[Binding],
) -> std::result::Result<Vec<(String, SecretBytes)>, Failure> {
    for service in Service::ALL {
        let names = bindings.iter().filter(|b| b.target.service == service).map(|b| b.target.name.as_str());
        session.cache(service).walking(names);
    }
    let mut values = Vec::with_capacity(bindings.len());
    for binding in bindings {
        let target = &binding.target;
        let batch_mates =
            bindings.iter().filter(|b| b.target.service == target.service).map(|b| b.target.name.as_str());
        let fail = |error| Failure { subject: format!("{} ({})", binding.variable, target.subject()), error };
        let bytes = read::value(session, target, batch_mates).map_err(fail)?;
        if bytes.as_slice().contains(&0) {
            return Err(fail(Error::InvalidInput("the value holds a NUL byte, which no environment can carry".into())));
        }
        values.push((binding.variable.clone(), bytes));
    }
    Ok(values)
}

/// Replace this process with `program` and `args`, the bindings' values added to the inherited
/// environment. Returns only if the program could not be started.
pub fn run(session: &Session, bindings: &[Binding], program: &OsStr, args: &[std::ffi::OsString]) -> Failure {
    let values = match environment(session, bindings) {
        Ok(values) => values,
        Err(failure) => return failure,
    };
    let mut command = std::process::Command::new(program);
    command.args(args);
    for (variable, bytes) in &values {
        command.env(variable, OsStr::from_bytes(bytes.as_slice()));
    }
    let err = command.exec();
    let missing = err.kind() == std::io::ErrorKind::NotFound;
    Failure {
        subject: program.to_string_lossy().into_owned(),
        error: Error::CannotRun { reason: err.to_string(), missing },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Service;

    #[test]
    fn bindings_name_a_variable_and_a_target() {
        let binding = Binding::parse("DB_PASS=sm:prod/db#password").unwrap();
        assert_eq!(binding.variable, "DB_PASS");
        assert_eq!(binding.target.service, Service::SecretsManager);
        assert_eq!((binding.target.name.as_str(), binding.target.keys.clone()), ("prod/db", vec!["password".into()]));
        let binding = Binding::parse("ROOT=ps:/prod/db/root:3").unwrap();
        assert_eq!(binding.target.name, "/prod/db/root:3");
        for bad in ["NOEQUALS", "1X=ps:/a", "A-B=ps:/a", "=ps:/a", "X=s3:/a", "X=/a", "X=sm:prod/db#a..b"] {
            assert!(matches!(Binding::parse(bad), Err(Error::InvalidInput(_))), "{bad}");
        }
    }
}
