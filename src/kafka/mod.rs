//! Everything that speaks to a broker. This file: authentication of any client (producer
//! or consumer), to the downstream or the source cluster: `RELAY_AUTH = none | tls | scram | iam`.
//!
//! The mode decides what the producer adds to its librdkafka configuration:
//!
//! | mode | `security.protocol` | `sasl.mechanisms` | credentials |
//! |---|---|---|---|
//! | `none` | `plaintext` | - | - |
//! | `tls` | `ssl` | - | optional client certificate and key |
//! | `scram` | `sasl_ssl` | `SCRAM-SHA-512` | Secrets Manager secret (`RELAY_SCRAM_SECRET_ARN`) or `RELAY_SCRAM_USERNAME`/`RELAY_SCRAM_PASSWORD` |
//! | `iam` | `sasl_ssl` | `OAUTHBEARER` | MSK IAM tokens signed with the function's role credentials |
//!
//! Unset, the mode is [`AuthMode::Auto`]: `iam` when running in Lambda against an MSK
//! cluster (the event came from an MSK cluster ARN and `RELAY_BROKERS` is unset, or every
//! `RELAY_BROKERS` host is an `amazonaws.com` name), `none` otherwise (local runs, the
//! embedded mock cluster, self-managed Kafka). See [`resolve_mode`].
//!
//! Secrets (passwords, key passwords) are held in [`Secret`], whose `Debug` prints a
//! placeholder and which has no `Display`; librdkafka log lines pass through
//! [`Redactor`] before they reach the log. Secret values never enter error messages.
//!
//! IAM tokens are made by `aws-msk-iam-sasl-signer` when librdkafka asks for one (at
//! start and again before the 15-minute token expires). librdkafka asks on the
//! producer's own polling thread, never a tokio worker; the signing runs on a short-lived
//! thread that borrows the tokio runtime for the credential lookup, so no tokio worker
//! ever blocks on it.

pub(crate) mod group;
pub mod producer;
pub(crate) mod transaction;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use aws_config::{Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

pub use crate::config::auth::{AuthMode, AuthSettings, ClientCertificate, Secret, TlsFiles};
use crate::error::ConfigError;
use crate::secrets::{Credentials, ScramCredentials};

/// How long one IAM token generation may take before librdkafka is told it failed
/// (it retries on its own schedule).
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Decides [`AuthMode::Auto`]: `iam` in Lambda when the downstream cluster is MSK,
/// else `none`. `brokers_from_event` says the brokers are the event's `bootstrapServers`
/// (no `RELAY_BROKERS`); `event_source_arn` is the event's `eventSourceArn`.
pub(crate) fn resolve_mode(
    settings: &AuthSettings,
    brokers: &str,
    brokers_from_event: bool,
    event_source_arn: Option<&str>,
) -> AuthMode {
    if settings.mode != AuthMode::Auto {
        return settings.mode;
    }
    if !settings.in_lambda {
        return AuthMode::None;
    }
    let msk_event = event_source_arn.is_some_and(is_msk_cluster_arn);
    let msk_hosts = {
        let mut hosts = brokers
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .peekable();
        hosts.peek().is_some()
            && hosts.all(|b| {
                let host = b.rsplit_once(':').map_or(b, |(h, _)| h);
                host.ends_with(".amazonaws.com")
            })
    };
    if (brokers_from_event && msk_event) || msk_hosts {
        AuthMode::Iam
    } else {
        AuthMode::None
    }
}

/// A librdkafka duration property (`name`, in milliseconds) as the client will have it:
/// the last of `properties` that sets it, else `default`. `variable` is the environment
/// variable that sets it, for the error when it is no number.
pub(crate) fn property_millis(
    properties: &[(String, String)],
    name: &str,
    variable: &str,
    default: std::time::Duration,
) -> Result<std::time::Duration, String> {
    let Some((_, value)) = properties.iter().rev().find(|(n, _)| n == name) else {
        return Ok(default);
    };
    // librdkafka reads the text with C's `strtol` into an `int`: a leading zero makes
    // it octal, and a number past 2^31 - 1 is cut. Only the decimal numbers both read
    // alike are taken, so that the check is of the value the client will have.
    let digits = value.trim();
    match digits.parse::<u64>() {
        Ok(millis)
            if millis <= i32::MAX as u64
                && digits.bytes().all(|b| b.is_ascii_digit())
                && (digits == "0" || !digits.starts_with('0')) =>
        {
            Ok(std::time::Duration::from_millis(millis))
        }
        _ => Err(format!(
            "{variable}={value:?} is not a number of milliseconds (decimal digits without \
             a leading zero, at most {})",
            i32::MAX
        )),
    }
}

/// `arn:<partition>:kafka:<region>:<account>:cluster/<name>/<uuid>`.
pub(crate) fn is_msk_cluster_arn(arn: &str) -> bool {
    let mut parts = arn.splitn(6, ':');
    parts.next() == Some("arn")
        && parts.next().is_some_and(|p| p.starts_with("aws"))
        && parts.next() == Some("kafka")
        && parts.nth(1).is_some()
        && parts.next().is_some_and(|r| r.starts_with("cluster/"))
}

/// Makes MSK IAM tokens from a credential provider.
#[derive(Clone)]
pub struct IamTokens {
    region: Region,
    provider: SharedCredentialsProvider,
    runtime: tokio::runtime::Handle,
}

impl fmt::Debug for IamTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IamTokens")
            .field("region", &self.region.as_ref())
            .finish_non_exhaustive()
    }
}

