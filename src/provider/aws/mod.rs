//! Shared AWS plumbing: SDK configuration, the async bridge, and SDK error classification.

pub mod call;
pub mod credentials;

use crate::provider::ps_options::PsOptions;
pub mod parameter_store;
pub mod secrets_manager;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_ssm::config::http::HttpResponse;
use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ssm::primitives::DateTime;
use tokio::runtime::Handle;

use crate::error::{Error, Result};
use credentials::{ChainBuilder, Renewable};

/// Attempts per API call, including the first (s1crets uses 3).
pub const DEFAULT_ATTEMPTS: u32 = 3;
/// How long a request may take, retries included (s1crets uses 5 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest time to open a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default Parameter Store requests a second: half the 40 TPS every client of the account and
/// region shares, leaving the rest to other clients.
pub const DEFAULT_PS_TPS: u32 = 20;
/// Default Secrets Manager requests a second: half of BatchGetSecretValue's and ListSecrets'
/// 100 TPS (GetSecretValue and DescribeSecret allow far more).
pub const DEFAULT_SM_TPS: u32 = 50;

/// A role to assume through STS (s1crets' `sts_args`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssumeRole {
    /// `--role-arn`.
    pub role_arn: String,
    /// `--role-session-name` (default `secretfs`).
    pub session_name: Option<String>,
    /// `--external-id`.
    pub external_id: Option<String>,
    /// `--role-duration`.
    pub duration: Option<Duration>,
}

/// Where and as whom to reach AWS, and how patiently; `None` leaves the choice to the
/// standard AWS chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsSettings {
    /// `--region`.
    pub region: Option<String>,
    /// `--profile`.
    pub profile: Option<String>,
    /// `--endpoint-url`.
    pub endpoint_url: Option<String>,
    /// `--role-arn` and its companions.
    pub assume_role: Option<AssumeRole>,
    /// Check the credentials once at mount (STS GetCallerIdentity).
    pub verify_credentials: bool,
    /// `--timeout`: how long one request may take, retries included.
    pub timeout: Duration,
    /// `--retries`: attempts per request, the first included.
    pub attempts: u32,
    /// `--max-tps` for Parameter Store.
    pub ps_max_tps: u32,
    /// `--max-tps` for Secrets Manager.
    pub sm_max_tps: u32,
    /// `--ps-filter` and `--no-decrypt`.
    pub ps_options: PsOptions,
    /// `--version-stage`: the stage plain secret names show.
    pub version_stage: String,
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            region: None,
            profile: None,
            endpoint_url: None,
            assume_role: None,
            verify_credentials: true,
            timeout: DEFAULT_TIMEOUT,
            attempts: DEFAULT_ATTEMPTS,
            ps_max_tps: DEFAULT_PS_TPS,
            sm_max_tps: DEFAULT_SM_TPS,
            ps_options: PsOptions::default(),
            version_stage: secrets_manager::CURRENT_STAGE.to_string(),
        }
    }
}

/// Blocks on SDK futures from non-runtime threads through a stored runtime handle. Once
/// [`Bridge::close`]d, calls in progress end at once with a transient error and new calls
/// never start, so no SDK call is left running (and touching the runtime's timers) while the
/// runtime shuts down.
#[derive(Clone, Debug)]
pub struct Bridge {
    handle: Handle,
    closed: Arc<tokio::sync::watch::Sender<bool>>,
    in_flight: Arc<AtomicUsize>,
}

