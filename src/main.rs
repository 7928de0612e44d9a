//! The `secretfs` binary: parse the command line and hand it to the library's composition root.

mod cli;
mod mount_helper;

use clap::{CommandFactory, Parser};
use secretfs::logging::LogTarget;

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
    let cli = cli::Cli::parse_from(argv);
    if matches!(&cli.command, cli::Command::Mount(args) if !args.foreground) {
        secretfs::app::daemon::close_inherited_fds();
    }
    let target = match &cli.command {
        cli::Command::Mount(args) => LogTarget::choose(args.foreground, args.log_dir.clone()),
        _ => LogTarget::Stderr,
    };
    let debug = matches!(&cli.command, cli::Command::Mount(args) if args.debug);
    if let Err(err) = secretfs::logging::init(&target, debug) {
        eprintln!("secretfs: {err}");
        std::process::exit(secretfs::error::Error::Config(err).exit_code());
    }
    let result = match cli.command {
        cli::Command::Mount(args) => secretfs::app::mount(args.into_config()),
        cli::Command::Unmount { mountpoint, lazy } => secretfs::app::unmount(&mountpoint, lazy),
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
