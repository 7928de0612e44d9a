//! The command line (clap), turned into the library's plain configuration structs.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config_file::ConfigFile;
use secretfs::app::{normalize_ps_prefix, normalize_sm_prefix, MountConfig, Source, WarmCacheFiles};
use secretfs::cache::{
    CacheSettings, DEFAULT_CAPACITY, DEFAULT_MAX_BACKOFF, DEFAULT_MAX_STALE, DEFAULT_TTL, PATIENCE_MARGIN,
};
use secretfs::fs::FsConfig;
use secretfs::provider::aws::{
    AssumeRole, AwsSettings, DEFAULT_ATTEMPTS, DEFAULT_PS_TPS, DEFAULT_SM_TPS, DEFAULT_TIMEOUT,
};
use secretfs::provider::ps_options::{PsFilter, PsOptions};
use secretfs::provider::{Service, ValueKind};

/// AWS Parameter Store parameters and Secrets Manager secrets as files.
#[derive(Parser, Debug)]
#[command(name = "secretfs", version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("SECRETFS_COMMIT"), ")"))]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Mount the secrets at MOUNTPOINT; returns once the mount is ready (or use -f).
    Mount(Box<MountArgs>),
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), as packaged in secretfs(8).
    #[command(hide = true)]
    Manpage,
    /// Fetch values of a running mount again now (mount paths such as sm/prod/db, or paths
    /// inside MOUNTPOINT; a directory means everything below it; none means everything).
    /// Returns once they are fetched; exits 1 if any failed.
    Refresh {
        /// The mount point.
        mountpoint: PathBuf,
        /// The paths to refresh.
        paths: Vec<String>,
    },
    #[command(flatten)]
    Direct(crate::cli_direct::Direct),
    /// Unmount a secretfs mount (also a dead one left by a killed daemon).
    Unmount {
        /// The mount point to release.
        mountpoint: PathBuf,
        /// If it is busy (files open), detach it now anyway; holders get errors.
        #[arg(long, short = 'z')]
        lazy: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

/// The type of parameters created through the mount, spelled as AWS spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ParameterType {
    #[value(name = "SecureString")]
    SecureString,
    #[value(name = "String")]
    String,
    #[value(name = "StringList")]
    StringList,
}

impl ParameterType {
    fn kind(self) -> ValueKind {
        match self {
            ParameterType::SecureString => ValueKind::SecureString,
            ParameterType::String => ValueKind::String,
            ParameterType::StringList => ValueKind::StringList,
        }
    }
}

/// A service that can be mounted, by its directory name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ServiceName {
    Ps,
    Sm,
}

impl ServiceName {
    /// The service.
    pub fn service(self) -> Service {
        match self {
            ServiceName::Ps => Service::ParameterStore,
            ServiceName::Sm => Service::SecretsManager,
        }
    }
}

/// Where values come from and how AWS is asked: shared by `mount` and the commands that work
/// without FUSE.
#[derive(Args, Debug)]
pub struct AwsArgs {
    /// AWS region (default: AWS_REGION or the profile's region).
    #[arg(long)]
    pub region: Option<String>,
    /// AWS shared-config profile (default: AWS_PROFILE or "default").
    #[arg(long)]
    pub profile: Option<String>,
    /// Send AWS API calls to this endpoint (moto, LocalStack, a VPC endpoint).
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// Serve this local store file instead of AWS.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["region", "profile", "endpoint_url", "role_arn"])]
    pub local: Option<PathBuf>,
    /// Assume this IAM role (STS AssumeRole); its credentials are refreshed before they expire.
    #[arg(long, value_name = "ARN")]
    pub role_arn: Option<String>,
    /// Session name of the assumed role.
    #[arg(long, value_name = "NAME", requires = "role_arn")]
    pub role_session_name: Option<String>,
    /// External ID the role's trust policy asks for. Anyone on the host can read a command
    /// line (/proc/PID/cmdline): give it in the config file or SECRETFS_EXTERNAL_ID instead.
    #[arg(long, value_name = "ID", requires = "role_arn", env = "SECRETFS_EXTERNAL_ID", hide_env_values = true)]
    pub external_id: Option<String>,
    /// Lifetime of the assumed role's credentials, in seconds.
    #[arg(long, value_name = "SECONDS", requires = "role_arn", value_parser = clap::value_parser!(u64).range(900..=43200))]
    pub role_duration: Option<u64>,
    /// Seconds one AWS request may take, retries included; a cold read fails (EIO) after it.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Attempts per AWS request, the first included.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ATTEMPTS, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub retries: u32,
    /// Parameter Store requests a second at most (the account shares 40).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PS_TPS, value_parser = clap::value_parser!(u32).range(1..))]
    pub ps_max_tps: u32,
    /// Secrets Manager requests a second at most.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SM_TPS, value_parser = clap::value_parser!(u32).range(1..))]
    pub sm_max_tps: u32,
    /// Show only parameters passing this filter: Type=String|StringList|SecureString (several
    /// comma-separated) or KeyId=KEY (a key id, ARN or alias). Repeatable; all must pass.
    #[arg(long, value_name = "KEY=VALUE", value_parser = PsFilter::parse, conflicts_with = "local")]
    pub ps_filter: Vec<PsFilter>,
    /// Show SecureString parameters as the service returns them without decryption.
    #[arg(long, conflicts_with = "local")]
    pub no_decrypt: bool,
    /// The version stage plain secret names show, and writes to them store (a new version with
    /// that stage): AWSCURRENT, AWSPENDING, AWSPREVIOUS or a custom stage.
    #[arg(long, value_name = "STAGE", default_value = "AWSCURRENT")]
    pub version_stage: String,
}