/// Counts one call in progress for as long as it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Bridge {
    /// A bridge onto the runtime behind `handle`.
    pub fn new(handle: Handle) -> Self {
        Bridge { handle, closed: Arc::new(tokio::sync::watch::Sender::new(false)), in_flight: Arc::default() }
    }

    /// Run `future` to completion, or until the bridge is closed. Must not be called from a
    /// runtime worker thread.
    pub fn run<T>(&self, future: impl Future<Output = Result<T>>) -> Result<T> {
        let mut closed = self.closed.subscribe();
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let _in_flight = InFlight(&self.in_flight);
        self.handle.block_on(async move {
            tokio::select! {
                biased;
                _ = closed.wait_for(|closed| *closed) => Err(Error::Transient("secretfs is stopping".into())),
                outcome = future => outcome,
            }
        })
    }

    /// End the calls in progress and refuse new ones; returns once none runs, or after `grace`.
    pub fn close(&self, grace: Duration) {
        self.closed.send_replace(true);
        let ends = std::time::Instant::now() + grace;
        while self.in_flight.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < ends {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The SDK app name every request's User-Agent carries (`app/secretfs-0.1.0`), so CloudTrail
/// tells secretfs's calls apart. An app name may not hold `/`, hence the `-`.
pub fn app_name() -> aws_config::AppName {
    aws_config::AppName::new(concat!("secretfs-", env!("CARGO_PKG_VERSION"))).expect("a valid app name")
}

/// The SDK configuration, and the credentials its clients use (which [`call::Caller`] renews
/// when AWS refuses them).
#[derive(Clone, Debug)]
pub struct AwsConfig {
    /// What the clients are built from.
    pub sdk: SdkConfig,
    /// The clients' credentials.
    pub credentials: Arc<Renewable>,
}

/// Load the SDK configuration, assume the role if one is given, and check that a region and
/// working credentials are there (one STS GetCallerIdentity call unless switched off).
pub fn load_config(bridge: &Bridge, settings: &AwsSettings) -> Result<AwsConfig> {
    bridge.run(async {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .app_name(app_name())
            .retry_config(RetryConfig::standard().with_max_attempts(settings.attempts.max(1)))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT.min(settings.timeout))
                    .operation_timeout(settings.timeout)
                    .build(),
            );
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &settings.endpoint_url {
            check_endpoint_url(url)?;
            loader = loader.endpoint_url(url);
        }
        // The credential chain is built by `chain_builder` (and again at each renewal).
        let loaded = loader.no_credentials().load().await;
        if loaded.region().is_none() {
            return Err(Error::Config(
                "no AWS region: pass --region or set AWS_REGION (or a region in your AWS profile)".into(),
            ));
        }
        let renewable = Arc::new(Renewable::new(chain_builder(&loaded, settings)));
        let shared: Arc<dyn ProvideCredentials> = renewable.clone();
        let config = loaded
            .into_builder()
            .credentials_provider(SharedCredentialsProvider::new(shared))
            .identity_cache(IdentityCache::no_cache())
            .build();
        let config = AwsConfig { sdk: config, credentials: renewable };
        let profile = settings.profile.as_ref().map(|p| format!(" (profile {p:?})")).unwrap_or_default();
        let deadline = settings.timeout;
        if settings.verify_credentials {
            // Through the clients' credentials: an assumed role is assumed once.
            verify(&config.sdk, deadline, &profile).await?;
            return Ok(config);
        }
        match tokio::time::timeout(deadline, config.credentials.provide_credentials()).await {
            Err(_) => Err(Error::AwsAccess(format!("no AWS credentials{profile} within {}s", deadline.as_secs_f64()))),
            Ok(Err(e)) => Err(Error::AwsAccess(format!("no AWS credentials{profile}: {}", error_chain(&e)))),
            Ok(Ok(_)) => Ok(config),
        }
    })
}

/// A Parameter Store client on `sdk` whose requests the SDK does not retry: [`call::Caller`]
/// retries them, each attempt through the rate limit.
pub fn ssm_client(sdk: &SdkConfig) -> aws_sdk_ssm::Client {
    let config = aws_sdk_ssm::config::Builder::from(sdk).retry_config(RetryConfig::disabled()).build();
    aws_sdk_ssm::Client::from_conf(config)
}

/// A Secrets Manager client on `sdk` whose requests the SDK does not retry (as [`ssm_client`]).
pub fn secrets_manager_client(sdk: &SdkConfig) -> aws_sdk_secretsmanager::Client {
    let config = aws_sdk_secretsmanager::config::Builder::from(sdk).retry_config(RetryConfig::disabled()).build();
    aws_sdk_secretsmanager::Client::from_conf(config)
}

