//! Authentication to the downstream cluster: `RELAY_AUTH = none | tls | scram | iam`.
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

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use rdkafka::config::ClientConfig;

use crate::config::Settings;
use crate::error::{ConfigError, Error};
use crate::transform::HashKey;

/// How long one IAM token generation may take before librdkafka is told it failed
/// (it retries on its own schedule).
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

/// A value that must never be logged: `Debug` prints `"<redacted>"`, there is no
/// `Display`, and [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for handing to librdkafka.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// `RELAY_AUTH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Unset: decided by [`resolve_mode`].
    #[default]
    Auto,
    /// Plaintext, no authentication.
    None,
    /// TLS, optionally with a client certificate.
    Tls,
    /// SASL/SCRAM-SHA-512 over TLS.
    Scram,
    /// SASL/OAUTHBEARER with MSK IAM tokens over TLS.
    Iam,
}

impl AuthMode {
    /// Parses a `RELAY_AUTH` value (case-insensitive; empty means auto).
    pub fn parse(value: &str) -> Option<AuthMode> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Some(AuthMode::Auto),
            "none" | "plaintext" => Some(AuthMode::None),
            "tls" | "ssl" => Some(AuthMode::Tls),
            "scram" | "scram-sha-512" => Some(AuthMode::Scram),
            "iam" => Some(AuthMode::Iam),
            _ => None,
        }
    }

    /// The mode's name as `RELAY_AUTH` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Auto => "auto",
            AuthMode::None => "none",
            AuthMode::Tls => "tls",
            AuthMode::Scram => "scram",
            AuthMode::Iam => "iam",
        }
    }
}

/// TLS files (`RELAY_TLS_CA_FILE`, `RELAY_TLS_CERT_FILE`, `RELAY_TLS_KEY_FILE`,
/// `RELAY_TLS_KEY_PASSWORD`); used by every mode that speaks TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA bundle (PEM). Unset: the system's CA certificates.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), for clusters that authenticate clients by certificate.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key_file: Option<PathBuf>,
    /// Password of an encrypted private key.
    pub key_password: Option<Secret>,
}

/// Authentication settings as read from the environment (nothing fetched yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthSettings {
    /// `RELAY_AUTH`.
    pub mode: AuthMode,
    /// TLS files.
    pub tls: TlsFiles,
    /// `RELAY_SCRAM_SECRET_ARN`: Secrets Manager secret holding `{"username", "password"}`.
    pub scram_secret_arn: Option<String>,
    /// `RELAY_SCRAM_USERNAME`.
    pub scram_username: Option<String>,
    /// `RELAY_SCRAM_PASSWORD`.
    pub scram_password: Option<Secret>,
    /// `AWS_REGION`: where IAM tokens are signed for and Secrets Manager is called.
    pub region: Option<String>,
    /// Running inside Lambda (`AWS_LAMBDA_FUNCTION_NAME` is set).
    pub in_lambda: bool,
}

impl AuthSettings {
    /// Checks what can be checked without the network: required variables per mode,
    /// TLS files that exist.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problem = |text: String| Err(ConfigError::Auth(text));
        for (name, path) in [
            ("RELAY_TLS_CA_FILE", &self.tls.ca_file),
            ("RELAY_TLS_CERT_FILE", &self.tls.cert_file),
            ("RELAY_TLS_KEY_FILE", &self.tls.key_file),
        ] {
            if let Some(path) = path {
                if !path.is_file() {
                    return problem(format!("{name}: no such file {}", path.display()));
                }
            }
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return problem(
                "RELAY_TLS_CERT_FILE and RELAY_TLS_KEY_FILE must be set together".to_owned(),
            );
        }
        match self.mode {
            AuthMode::Scram => {
                let inline = self.scram_username.is_some() || self.scram_password.is_some();
                match (&self.scram_secret_arn, inline) {
                    (Some(_), true) => problem(
                        "RELAY_AUTH=scram takes RELAY_SCRAM_SECRET_ARN or \
                         RELAY_SCRAM_USERNAME/RELAY_SCRAM_PASSWORD, not both"
                            .to_owned(),
                    ),
                    (None, false) => problem(
                        "RELAY_AUTH=scram needs RELAY_SCRAM_SECRET_ARN or \
                         RELAY_SCRAM_USERNAME and RELAY_SCRAM_PASSWORD"
                            .to_owned(),
                    ),
                    (None, true)
                        if self.scram_username.is_none() || self.scram_password.is_none() =>
                    {
                        problem(
                            "RELAY_SCRAM_USERNAME and RELAY_SCRAM_PASSWORD must be set together"
                                .to_owned(),
                        )
                    }
                    (Some(_), false) if self.region.is_none() => problem(
                        "RELAY_SCRAM_SECRET_ARN needs AWS_REGION (set by Lambda)".to_owned(),
                    ),
                    _ => Ok(()),
                }
            }
            AuthMode::Iam if self.region.is_none() => {
                problem("RELAY_AUTH=iam needs AWS_REGION (set by Lambda)".to_owned())
            }
            _ => Ok(()),
        }
    }
}