impl AwsArgs {
    /// The library's source for these arguments; `verify_credentials` asks STS once first.
    pub fn into_source(self, verify_credentials: bool) -> Source {
        let assume_role = self.role_arn.map(|role_arn| AssumeRole {
            role_arn,
            session_name: self.role_session_name,
            external_id: self.external_id,
            duration: self.role_duration.map(Duration::from_secs),
        });
        match self.local {
            Some(path) => Source::Local(path),
            None => Source::Aws(Box::new(AwsSettings {
                region: self.region,
                profile: self.profile,
                endpoint_url: self.endpoint_url,
                assume_role,
                verify_credentials,
                timeout: Duration::from_secs(self.timeout),
                attempts: self.retries,
                ps_max_tps: self.ps_max_tps,
                sm_max_tps: self.sm_max_tps,
                ps_options: PsOptions { decrypt: !self.no_decrypt, filters: self.ps_filter },
                version_stage: self.version_stage,
            })),
        }
    }
}

#[derive(Args, Debug)]
#[command(args_override_self = true)]
pub struct MountArgs {
    /// Empty directory to mount on.
    pub mountpoint: PathBuf,
    /// Read options and per-path owner rules from this TOML file; options given on the command
    /// line override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Stay in the foreground (systemd, containers); logs go to stderr.
    #[arg(short, long)]
    pub foreground: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Do not check the credentials at mount (STS GetCallerIdentity).
    #[arg(long)]
    pub no_verify_credentials: bool,
    /// Which services to show.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "ps,sm")]
    pub services: Vec<ServiceName>,
    /// Seconds a value or a listing is cached before it is fetched again.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_TTL.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub cache_ttl: u64,
    /// Most values kept in the cache (the least recently read go first).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CAPACITY, value_parser = clap::value_parser!(u64).range(1..))]
    pub cache_size: u64,
    /// Most memory the cached values may count for: their bytes, names and about 1 KiB each
    /// (slot, inode, tree); a number of bytes, or with K, M or G (binary).
    #[arg(long, value_name = "SIZE", default_value = "128M", value_parser = parse_size)]
    pub cache_bytes: u64,
    /// Seconds past its TTL a known value is still served while AWS fails transiently.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_MAX_STALE.as_secs())]
    pub max_stale: u64,
    /// Longest wait, in seconds, between attempts at a key that keeps failing.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_MAX_BACKOFF.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub max_backoff: u64,
    /// Mount read-only: every write fails with EROFS.
    #[arg(long)]
    pub read_only: bool,
    /// Let `rm` delete parameters, secrets (with the default recovery window) and JSON keys.
    #[arg(long, conflicts_with = "read_only")]
    pub allow_delete: bool,
    /// Type of parameters created through the mount.
    #[arg(long, value_enum, value_name = "TYPE", default_value = "SecureString", ignore_case = true)]
    pub new_parameter_type: ParameterType,
    /// Owner of every file (default: the mounting user).
    #[arg(long)]
    pub uid: Option<u32>,
    /// Group of every file (default: the mounting user's group).
    #[arg(long)]
    pub gid: Option<u32>,
    /// Permission bits of files, in octal.
    #[arg(long, value_name = "OCTAL", default_value = "0400", value_parser = parse_mode)]
    pub file_mode: u16,
    /// Permission bits of directories, in octal.
    #[arg(long, value_name = "OCTAL", default_value = "0500", value_parser = parse_mode)]
    pub dir_mode: u16,
    /// Let other users reach the mount (mode bits are still enforced).
    #[arg(long)]
    pub allow_other: bool,
    /// Parameter Store path shown as ps/.
    #[arg(long, value_name = "PATH", default_value = "/")]
    pub ps_prefix: String,
    /// Secrets Manager name prefix shown as sm/.
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub sm_prefix: String,
    /// Keep an encrypted copy of what the cache holds in DIR (0700, made if missing), so a daemon
    /// started while AWS is unreachable serves the last known values at once.
    #[arg(long, value_name = "DIR", requires = "cache_key_file")]
    pub cache_dir: Option<PathBuf>,
    /// The key of --cache-dir: 32 random bytes, or 64 hex digits (mode 0400 or 0600, owned by
    /// the daemon's user; systemd LoadCredential= works).
    #[arg(long, value_name = "FILE", requires = "cache_dir")]
    pub cache_key_file: Option<PathBuf>,
    /// Log at debug level (each FUSE operation, each AWS call); SECRETFS_LOG overrides.
    #[arg(long)]
    pub debug: bool,
    /// Write logs to size-rotated files (mode 0600) in DIR instead of stderr, journald or syslog.
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Lock the daemon's memory so values never reach swap (needs CAP_IPC_LOCK or a high
    /// `ulimit -l`).
    #[arg(long)]
    pub lock_memory: bool,
    /// Run without the system-call allow-list (seccomp) a root daemon installs once mounted.
    #[arg(long)]
    pub no_seccomp: bool,
    /// Show values that are JSON objects as directories of keys.
    #[arg(long, value_enum, default_value = "on")]
    pub json_keys: OnOff,
}