/// Builds the credential chain of `loaded` (as `settings` name the profile and role) anew at
/// each call: the default chain, and the role assumed through it.
fn chain_builder(loaded: &SdkConfig, settings: &AwsSettings) -> ChainBuilder {
    let (loaded, profile, role) = (loaded.clone(), settings.profile.clone(), settings.assume_role.clone());
    Box::new(move || {
        let (loaded, profile, role) = (loaded.clone(), profile.clone(), role.clone());
        Box::pin(async move {
            let mut chain = aws_config::default_provider::credentials::DefaultCredentialsChain::builder();
            if let Some(profile) = &profile {
                chain = chain.profile_name(profile);
            }
            if let Some(region) = loaded.region() {
                chain = chain.region(region.clone());
            }
            let chain = SharedCredentialsProvider::new(chain.build().await);
            match role {
                Some(role) => assume_role(loaded.into_builder().credentials_provider(chain).build(), &role).await,
                None => chain,
            }
        })
    })
}

/// Credentials from assuming `role` with the credentials of `config`.
async fn assume_role(config: SdkConfig, role: &AssumeRole) -> SharedCredentialsProvider {
    let mut builder = aws_config::sts::AssumeRoleProvider::builder(role.role_arn.clone())
        .session_name(role.session_name.clone().unwrap_or_else(|| "secretfs".into()))
        .configure(&config);
    if let Some(id) = &role.external_id {
        builder = builder.external_id(id.clone());
    }
    if let Some(length) = role.duration {
        builder = builder.session_length(length);
    }
    SharedCredentialsProvider::new(builder.build().await)
}

/// One STS GetCallerIdentity call: proves the endpoint answers and accepts the credentials.
async fn verify(config: &SdkConfig, deadline: Duration, profile: &str) -> Result<()> {
    let sts = aws_sdk_sts::Client::new(config);
    match tokio::time::timeout(deadline, sts.get_caller_identity().send()).await {
        Err(_) => Err(Error::AwsAccess(format!(
            "cannot verify the AWS credentials{profile}: STS did not answer within {}s (--no-verify-credentials skips this check)",
            deadline.as_secs_f64()
        ))),
        Ok(Err(e)) => Err(Error::AwsAccess(format!(
            "the AWS credentials{profile} were refused or STS is unreachable: {} (--no-verify-credentials skips this check)",
            error_chain(&e)
        ))),
        Ok(Ok(identity)) => {
            tracing::info!("AWS identity {}", identity.arn().unwrap_or("(no ARN)"));
            Ok(())
        }
    }
}

/// Refuse an `--endpoint-url` that is not an http(s) URL with a host, before any call.
fn check_endpoint_url(url: &str) -> Result<()> {
    let host = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    match host {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !rest.contains(char::is_whitespace) => Ok(()),
        _ => Err(Error::Config(format!(
            "--endpoint-url {url:?} is not a URL: use http://HOST[:PORT] or https://HOST[:PORT]"
        ))),
    }
}

/// Turn an SDK error into our error: never a transient failure into NotFound.
pub fn classify<E>(err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or("Unknown");
            let message = format!("{code}: {}", service.err().message().unwrap_or("no message"));
            classify_code(code, status, message)
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Error::Transient(error_chain(&err))
        }
        _ => Error::Service(error_chain(&err)),
    }
}