/// SCRAM credentials, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    /// The SASL user name.
    pub username: String,
    /// Its password.
    pub password: Secret,
}

/// Decides [`AuthMode::Auto`]: `iam` in Lambda when the downstream cluster is MSK,
/// else `none`. `brokers_from_event` says the brokers are the event's `bootstrapServers`
/// (no `RELAY_BROKERS`); `event_source_arn` is the event's `eventSourceArn`.
pub fn resolve_mode(
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

/// `arn:<partition>:kafka:<region>:<account>:cluster/<name>/<uuid>`.
pub fn is_msk_cluster_arn(arn: &str) -> bool {
    let mut parts = arn.splitn(6, ':');
    parts.next() == Some("arn")
        && parts.next().is_some_and(|p| p.starts_with("aws"))
        && parts.next() == Some("kafka")
        && parts.nth(1).is_some()
        && parts.next().is_some_and(|r| r.starts_with("cluster/"))
}

/// Credentials resolved at init: what a producer needs for any mode.
#[derive(Default, Clone)]
pub struct Credentials {
    /// SCRAM credentials, when `RELAY_AUTH=scram`.
    pub scram: Option<ScramCredentials>,
    /// AWS configuration (region, credential chain), when IAM may be used.
    pub aws: Option<SdkConfig>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("scram", &self.scram)
            .field("aws", &self.aws.as_ref().map(|_| "SdkConfig"))
            .finish()
    }
}

/// The longest init waits for the AWS configuration (credential chain, region).
pub const AWS_CONFIG_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest init waits for Secrets Manager.
pub const SECRET_FETCH_TIMEOUT: Duration = Duration::from_secs(3);

impl Credentials {
    /// Init-time work: fetches the SCRAM secret once (or takes it from the
    /// environment) and loads the AWS configuration when IAM may be used (explicit
    /// `iam`, or auto inside Lambda).
    pub async fn resolve(settings: &AuthSettings) -> Result<Credentials, Error> {
        settings.validate()?;
        let mut credentials = Credentials::default();
        let needs_aws = matches!(settings.mode, AuthMode::Iam)
            || (settings.mode == AuthMode::Auto && settings.in_lambda && settings.region.is_some())
            || (settings.mode == AuthMode::Scram && settings.scram_secret_arn.is_some());
        if needs_aws {
            credentials.aws = Some(load_aws_config(settings.region.clone()).await?);
        }
        if settings.mode == AuthMode::Scram {
            credentials.scram = Some(match (&settings.scram_secret_arn, &credentials.aws) {
                (Some(arn), Some(aws)) => fetch_scram_secret(aws, arn).await?,
                _ => ScramCredentials {
                    username: settings.scram_username.clone().unwrap_or_default(),
                    password: settings
                        .scram_password
                        .clone()
                        .unwrap_or_else(|| Secret::new("")),
                },
            });
        }
        Ok(credentials)
    }
}

/// Reads a SCRAM secret from Secrets Manager: a JSON object with string fields
/// `username` and `password` (the format MSK requires for its SCRAM secrets).
/// Gives up after [`SECRET_FETCH_TIMEOUT`] (a retryable credentials error), so init fits
/// Lambda's init phase even when Secrets Manager does not answer.
pub async fn fetch_scram_secret(aws: &SdkConfig, arn: &str) -> Result<ScramCredentials, Error> {
    let text = fetch_secret_string(aws, arn).await?;
    parse_scram_secret(text.expose())
        .map_err(|problem| Error::Config(ConfigError::Auth(format!("secret {arn}: {problem}"))))
}