/// A signed MSK IAM token and when it expires.
#[derive(Debug, Clone)]
pub struct IamToken {
    /// The base64url-encoded presigned `kafka-cluster:Connect` URL.
    pub token: String,
    /// Expiry, milliseconds since the epoch (what librdkafka expects).
    pub expires_at_ms: i64,
}

impl IamTokens {
    /// Tokens for `region` from `provider`'s credentials. `runtime` serves the
    /// credential lookups (which may do I/O, e.g. a container credentials endpoint).
    pub fn new(
        region: Region,
        provider: SharedCredentialsProvider,
        runtime: tokio::runtime::Handle,
    ) -> IamTokens {
        IamTokens {
            region,
            provider,
            runtime,
        }
    }

    /// From the AWS configuration loaded at init.
    pub(crate) fn from_config(aws: &SdkConfig) -> Result<IamTokens, ConfigError> {
        let region = aws.region().cloned().ok_or_else(|| {
            ConfigError::Auth("RELAY_AUTH=iam needs AWS_REGION (set by Lambda)".to_owned())
        })?;
        let provider = aws.credentials_provider().ok_or_else(|| {
            ConfigError::Auth("no AWS credential provider for RELAY_AUTH=iam".to_owned())
        })?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError::Auth("RELAY_AUTH=iam must be set up inside the tokio runtime".to_owned())
        })?;
        Ok(IamTokens::new(region, provider, runtime))
    }

    /// Signs a fresh token.
    pub async fn token(&self) -> Result<IamToken, String> {
        let (token, expires_at_ms) =
            aws_msk_iam_sasl_signer::generate_auth_token_from_credentials_provider(
                self.region.clone(),
                self.provider.clone(),
            )
            .await
            .map_err(|e| format!("cannot sign an MSK IAM token: {e}"))?;
        Ok(IamToken {
            token,
            expires_at_ms,
        })
    }

    /// Signs a token from a thread that is not a tokio worker (librdkafka's polling
    /// thread): the work runs on a scoped helper thread that enters the runtime, so the
    /// caller may even be inside a runtime (e.g. a `flush` from async code).
    pub(crate) fn token_blocking(&self) -> Result<IamToken, String> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    self.runtime.block_on(async {
                        tokio::time::timeout(TOKEN_TIMEOUT, self.token())
                            .await
                            .map_err(|_| {
                                format!(
                                    "MSK IAM token not signed within {} s",
                                    TOKEN_TIMEOUT.as_secs()
                                )
                            })?
                    })
                })
                .join()
                .map_err(|_| "MSK IAM token signing panicked".to_owned())?
        })
    }
}