/// An error and its sources on one line, each cause once.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// Classify an AWS error code (as found in service and batch error entries).
pub fn classify_code(code: &str, status: u16, message: String) -> Error {
    match code {
        "ParameterNotFound" | "ResourceNotFoundException" | "ParameterVersionNotFound" => Error::NotFound,
        "ParameterAlreadyExists" | "ResourceExistsException" => Error::AlreadyExists,
        "AccessDeniedException" | "AccessDenied" => Error::AccessDenied(message),
        "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "RequestExpired"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch" => Error::Credentials(message),
        // The value's KMS key refuses (denied, disabled, deleted, pending deletion): the value
        // may no longer be read, so a copy known from before must not be served either.
        _ if is_kms_refusal(code) => Error::AccessDenied(message),
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "InternalServerError"
        | "InternalFailure"
        | "InternalServiceError"
        | "ServiceUnavailable"
        // Secrets Manager's answer to concurrent writes of one secret: retried, then a failure.
        | "TooManyUpdatesException"
        | "KMSThrottlingException" => Error::Transient(message),
        "ParameterPatternMismatchException"
        | "ValidationException"
        | "InvalidParameterException"
        | "InvalidRequestException"
        | "ParameterLimitExceeded" => Error::InvalidInput(message),
        "LimitExceededException" | "ParameterMaxVersionLimitExceeded" => {
            tracing::warn!("the service refused a write because of a limit (writes to one name too fast, or too many versions): {message}");
            Error::Transient(message)
        }
        _ if status >= 500 || status == 429 => Error::Transient(message),
        _ if status == 403 => Error::AccessDenied(message),
        _ => Error::Service(message),
    }
}

/// Whether `code` says the KMS key protecting a value refuses to decrypt it: SSM's
/// `InvalidKeyId`, Secrets Manager's `DecryptionFailure`, and KMS's own codes as the services
/// pass them on (`KMSDisabledException`, `KMS.NotFoundException`, ...).
pub fn is_kms_refusal(code: &str) -> bool {
    let kms = code.strip_prefix("KMS.").or_else(|| code.strip_prefix("KMS"));
    matches!(code, "InvalidKeyId" | "DecryptionFailure")
        || kms.is_some_and(|rest| {
            ["AccessDenied", "Disabled", "InvalidState", "NotFound", "KeyUnavailable", "InvalidKeyUsage"]
                .iter()
                .any(|refusal| rest.starts_with(refusal))
        })
}

/// An SDK timestamp as a `SystemTime`, if it fits.
pub fn to_system_time(date: Option<&DateTime>) -> Option<SystemTime> {
    date.and_then(|d| SystemTime::try_from(*d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_server_errors_are_transient_not_missing() {
        assert!(matches!(classify_code("ThrottlingException", 400, String::new()), Error::Transient(_)));
        assert!(matches!(classify_code("Whatever", 503, String::new()), Error::Transient(_)));
        assert!(matches!(classify_code("AccessDeniedException", 400, String::new()), Error::AccessDenied(_)));
        assert_eq!(classify_code("ParameterNotFound", 400, String::new()), Error::NotFound);
        assert_eq!(classify_code("ResourceExistsException", 400, String::new()), Error::AlreadyExists);
        assert!(matches!(classify_code("ValidationException", 400, String::new()), Error::InvalidInput(_)));
        assert!(matches!(classify_code("SomethingNew", 400, String::new()), Error::Service(_)));
        assert!(matches!(classify_code("TooManyUpdatesException", 400, String::new()), Error::Transient(_)));
    }

    #[test]
    fn refused_credentials_are_not_a_denial_of_the_value() {
        for code in [
            "ExpiredToken",
            "ExpiredTokenException",
            "InvalidClientTokenId",
            "UnrecognizedClientException",
            "RequestExpired",
        ] {
            let err = classify_code(code, 400, String::new());
            assert!(matches!(err, Error::Credentials(_)), "{code}");
            assert_eq!(err.errno(), libc::EIO, "{code}: EIO, never EACCES");
        }
    }

    #[test]
    fn kms_refusals_end_access_like_access_denied() {
        for code in [
            "InvalidKeyId",
            "DecryptionFailure",
            "KMSAccessDeniedException",
            "KMSDisabledException",
            "KMSInvalidStateException",
            "KMSNotFoundException",
            "KMS.DisabledException",
            "KMS.NotFoundException",
        ] {
            assert!(matches!(classify_code(code, 400, String::new()), Error::AccessDenied(_)), "{code}");
        }
        assert!(!is_kms_refusal("KMSThrottlingException"), "KMS throttling is an outage, not a refusal");
    }
}
