//! The command line of the commands that work without FUSE (`get`, `get-by-path`, `exists`,
//! `update`, `exec`), and how each one's outcome becomes output and an exit code.

use std::ffi::OsString;

use clap::{Args, Subcommand};
use secretfs::app::direct::exec::{self, Binding};
use secretfs::app::direct::read::{self, PathQuery, Printing};
use secretfs::app::direct::update::{self, NewValue};
use secretfs::app::direct::{Failure, Session, Target};
use secretfs::error::Error;

use crate::cli::{AwsArgs, ServiceName};

/// What every command without FUSE takes: where values come from, and `--debug`.
#[derive(Args, Debug)]
pub struct CommonArgs {
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Log each AWS call and cache step on stderr (never a value); SECRETFS_LOG overrides.
    #[arg(long)]
    pub debug: bool,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// The service: ps (Parameter Store) or sm (Secrets Manager).
    #[arg(value_enum)]
    pub service: ServiceName,
    /// The full name (`/prod/db/root`, `prod/db`), with a version selector if wanted
    /// (`/prod/db/root:3`, `prod/db:AWSPREVIOUS`).
    pub name: String,
    /// Print only this member of the JSON value: a dotted key path (`options.sslmode`; `\.` is a
    /// dot inside a key).
    #[arg(long, value_name = "KEY.PATH")]
    pub key: Option<String>,
    /// Add a newline after the value.
    #[arg(long)]
    pub newline: bool,
    /// Print a value that is not text even to a terminal.
    #[arg(long)]
    pub binary: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct GetByPathArgs {
    /// The service: ps (Parameter Store) or sm (Secrets Manager).
    #[arg(value_enum)]
    pub service: ServiceName,
    /// A parameter path (`/prod/db`), or a secret name prefix (`prod/`).
    pub path: String,
    /// Only names directly below the path (GetParametersByPath's Recursive=false).
    #[arg(long)]
    pub no_recursive: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct ExistsArgs {
    /// The service: ps (Parameter Store) or sm (Secrets Manager).
    #[arg(value_enum)]
    pub service: ServiceName,
    /// A full name, or a path with values below it.
    pub name: String,
    /// Whether this member of the JSON value exists (a dotted key path).
    #[arg(long, value_name = "KEY.PATH")]
    pub key: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// The service: ps (Parameter Store) or sm (Secrets Manager).
    #[arg(value_enum)]
    pub service: ServiceName,
    /// The full name of an existing parameter or secret.
    pub name: String,
    /// The new value, or `-` to read it from standard input (a command-line argument is
    /// visible to other users while the command runs).
    pub value: String,
    /// Replace only this member of the JSON value (added as a string if it is not there).
    #[arg(long, value_name = "KEY.PATH")]
    pub key: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Put a value in the program's environment: VAR=ps:/prod/db/root, VAR=sm:prod/db,
    /// VAR=sm:prod/db#password (a key path after `#`). Repeatable.
    #[arg(long = "env", value_name = "VAR=SERVICE:NAME[#KEY]", value_parser = Binding::parse, required = true)]
    pub bindings: Vec<Binding>,
    /// The program and its arguments (after `--`).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "PROGRAM")]
    pub command: Vec<OsString>,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// The commands that work without FUSE.
#[derive(Subcommand, Debug)]
pub enum Direct {
    /// Print one value, byte for byte (no FUSE needed).
    Get(Box<GetArgs>),
    /// Print every value below a parameter path or secret name prefix, as a JSON object of full
    /// name to value.
    GetByPath(Box<GetByPathArgs>),
    /// Exit 0 if the name (or key, or a path with values below it) exists, 1 if not; prints
    /// nothing. Any other failure exits with its own code.
    Exists(Box<ExistsArgs>),
    /// Store a new value for an existing parameter or secret (or one key of its JSON), keeping
    /// how it is stored.
    Update(Box<UpdateArgs>),
    /// Run a program with values in its environment (nothing is written to disk).
    Exec(Box<ExecArgs>),
}

impl Direct {
    /// Whether `--debug` was given.
    pub fn debug(&self) -> bool {
        match self {
            Direct::Get(args) => args.common.debug,
            Direct::GetByPath(args) => args.common.debug,
            Direct::Exists(args) => args.common.debug,
            Direct::Update(args) => args.common.debug,
            Direct::Exec(args) => args.common.debug,
        }
    }
}

/// Run `command`; returns the process exit code. Failures are one line on stderr
/// (`secretfs: SUBJECT: reason`), except a `exists` answered "no", which prints nothing.
pub fn run(command: Direct) -> i32 {
    match outcome(command) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("secretfs: {failure}");
            failure.exit_code()
        }
    }
}

fn outcome(command: Direct) -> Result<i32, Failure> {
    let target = |service: ServiceName, name: &str, key: Option<&str>| {
        Target::new(service.service(), name, key).map_err(Failure::whole)
    };
    match command {
        Direct::Get(args) => {
            let target = target(args.service, &args.name, args.key.as_deref())?;
            let session = open(args.common.aws)?;
            read::get(&session, &target, Printing { newline: args.newline, binary: args.binary })?;
            Ok(0)
        }
        Direct::GetByPath(args) => {
            let query = PathQuery { service: args.service.service(), path: args.path, recursive: !args.no_recursive };
            let session = open(args.common.aws)?;
            read::print_by_path(&session, &query)?;
            Ok(0)
        }
        Direct::Exists(args) => {
            let target = target(args.service, &args.name, args.key.as_deref())?;
            let session = open(args.common.aws)?;
            match read::exists(&session, &target) {
                Ok(true) => Ok(0),
                Ok(false) => Ok(Error::NotFound.exit_code()),
                Err(error) => Err(target.failure(error)),
            }
        }
        Direct::Update(args) => {
            let target = target(args.service, &args.name, args.key.as_deref())?;
            let new = match args.value.as_str() {
                "-" => NewValue::Stdin,
                _ => NewValue::Argument(args.value),
            };
            let session = open(args.common.aws)?;
            update::update(&session, &target, new)?;
            Ok(0)
        }
        Direct::Exec(args) => {
            let session = open(args.common.aws)?;
            let (program, rest) = args.command.split_first().expect("clap requires a program");
            Err(exec::run(&session, &args.bindings, program, rest))
        }
    }
}

fn open(aws: AwsArgs) -> Result<Session, Failure> {
    Session::open(&aws.into_source(false)).map_err(Failure::whole)
}