/// What the producer needs to authenticate in the resolved mode.
#[derive(Debug, Clone, Default)]
pub enum ClientAuth {
    /// Plaintext.
    #[default]
    None,
    /// TLS.
    Tls(TlsFiles),
    /// SCRAM-SHA-512 over TLS.
    Scram(TlsFiles, ScramCredentials),
    /// OAUTHBEARER with MSK IAM tokens over TLS.
    Iam(TlsFiles, IamTokens),
}

impl ClientAuth {
    /// Builds the producer's authentication for a resolved mode.
    pub fn for_mode(
        mode: AuthMode,
        settings: &AuthSettings,
        credentials: &Credentials,
    ) -> Result<ClientAuth, ConfigError> {
        let mut tls = settings.tls.clone();
        tls.client_certificate = credentials.client_certificate.clone();
        if settings.client_cert_secret_arn.is_some() && tls.client_certificate.is_none() {
            return Err(ConfigError::Auth(
                "the client certificate secret was not fetched (the relay was not initialised)"
                    .to_owned(),
            ));
        }
        Ok(match mode {
            AuthMode::Auto | AuthMode::None => ClientAuth::None,
            AuthMode::Tls => {
                settings.validate()?;
                ClientAuth::Tls(tls)
            }
            AuthMode::Scram => {
                settings.validate()?;
                let inline = settings
                    .scram_username
                    .clone()
                    .zip(settings.scram_password.clone());
                let scram = credentials
                    .scram
                    .clone()
                    .or_else(|| {
                        inline.map(|(username, password)| ScramCredentials { username, password })
                    })
                    .ok_or_else(|| {
                        ConfigError::Auth(
                            "the SCRAM secret was not fetched (the relay was not initialised)"
                                .to_owned(),
                        )
                    })?;
                ClientAuth::Scram(tls, scram)
            }
            AuthMode::Iam => {
                let aws = credentials.aws.as_ref().ok_or_else(|| {
                    ConfigError::Auth("RELAY_AUTH=iam needs AWS_REGION (set by Lambda)".to_owned())
                })?;
                ClientAuth::Iam(tls, IamTokens::from_config(aws)?)
            }
        })
    }

    /// The mode this authentication implements.
    pub fn mode(&self) -> AuthMode {
        match self {
            ClientAuth::None => AuthMode::None,
            ClientAuth::Tls(_) => AuthMode::Tls,
            ClientAuth::Scram(..) => AuthMode::Scram,
            ClientAuth::Iam(..) => AuthMode::Iam,
        }
    }

    /// Adds the mode's librdkafka properties to `config`.
    pub(crate) fn apply(&self, config: &mut ClientConfig) {
        let tls = match self {
            ClientAuth::None => {
                config.set("security.protocol", "plaintext");
                return;
            }
            ClientAuth::Tls(tls) => {
                config.set("security.protocol", "ssl");
                tls
            }
            ClientAuth::Scram(tls, scram) => {
                config
                    .set("security.protocol", "sasl_ssl")
                    .set("sasl.mechanisms", "SCRAM-SHA-512")
                    .set("sasl.username", &scram.username)
                    .set("sasl.password", scram.password.expose());
                tls
            }
            ClientAuth::Iam(tls, _) => {
                config
                    .set("security.protocol", "sasl_ssl")
                    .set("sasl.mechanisms", "OAUTHBEARER");
                tls
            }
        };
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        if let Some(ca) = &tls.ca_file {
            config.set("ssl.ca.location", path(ca));
        }
        if let Some(client) = &tls.client_certificate {
            config
                .set("ssl.certificate.pem", &client.certificate)
                .set("ssl.key.pem", client.private_key.expose());
            if let Some(password) = &client.private_key_password {
                config.set("ssl.key.password", password.expose());
            }
        }
        if let Some(cert) = &tls.cert_file {
            config.set("ssl.certificate.location", path(cert));
        }
        if let Some(key) = &tls.key_file {
            config.set("ssl.key.location", path(key));
        }
        if let Some(password) = &tls.key_password {
            config.set("ssl.key.password", password.expose());
        }
    }