/// A secret's `SecretString`, within [`SECRET_FETCH_TIMEOUT`].
async fn fetch_secret_string(aws: &SdkConfig, arn: &str) -> Result<Secret, Error> {
    let client = aws_sdk_secretsmanager::Client::new(aws);
    let output = tokio::time::timeout(
        SECRET_FETCH_TIMEOUT,
        client.get_secret_value().secret_id(arn).send(),
    )
    .await
    .map_err(|_| {
        Error::Credentials(format!(
            "Secrets Manager GetSecretValue {arn}: no answer within {} s",
            SECRET_FETCH_TIMEOUT.as_secs()
        ))
    })?
    .map_err(|e| {
        Error::Credentials(format!(
            "Secrets Manager GetSecretValue {arn}: {}",
            aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
        ))
    })?;
    let text = output.secret_string().ok_or_else(|| {
        Error::Config(ConfigError::Auth(format!(
            "secret {arn} has no SecretString (binary secrets are not supported)"
        )))
    })?;
    Ok(Secret::new(text))
}

pub use crate::transform::personal::LOCAL_HASH_KEY;

/// The region of a Secrets Manager secret ARN
/// (`arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME`), or `None` when `arn` is
/// not one.
pub fn secret_region(arn: &str) -> Option<&str> {
    let mut fields = arn.splitn(7, ':');
    let well_formed = fields.next() == Some("arn")
        && fields.next().is_some_and(|p| !p.is_empty())
        && fields.next() == Some("secretsmanager");
    let region = fields.next().filter(|r| !r.is_empty())?;
    let rest_ok = fields.next().is_some_and(|a| !a.is_empty())
        && fields.next() == Some("secret")
        && fields.next().is_some_and(|n| !n.is_empty());
    (well_formed && rest_ok).then_some(region)
}

/// The key of `hash` pseudonyms: `RELAY_HASH_KEY`, or the `SecretString` of the secret
/// `RELAY_HASH_KEY_SECRET_ARN` names (fetched once, in the secret's own region, within
/// [`AWS_CONFIG_TIMEOUT`] + [`SECRET_FETCH_TIMEOUT`]); else, when the settings allow it
/// (local commands that produce nowhere real), [`LOCAL_HASH_KEY`]; else `None`, which
/// routes using `hash` refuse.
pub async fn resolve_hash_key(settings: &Settings) -> Result<Option<HashKey>, Error> {
    let invalid = |problem: String| Error::Config(ConfigError::Auth(problem));
    if let Some(key) = &settings.hash_key {
        return HashKey::new(key.expose().as_bytes())
            .map(Some)
            .map_err(|p| invalid(format!("RELAY_HASH_KEY: {p}")));
    }
    let Some(arn) = &settings.hash_key_secret_arn else {
        return if settings.local_hash_key {
            HashKey::new(LOCAL_HASH_KEY).map(Some).map_err(invalid)
        } else {
            Ok(None)
        };
    };
    let region = secret_region(arn)
        .map(str::to_owned)
        .or_else(|| settings.auth.region.clone());
    let aws = load_aws_config(region).await?;
    fetch_hash_key(&aws, arn).await.map(Some)
}

/// The AWS configuration (credential chain, `region` when given), within
/// [`AWS_CONFIG_TIMEOUT`] (a retryable credentials error after it).
async fn load_aws_config(region: Option<String>) -> Result<SdkConfig, Error> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    tokio::time::timeout(AWS_CONFIG_TIMEOUT, loader.load())
        .await
        .map_err(|_| {
            Error::Credentials(format!(
                "loading the AWS configuration took more than {} s",
                AWS_CONFIG_TIMEOUT.as_secs()
            ))
        })
}

/// Reads the hash key from a Secrets Manager secret: its `SecretString`, at least
/// [`crate::transform::personal::MIN_HASH_KEY_BYTES`] bytes. Errors never quote it.
pub async fn fetch_hash_key(aws: &SdkConfig, arn: &str) -> Result<HashKey, Error> {
    let key = fetch_secret_string(aws, arn).await?;
    HashKey::new(key.expose().as_bytes())
        .map_err(|p| Error::Config(ConfigError::Auth(format!("secret {arn}: {p}"))))
}