/// The man page: the whole command line, the mount subcommand's options included.
pub fn write_manpage(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    use clap::CommandFactory;
    let command = Cli::command();
    let page = clap_mangen::Man::new(command.clone()).section("8");
    page.render_title(out)?;
    page.render_name_section(out)?;
    page.render_synopsis_section(out)?;
    page.render_description_section(out)?;
    page.render_subcommands_section(out)?;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let mut options = Vec::new();
        clap_mangen::Man::new(sub.clone()).render_options_section(&mut options)?;
        let heading = format!(".SH \"{} OPTIONS\"", sub.get_name().to_uppercase());
        out.write_all(String::from_utf8_lossy(&options).replacen(".SH OPTIONS", &heading, 1).as_bytes())?;
    }
    page.render_version_section(out)
}

/// Whether `secretfs mount` has the long option `name`, and if so whether it takes a value (for
/// the mount helper form's `-o name[=value]`).
pub fn mount_option_kind(name: &str) -> Option<bool> {
    use clap::CommandFactory;
    let command = Cli::command();
    let mount = command.find_subcommand("mount")?;
    let argument = mount.get_arguments().find(|a| a.get_long() == Some(name))?;
    Some(argument.get_action().takes_values())
}

fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, ""),
    };
    let shift = match unit {
        "" => 0,
        "K" | "k" | "KiB" => 10,
        "M" | "m" | "MiB" => 20,
        "G" | "g" | "GiB" => 30,
        _ => return Err(format!("{text:?}: a size is a number of bytes, or with K, M or G")),
    };
    let size = digits.parse::<u64>().ok().and_then(|n| n.checked_mul(1 << shift)).filter(|n| *n > 0);
    size.ok_or_else(|| format!("{text:?} is not a size above 0"))
}

fn parse_mode(text: &str) -> Result<u16, String> {
    let mode =
        u16::from_str_radix(text.trim_start_matches("0o"), 8).map_err(|_| format!("{text:?} is not an octal mode"))?;
    if mode > 0o7777 {
        return Err(format!("{text:?} is larger than 7777"));
    }
    Ok(mode)
}

