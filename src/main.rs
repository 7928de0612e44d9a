//! The `secretfs` binary: parse the command line and hand it to the library's composition root.

mod cli;

use clap::Parser;

fn main() {
    secretfs::logger::init();
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Mount(args) => secretfs::app::mount(args.into_config()),
        cli::Command::Unmount { mountpoint, lazy } => secretfs::app::unmount(&mountpoint, lazy),
    };
    if let Err(err) = result {
        eprintln!("secretfs: {err}");
        std::process::exit(1);
    }
}
