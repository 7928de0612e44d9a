//! The `secretfs` binary: parse the command line and hand it to the library's composition root.

mod cli;
mod cli_direct;
mod config_file;
mod mount_helper;

use clap::{CommandFactory, Parser};
use secretfs::logging::{LogTarget, Verbosity};

fn main() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let argv = match mount_helper::translate(&argv, cli::mount_option_kind) {
        None => argv,
        Some(Ok(translated)) => translated,
        Some(Err(err)) => {
            eprintln!("secretfs: {err}");
            std::process::exit(secretfs::error::EXIT_USAGE);
        }
    };
    let (argv, file) = match with_config_file(argv) {
        Ok(found) => found,
        Err(err) => {
            eprintln!("secretfs: {err}");
            std::process::exit(secretfs::error::Error::Config(err).exit_code());
        }
    };
    let cli = cli::Cli::parse_from(argv);
    if matches!(&cli.command, cli::Command::Mount(args) if !args.foreground) {
        secretfs::app::daemon::close_inherited_fds();
    }
    let target = match &cli.command {
        cli::Command::Mount(args) => LogTarget::choose(args.foreground, args.log_dir.clone()),
        _ => (LogTarget::Stderr, None),
    };
    let (target, fallback) = target;
    let verbosity = match &cli.command {
        cli::Command::Mount(args) if args.debug => Verbosity::Debug,
        cli::Command::Direct(command) if command.debug() => Verbosity::Debug,
        cli::Command::Direct(_) => Verbosity::Quiet,
        _ => Verbosity::Normal,
    };
    if let Err(err) = secretfs::logging::init(&target, verbosity) {
        eprintln!("secretfs: {err}");
        std::process::exit(secretfs::error::Error::Config(err).exit_code());
    }
    if let Some(fallback) = fallback {
        tracing::warn!("{fallback}");
    }
    let result = match cli.command {
        cli::Command::Mount(args) => secretfs::app::mount(args.into_config(file)),
        cli::Command::Direct(command) => std::process::exit(cli_direct::run(command)),
        cli::Command::Unmount { mountpoint, lazy } => secretfs::app::unmount(&mountpoint, lazy),
        cli::Command::Refresh { mountpoint, paths } => secretfs::app::refresh::refresh(&mountpoint, &paths),
        cli::Command::Completions { shell } => {
            clap_complete::generate(shell, &mut cli::Cli::command(), "secretfs", &mut std::io::stdout());
            Ok(())
        }
        cli::Command::Manpage => cli::write_manpage(&mut std::io::stdout())
            .map_err(|e| secretfs::error::Error::Config(format!("cannot write the man page: {e}"))),
    };
    if let Err(err) = result {
        eprintln!("secretfs: {err}");
        std::process::exit(err.exit_code());
    }
}

/// With `mount --config FILE`: the file's options inserted before the command line's own (which
/// therefore override them), and its rules.
fn with_config_file(
    argv: Vec<std::ffi::OsString>,
) -> Result<(Vec<std::ffi::OsString>, config_file::ConfigFile), String> {
    let words: Vec<String> = argv.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let mount_at = 1;
    if words.get(mount_at).map(String::as_str) != Some("mount") {
        return Ok((argv, config_file::ConfigFile::default()));
    }
    let path = words.iter().enumerate().skip(mount_at).find_map(|(i, w)| match w.strip_prefix("--config") {
        Some("") => words.get(i + 1).cloned(),
        Some(rest) => rest.strip_prefix('=').map(str::to_string),
        None => None,
    });
    let Some(path) = path else { return Ok((argv, config_file::ConfigFile::default())) };
    let mut file = config_file::load(std::path::Path::new(&path), cli::mount_option_kind)?;
    let mut merged: Vec<std::ffi::OsString> = argv[..=mount_at].to_vec();
    merged.extend(std::mem::take(&mut file.args).into_iter().map(Into::into));
    merged.extend(argv[mount_at + 1..].iter().cloned());
    Ok((merged, file))
}
