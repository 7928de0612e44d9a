//! Shared AWS plumbing: SDK configuration, the async bridge, and SDK error classification.

pub mod parameter_store;
pub mod secrets_manager;

use std::future::Future;
use std::time::{Duration, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_ssm::config::http::HttpResponse;
use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ssm::primitives::DateTime;
use tokio::runtime::Handle;

use crate::error::{Error, Result};

/// Attempts per API call, including the first (s1crets uses 3).
pub const MAX_ATTEMPTS: u32 = 3;
/// Time limit of one attempt (s1crets uses 5 s).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time limit to open a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Where and as whom to reach AWS; `None` leaves the choice to the standard AWS chain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// `--region`.
    pub region: Option<String>,
    /// `--profile`.
    pub profile: Option<String>,
    /// `--endpoint-url`.
    pub endpoint_url: Option<String>,
}

/// Blocks on SDK futures from FUSE threads through a stored runtime handle.
#[derive(Clone, Debug)]
pub struct Bridge {
    handle: Handle,
}

impl Bridge {
    /// A bridge onto the runtime behind `handle`.
    pub fn new(handle: Handle) -> Self {
        Bridge { handle }
    }

    /// Run `future` to completion. Must not be called from a runtime worker thread.
    pub fn run<F: Future>(&self, future: F) -> F::Output {
        self.handle.block_on(future)
    }
}

/// Load the SDK configuration and check that a region and credentials are there.
pub fn load_config(bridge: &Bridge, settings: &AwsSettings) -> Result<SdkConfig> {
    bridge.run(async {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            );
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let config = loader.load().await;
        if config.region().is_none() {
            return Err(Error::Config(
                "no AWS region: pass --region or set AWS_REGION (or a region in your AWS profile)".into(),
            ));
        }
        let Some(credentials) = config.credentials_provider() else {
            return Err(Error::Config("no AWS credentials provider is configured".into()));
        };
        credentials
            .provide_credentials()
            .await
            .map_err(|e| Error::Config(format!("no AWS credentials: {}", error_chain(&e))))?;
        Ok(config)
    })
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
        "AccessDeniedException"
        | "AccessDenied"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "ExpiredTokenException"
        | "DecryptionFailure"
        | "KMSAccessDeniedException" => Error::AccessDenied(message),
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "InternalServerError"
        | "InternalFailure"
        | "InternalServiceError"
        | "ServiceUnavailable" => Error::Transient(message),
        "ParameterPatternMismatchException"
        | "ValidationException"
        | "InvalidParameterException"
        | "InvalidRequestException"
        | "ParameterLimitExceeded" => Error::InvalidInput(message),
        "LimitExceededException" | "ParameterMaxVersionLimitExceeded" => {
            log::warn!("the service refused a write because of a limit (writes to one name too fast, or too many versions): {message}");
            Error::Transient(message)
        }
        _ if status >= 500 || status == 429 => Error::Transient(message),
        _ if status == 403 => Error::AccessDenied(message),
        _ => Error::Service(message),
    }
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
    }
}