    /// The secret strings this authentication hands to librdkafka (for redaction).
    pub(crate) fn secrets(&self) -> Vec<Secret> {
        let tls = match self {
            ClientAuth::None => return Vec::new(),
            ClientAuth::Tls(tls) | ClientAuth::Scram(tls, _) | ClientAuth::Iam(tls, _) => tls,
        };
        let mut secrets: Vec<Secret> = tls.key_password.iter().cloned().collect();
        if let Some(client) = &tls.client_certificate {
            secrets.push(client.private_key.clone());
            secrets.extend(client.private_key_password.iter().cloned());
        }
        if let ClientAuth::Scram(_, scram) = self {
            secrets.push(scram.password.clone());
        }
        secrets
    }

    /// The IAM token source, in `iam` mode.
    pub(crate) fn iam(&self) -> Option<&IamTokens> {
        match self {
            ClientAuth::Iam(_, tokens) => Some(tokens),
            _ => None,
        }
    }
}

/// Removes known secret values from text before it is logged.
#[derive(Debug, Clone, Default)]
pub(crate) struct Redactor {
    secrets: Vec<Secret>,
}

impl Redactor {
    /// Redacts these secrets (empty ones are ignored).
    pub(crate) fn new(secrets: Vec<Secret>) -> Redactor {
        Redactor {
            secrets: secrets
                .into_iter()
                .filter(|s| !s.expose().is_empty())
                .collect(),
        }
    }

    /// `text` with every secret replaced by `<redacted>`.
    pub(crate) fn redact<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        let mut text = std::borrow::Cow::Borrowed(text);
        for secret in &self.secrets {
            if text.contains(secret.expose()) {
                text = std::borrow::Cow::Owned(text.replace(secret.expose(), "<redacted>"));
            }
        }
        text
    }
}

/// The librdkafka context of every client (producer and source consumer): logs through `tracing` with secrets redacted,
/// and answers librdkafka's OAUTHBEARER token requests in IAM mode.
///
/// librdkafka asks for a token on the producer's polling thread (or inside `flush`),
/// never on a tokio worker; [`IamTokens::token_blocking`] signs on a helper thread.
#[derive(Debug, Default)]
pub struct RelayContext {
    iam: Option<IamTokens>,
    redactor: Redactor,
    /// Set when the brokers refused the producer's login (SASL authentication); shared
    /// with the [`producer::Sink`] (librdkafka's callbacks reach only the context).
    pub(crate) auth_refused: Arc<AtomicBool>,
}

impl RelayContext {
    /// The context for an authentication mode.
    pub fn new(auth: &ClientAuth) -> RelayContext {
        RelayContext {
            iam: auth.iam().cloned(),
            redactor: Redactor::new(auth.secrets()),
            auth_refused: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl ClientContext for RelayContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        let message = self.redactor.redact(log_message);
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", facility = fac, "{message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed)
        ) {
            self.auth_refused.store(true, Ordering::Relaxed);
        }
        let error = error.to_string();
        tracing::error!(
            target: "librdkafka",
            error = %self.redactor.redact(&error),
            "{}",
            self.redactor.redact(reason)
        );
    }

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let tokens = self
            .iam
            .as_ref()
            .ok_or("OAUTHBEARER tokens are only made with RELAY_AUTH=iam")?;
        let token = tokens.token_blocking().inspect_err(|e| {
            tracing::error!(target: "librdkafka", error = %e, "MSK IAM token refresh failed");
        })?;
        tracing::debug!(
            expires_at_ms = token.expires_at_ms,
            "MSK IAM token refreshed"
        );
        Ok(OAuthToken {
            token: token.token,
            principal_name: String::new(),
            lifetime_ms: token.expires_at_ms,
        })
    }
}