/// Parses a SCRAM secret's JSON. The error never quotes the secret's content.
pub fn parse_scram_secret(text: &str) -> Result<ScramCredentials, String> {
    #[derive(serde::Deserialize)]
    struct Shape {
        username: String,
        password: String,
    }
    let shape: Shape = serde_json::from_str(text).map_err(|_| {
        "expected a JSON object with string fields \"username\" and \"password\"".to_owned()
    })?;
    if shape.username.is_empty() || shape.password.is_empty() {
        return Err("\"username\" and \"password\" must not be empty".to_owned());
    }
    Ok(ScramCredentials {
        username: shape.username,
        password: Secret::new(shape.password),
    })
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
    pub fn from_config(aws: &SdkConfig) -> Result<IamTokens, ConfigError> {
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
    pub fn token_blocking(&self) -> Result<IamToken, String> {
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
pub enum ProducerAuth {
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

impl ProducerAuth {
    /// Builds the producer's authentication for a resolved mode.
    pub fn for_mode(
        mode: AuthMode,
        settings: &AuthSettings,
        credentials: &Credentials,
    ) -> Result<ProducerAuth, ConfigError> {
        let tls = settings.tls.clone();
        Ok(match mode {
            AuthMode::Auto | AuthMode::None => ProducerAuth::None,
            AuthMode::Tls => {
                settings.validate()?;
                ProducerAuth::Tls(tls)
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
                ProducerAuth::Scram(tls, scram)
            }
            AuthMode::Iam => {
                let aws = credentials.aws.as_ref().ok_or_else(|| {
                    ConfigError::Auth("RELAY_AUTH=iam needs AWS_REGION (set by Lambda)".to_owned())
                })?;
                ProducerAuth::Iam(tls, IamTokens::from_config(aws)?)
            }
        })
    }

    /// The mode this authentication implements.
    pub fn mode(&self) -> AuthMode {
        match self {
            ProducerAuth::None => AuthMode::None,
            ProducerAuth::Tls(_) => AuthMode::Tls,
            ProducerAuth::Scram(..) => AuthMode::Scram,
            ProducerAuth::Iam(..) => AuthMode::Iam,
        }
    }

    /// Adds the mode's librdkafka properties to `config`.
    pub fn apply(&self, config: &mut ClientConfig) {
        let tls = match self {
            ProducerAuth::None => {
                config.set("security.protocol", "plaintext");
                return;
            }
            ProducerAuth::Tls(tls) => {
                config.set("security.protocol", "ssl");
                tls
            }
            ProducerAuth::Scram(tls, scram) => {
                config
                    .set("security.protocol", "sasl_ssl")
                    .set("sasl.mechanisms", "SCRAM-SHA-512")
                    .set("sasl.username", &scram.username)
                    .set("sasl.password", scram.password.expose());
                tls
            }
            ProducerAuth::Iam(tls, _) => {
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
    pub fn secrets(&self) -> Vec<Secret> {
        let tls = match self {
            ProducerAuth::None => return Vec::new(),
            ProducerAuth::Tls(tls) | ProducerAuth::Scram(tls, _) | ProducerAuth::Iam(tls, _) => tls,
        };
        let mut secrets: Vec<Secret> = tls.key_password.iter().cloned().collect();
        if let ProducerAuth::Scram(_, scram) = self {
            secrets.push(scram.password.clone());
        }
        secrets
    }

    /// The IAM token source, in `iam` mode.
    pub fn iam(&self) -> Option<&IamTokens> {
        match self {
            ProducerAuth::Iam(_, tokens) => Some(tokens),
            _ => None,
        }
    }
}

/// Removes known secret values from text before it is logged.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<Secret>,
}

impl Redactor {
    /// Redacts these secrets (empty ones are ignored).
    pub fn new(secrets: Vec<Secret>) -> Redactor {
        Redactor {
            secrets: secrets
                .into_iter()
                .filter(|s| !s.expose().is_empty())
                .collect(),
        }
    }

    /// `text` with every secret replaced by `<redacted>`.
    pub fn redact<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        let mut text = std::borrow::Cow::Borrowed(text);
        for secret in &self.secrets {
            if text.contains(secret.expose()) {
                text = std::borrow::Cow::Owned(text.replace(secret.expose(), "<redacted>"));
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A malformed secret is refused without quoting it.
    #[test]
    fn scram_secret_parsing_never_quotes_the_secret() {
        let ok =
            parse_scram_secret(r#"{"username":"relay","password":"hunter2-long"}"#).expect("valid");
        assert_eq!(ok.username, "relay");
        assert_eq!(ok.password.expose(), "hunter2-long");
        for bad in [
            r#"{"username":"relay","password":12345678}"#,
            r#"{"username":"relay","pass":"hunter2-long"}"#,
            r#"hunter2-long"#,
            r#"{"username":"relay","password":""}"#,
        ] {
            let err = parse_scram_secret(bad).expect_err(bad);
            assert!(
                !err.contains("hunter2") && !err.contains("12345678"),
                "{err}"
            );
        }
    }

    #[test]
    fn secrets_do_not_debug_print() {
        let creds = ScramCredentials {
            username: "relay".to_owned(),
            password: Secret::new("hunter2-long"),
        };
        let text = format!(
            "{creds:?} {:?}",
            ProducerAuth::Scram(TlsFiles::default(), creds.clone())
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