impl MountArgs {
    /// The library's configuration for these arguments.
    pub fn into_config(self, file: ConfigFile) -> MountConfig {
        // SAFETY: getuid/getgid cannot fail and have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let timeout = Duration::from_secs(self.aws.timeout);
        let source = self.aws.into_source(!self.no_verify_credentials);
        let mut services: Vec<Service> = self.services.iter().map(|s| s.service()).collect();
        services.sort();
        services.dedup();
        MountConfig {
            mountpoint: self.mountpoint,
            foreground: self.foreground,
            source,
            cache: CacheSettings {
                ttl: Duration::from_secs(self.cache_ttl),
                capacity: self.cache_size,
                byte_capacity: self.cache_bytes,
                max_stale: Duration::from_secs(self.max_stale),
                max_backoff: Duration::from_secs(self.max_backoff),
                patience: timeout + PATIENCE_MARGIN,
            },
            fs: FsConfig {
                uid: self.uid.unwrap_or(uid),
                gid: self.gid.unwrap_or(gid),
                file_mode: self.file_mode,
                dir_mode: self.dir_mode,
                json_keys: self.json_keys == OnOff::On,
                read_only: self.read_only,
                allow_delete: self.allow_delete,
                new_parameter_kind: self.new_parameter_type.kind(),
                rules: file.rules,
                views: file.views,
            },
            allow_other: self.allow_other,
            ps_prefix: normalize_ps_prefix(&self.ps_prefix),
            sm_prefix: normalize_sm_prefix(&self.sm_prefix),
            services,
            on_change: file.on_change,
            warm_cache: match (self.cache_dir, self.cache_key_file) {
                (Some(dir), Some(key_file)) => Some(WarmCacheFiles { dir, key_file }),
                _ => None,
            },
            lock_memory: self.lock_memory,
            seccomp: !self.no_seccomp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secretfs::fs::{DEFAULT_DIR_MODE, DEFAULT_FILE_MODE};

    #[test]
    fn defaults_match_the_design() {
        let cli = Cli::parse_from(["secretfs", "mount", "/mnt/s"]);
        let Command::Mount(args) = cli.command else { panic!("not a mount") };
        let config = args.into_config(ConfigFile::default());
        assert_eq!(config.cache, CacheSettings::default());
        assert_eq!(config.services, Service::ALL);
        let Source::Aws(aws) = &config.source else { panic!("not AWS") };
        assert_eq!(**aws, AwsSettings::default());
        assert_eq!((config.fs.file_mode, config.fs.dir_mode), (DEFAULT_FILE_MODE, DEFAULT_DIR_MODE));
        assert!(config.fs.json_keys && !config.fs.read_only && !config.foreground);
        assert_eq!((config.ps_prefix.as_str(), config.sm_prefix.as_str()), ("/", ""));
        assert_eq!(config.fs, FsConfig { uid: config.fs.uid, gid: config.fs.gid, ..FsConfig::for_owner(0, 0) });
    }

    #[test]
    fn write_options() {
        let cli = Cli::parse_from(["secretfs", "mount", "/m", "--allow-delete", "--new-parameter-type", "stringlist"]);
        let Command::Mount(args) = cli.command else { panic!("not a mount") };
        let config = args.into_config(ConfigFile::default());
        assert!(config.fs.allow_delete);
        assert_eq!(config.fs.new_parameter_kind, ValueKind::StringList);
        assert!(Cli::try_parse_from(["secretfs", "mount", "/m", "--allow-delete", "--read-only"]).is_err());
        assert!(Cli::try_parse_from(["secretfs", "mount", "/m", "--new-parameter-type", "Binary"]).is_err());
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("128M"), Ok(128 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("0").is_err() && parse_size("12X").is_err() && parse_size("M").is_err());
    }

    #[test]
    fn modes_are_octal_and_bounded() {
        assert_eq!(parse_mode("0440"), Ok(0o440));
        assert_eq!(parse_mode("755"), Ok(0o755));
        assert!(parse_mode("9").is_err());
        assert!(parse_mode("77777").is_err());
    }
}

#[cfg(test)]
mod freshness_option_tests {
    use super::*;

    #[test]
    fn freshness_identity_and_service_options() {
        let cli = Cli::parse_from([
            "secretfs",
            "mount",
            "/m",
            "--services",
            "ps",
            "--timeout",
            "1",
            "--retries",
            "1",
            "--max-stale",
            "60",
            "--role-arn",
            "arn:aws:iam::123456789012:role/r",
            "--external-id",
            "x",
            "--ps-max-tps",
            "5",
        ]);
        let Command::Mount(args) = cli.command else { panic!("not a mount") };
        let config = args.into_config(ConfigFile::default());
        assert_eq!(config.services, [Service::ParameterStore]);
        assert_eq!(config.cache.max_stale, Duration::from_secs(60));
        let Source::Aws(aws) = config.source else { panic!("not AWS") };
        assert_eq!((aws.timeout, aws.attempts, aws.ps_max_tps), (Duration::from_secs(1), 1, 5));
        assert_eq!(aws.assume_role.unwrap().external_id.as_deref(), Some("x"));
        assert!(Cli::try_parse_from(["secretfs", "mount", "/m", "--external-id", "x"]).is_err());
        assert!(Cli::try_parse_from(["secretfs", "mount", "/m", "--services", "s3"]).is_err());
    }
}