/// A consumed message's headers, in order. A name that is not UTF-8 is read with
/// U+FFFD in place of what is not (rdkafka's own iterator panics on it, which would stop
/// every member that reads the record); values are bytes as they came.
pub(crate) fn headers_of(
    message: &rdkafka::message::BorrowedMessage<'_>,
) -> Vec<(String, Vec<u8>)> {
    use rdkafka::bindings as rd;
    let mut list = std::ptr::null_mut();
    // SAFETY: `message` owns its native message for the borrow; the headers it returns,
    // and each name and value read from them, live as long as that message, and are
    // copied out before this function returns.
    unsafe {
        if rd::rd_kafka_message_headers(message.ptr(), &mut list)
            != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
            || list.is_null()
        {
            return Vec::new();
        }
        let mut headers = Vec::with_capacity(rd::rd_kafka_header_cnt(list));
        let mut index = 0;
        loop {
            let (mut name, mut value, mut size) = (std::ptr::null(), std::ptr::null(), 0);
            if rd::rd_kafka_header_get_all(list, index, &mut name, &mut value, &mut size)
                != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                || name.is_null()
            {
                return headers;
            }
            let name = std::ffi::CStr::from_ptr(name)
                .to_string_lossy()
                .into_owned();
            let value = if value.is_null() {
                Vec::new()
            } else {
                std::slice::from_raw_parts(value.cast::<u8>(), size).to_vec()
            };
            headers.push((name, value));
            index += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A duration property is read as librdkafka will read it, or refused: octal (a
    /// leading zero) and numbers past an `int` would make the check and the client
    /// disagree.
    #[test]
    fn duration_properties_are_read_as_the_client_reads_them() {
        let read = |value: &str| {
            property_millis(
                &[("max.poll.interval.ms".to_owned(), value.to_owned())],
                "max.poll.interval.ms",
                "VARIABLE",
                std::time::Duration::from_secs(300),
            )
            .map(|d| d.as_millis())
        };
        assert_eq!(read("6000"), Ok(6000));
        assert_eq!(read(" 6000 "), Ok(6000));
        assert_eq!(read("0"), Ok(0));
        assert_eq!(read("2147483647"), Ok(2_147_483_647));
        for refused in [
            "0100000",
            "4294968296",
            "2147483648",
            "+6000",
            "0x10",
            "soon",
            "",
        ] {
            let error = read(refused).expect_err(refused);
            assert!(error.contains("VARIABLE"), "{error}");
        }
        assert_eq!(
            property_millis(
                &[],
                "max.poll.interval.ms",
                "VARIABLE",
                std::time::Duration::from_secs(300)
            ),
            Ok(std::time::Duration::from_secs(300))
        );
    }

    fn lambda(mode: AuthMode) -> AuthSettings {
        AuthSettings {
            mode,
            in_lambda: true,
            region: Some("eu-west-1".to_owned()),
            ..AuthSettings::default()
        }
    }

    /// The documented default: iam in Lambda against MSK, none otherwise.
    #[test]
    fn auto_mode_rule() {
        let msk_arn = "arn:aws:kafka:eu-west-1:123456789012:cluster/dms/0b1c2d3e-1234-5678-9abc-def012345678-2";
        let msk_brokers = "b-1.dms.abc123.c2.kafka.eu-west-1.amazonaws.com:9098,b-2.dms.abc123.c2.kafka.eu-west-1.amazonaws.com:9098";
        let auto = lambda(AuthMode::Auto);
        assert_eq!(
            resolve_mode(&auto, "10.0.0.5:9092", true, Some(msk_arn)),
            AuthMode::Iam
        );
        assert_eq!(resolve_mode(&auto, msk_brokers, false, None), AuthMode::Iam);
        // RELAY_BROKERS pointing elsewhere: the event's cluster says nothing about it.
        assert_eq!(
            resolve_mode(&auto, "kafka.internal:9092", false, Some(msk_arn)),
            AuthMode::None
        );
        // Self-managed Kafka event source.
        assert_eq!(
            resolve_mode(
                &auto,
                "kafka.internal:9092",
                true,
                Some("kafka.internal:9092")
            ),
            AuthMode::None
        );
        let local = AuthSettings::default();
        assert_eq!(
            resolve_mode(&local, msk_brokers, true, Some(msk_arn)),
            AuthMode::None
        );
        // An explicit mode always wins.
        let explicit = lambda(AuthMode::Scram);
        assert_eq!(
            resolve_mode(&explicit, msk_brokers, true, Some(msk_arn)),
            AuthMode::Scram
        );
    }

    #[test]
    fn msk_cluster_arns() {
        assert!(is_msk_cluster_arn(
            "arn:aws:kafka:us-east-1:123456789012:cluster/c/uuid-1"
        ));
        assert!(is_msk_cluster_arn(
            "arn:aws-cn:kafka:cn-north-1:123456789012:cluster/c/uuid-1"
        ));
        assert!(!is_msk_cluster_arn(
            "arn:aws:kafka:us-east-1:123456789012:topic/c/uuid-1/t"
        ));
        assert!(!is_msk_cluster_arn("arn:aws:sqs:us-east-1:123456789012:q"));
        assert!(!is_msk_cluster_arn(""));
    }

    /// Each mode's required variables are checked, naming what is missing.
    #[test]
    fn validation_names_what_is_missing() {
        let mut scram = lambda(AuthMode::Scram);
        let err = scram.validate().expect_err("no credentials").to_string();
        assert!(err.contains("RELAY_SCRAM_SECRET_ARN"), "{err}");
        scram.scram_username = Some("relay".to_owned());
        let err = scram.validate().expect_err("no password").to_string();
        assert!(err.contains("RELAY_SCRAM_PASSWORD"), "{err}");
        scram.scram_password = Some(Secret::new("pw"));
        scram.validate().expect("inline credentials");
        scram.scram_secret_arn = Some("arn:aws:secretsmanager:x".to_owned());
        assert!(scram.validate().is_err(), "both sources at once");

        let mut iam = lambda(AuthMode::Iam);
        iam.region = None;
        let err = iam.validate().expect_err("no region").to_string();
        assert!(err.contains("AWS_REGION"), "{err}");

        let mut tls = lambda(AuthMode::Tls);
        tls.tls.ca_file = Some(PathBuf::from("/nonexistent/ca.pem"));
        let err = tls.validate().expect_err("missing CA").to_string();
        assert!(
            err.contains("RELAY_TLS_CA_FILE") && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );
    }

    #[test]
    fn secrets_do_not_debug_print() {
        let creds = ScramCredentials {
            username: "relay".to_owned(),
            password: Secret::new("hunter2-long"),
        };
        let text = format!(
            "{creds:?} {:?}",
            ClientAuth::Scram(TlsFiles::default(), creds.clone())
        );
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("relay"), "{text}");
    }

    #[test]
    fn redactor_replaces_every_secret() {
        let r = Redactor::new(vec![Secret::new("s3cr3t"), Secret::new("")]);
        assert_eq!(r.redact("a s3cr3t b s3cr3t"), "a <redacted> b <redacted>");
        assert_eq!(r.redact("nothing here"), "nothing here");
    }
}
