//! A minimal stderr logger for the `log` facade; the level comes from `SECRETFS_LOG`.
//! Log lines carry names, counts and error codes, never values.

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The environment variable that sets the log level (`error`, `warn`, `info`, `debug`, `trace`).
pub const LOG_ENV: &str = "SECRETFS_LOG";

struct StderrLogger {
    own_level: LevelFilter,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        let limit = if metadata.target().starts_with("secretfs") { self.own_level } else { LevelFilter::Warn };
        metadata.level() <= limit
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            // A closed stderr must never take the daemon down.
            let _ = writeln!(std::io::stderr().lock(), "secretfs {}: {}", level_name(record.level()), record.args());
        }
    }

    fn flush(&self) {}
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warning",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

/// Install the logger once; later calls do nothing.
pub fn init() {
    let own_level = std::env::var(LOG_ENV).ok().and_then(|v| v.parse().ok()).unwrap_or(LevelFilter::Info);
    if log::set_boxed_logger(Box::new(StderrLogger { own_level })).is_ok() {
        log::set_max_level(own_level.max(LevelFilter::Warn));
    }
}
