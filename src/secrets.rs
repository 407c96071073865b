//! Secrets Manager and the AWS configuration: the SCRAM credentials and the hash key,
//! fetched once at init (the SCRAM secret again when the brokers refuse the login),
//! each call within its own timeout so init fits Lambda's init phase.

use std::fmt;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};

pub use crate::config::auth::secret_region;
use crate::config::auth::{AuthMode, AuthSettings, ClientCertificate, Secret};
use crate::config::Settings;
use crate::error::{ConfigError, Error};
use crate::transform::HashKey;

/// SCRAM credentials, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    /// The SASL user name.
    pub username: String,
    /// Its password.
    pub password: Secret,
}

/// Credentials resolved at init: what a producer needs for any mode.
#[derive(Default, Clone)]
pub struct Credentials {
    /// SCRAM credentials, when `RELAY_AUTH=scram`.
    pub scram: Option<ScramCredentials>,
    /// AWS configuration (region, credential chain), when IAM may be used.
    pub aws: Option<SdkConfig>,
    /// The client certificate for mutual TLS, when `RELAY_TLS_CLIENT_CERT_SECRET_ARN`
    /// names its secret.
    pub client_certificate: Option<ClientCertificate>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("scram", &self.scram)
            .field("aws", &self.aws.as_ref().map(|_| "SdkConfig"))
            .field("client_certificate", &self.client_certificate)
            .finish()
    }
}

/// The longest init waits for the AWS configuration (credential chain, region).
pub(crate) const AWS_CONFIG_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest init waits for Secrets Manager.
pub const SECRET_FETCH_TIMEOUT: Duration = Duration::from_secs(3);

impl Credentials {
    /// Init-time work: fetches the SCRAM secret once (or takes it from the
    /// environment) and loads the AWS configuration when IAM may be used (explicit
    /// `iam`, or auto inside Lambda).
    pub(crate) async fn resolve(settings: &AuthSettings) -> Result<Credentials, Error> {
        settings.validate()?;
        let mut credentials = Credentials::default();
        let needs_aws = matches!(settings.mode, AuthMode::Iam)
            || (settings.mode == AuthMode::Auto && settings.in_lambda && settings.region.is_some())
            || (settings.mode == AuthMode::Scram && settings.scram_secret_arn.is_some())
            || settings.client_cert_secret_arn.is_some();
        if needs_aws {
            // A region for the SDK: the function's, else the secret's own.
            let region = settings.region.clone().or_else(|| {
                settings
                    .client_cert_secret_arn
                    .as_deref()
                    .and_then(secret_region)
                    .map(str::to_owned)
            });
            credentials.aws = Some(load_aws_config(region).await?);
        }
        if let (Some(arn), Some(aws)) = (&settings.client_cert_secret_arn, &credentials.aws) {
            credentials.client_certificate = Some(fetch_client_certificate(aws, arn).await?);
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

/// Reads a client certificate for mutual TLS from Secrets Manager, in the format the
/// Kafka event source mapping reads (`CLIENT_CERTIFICATE_TLS_AUTH`): a JSON object with
/// PEM strings `certificate` and `privateKey`, and `privateKeyPassword` for an
/// encrypted key. librdkafka checks the PEM when the producer is made.
pub async fn fetch_client_certificate(
    aws: &SdkConfig,
    arn: &str,
) -> Result<ClientCertificate, Error> {
    let text = fetch_secret_string(aws, arn).await?;
    parse_client_certificate(text.expose())
        .map_err(|problem| Error::Config(ConfigError::Auth(format!("secret {arn}: {problem}"))))
}

/// Parses a client certificate secret's JSON. The error never quotes the secret.
pub(crate) fn parse_client_certificate(text: &str) -> Result<ClientCertificate, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Shape {
        certificate: String,
        private_key: String,
        #[serde(default)]
        private_key_password: Option<String>,
    }
    let shape: Shape = serde_json::from_str(text).map_err(|_| {
        "expected a JSON object with PEM strings \"certificate\" and \"privateKey\" \
         (and \"privateKeyPassword\" for an encrypted key)"
            .to_owned()
    })?;
    if !shape.certificate.contains("-----BEGIN CERTIFICATE-----") {
        return Err("\"certificate\" holds no PEM certificate".to_owned());
    }
    if !shape.private_key.contains("PRIVATE KEY-----") {
        return Err("\"privateKey\" holds no PEM private key".to_owned());
    }
    Ok(ClientCertificate {
        certificate: shape.certificate,
        private_key: Secret::new(shape.private_key),
        private_key_password: shape
            .private_key_password
            .filter(|p| !p.is_empty())
            .map(Secret::new),
    })
}

/// A secret's `SecretString`, within [`SECRET_FETCH_TIMEOUT`], asked of Secrets Manager
/// in the secret's own region (its ARN's), which need not be the function's: a secret
/// held beside a cluster in another region.
async fn fetch_secret_string(aws: &SdkConfig, arn: &str) -> Result<Secret, Error> {
    let mut config = aws_sdk_secretsmanager::config::Builder::from(aws);
    if let Some(region) = crate::config::auth::secret_region(arn) {
        config = config.region(Region::new(region.to_owned()));
    }
    let client = aws_sdk_secretsmanager::Client::from_conf(config.build());
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

/// The key of `hash` pseudonyms: `RELAY_HASH_KEY`, or the `SecretString` of the secret
/// `RELAY_HASH_KEY_SECRET_ARN` names (fetched once, in the secret's own region, within
/// [`AWS_CONFIG_TIMEOUT`] + [`SECRET_FETCH_TIMEOUT`]); else, when the settings allow it
/// (local commands that produce nowhere real), [`LOCAL_HASH_KEY`]; else `None`, which
/// routes using `hash` refuse. `aws`: the configuration to call Secrets Manager with,
/// else the one loaded from the environment in the secret's region.
pub(crate) async fn resolve_hash_key_with(
    settings: &Settings,
    aws: Option<&SdkConfig>,
) -> Result<Option<HashKey>, Error> {
    let invalid = |problem: String| Error::Config(ConfigError::Auth(problem));
    if let Some(key) = &settings.routes.hash_key {
        return HashKey::new(key.expose().as_bytes())
            .map(Some)
            .map_err(|p| invalid(format!("RELAY_HASH_KEY: {p}")));
    }
    let Some(arn) = &settings.routes.hash_key_secret_arn else {
        return if settings.routes.local_hash_key {
            HashKey::new(LOCAL_HASH_KEY).map(Some).map_err(invalid)
        } else {
            Ok(None)
        };
    };
    let aws = match aws {
        Some(aws) => aws.clone(),
        None => {
            let region = secret_region(arn)
                .map(str::to_owned)
                .or_else(|| settings.auth.region.clone());
            load_aws_config(region).await?
        }
    };
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
pub(crate) fn parse_scram_secret(text: &str) -> Result<ScramCredentials, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The event source mapping's client certificate secret: PEM certificate and key, an
    /// optional password; anything else refused without quoting it.
    #[test]
    fn client_certificate_secrets_are_read_as_the_mapping_reads_them() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let key = "-----BEGIN PRIVATE KEY-----\nsecret-key-bytes\n-----END PRIVATE KEY-----\n";
        let secret = serde_json::json!({"certificate": pem, "privateKey": key}).to_string();
        let read = parse_client_certificate(&secret).expect("valid");
        assert_eq!(read.certificate, pem);
        assert_eq!(read.private_key.expose(), key);
        assert_eq!(read.private_key_password, None);
        let encrypted = serde_json::json!({"certificate": pem, "privateKey": key,
            "privateKeyPassword": "pw-41d2"})
        .to_string();
        let read = parse_client_certificate(&encrypted).expect("valid");
        assert_eq!(
            read.private_key_password.map(|p| p.expose().to_owned()),
            Some("pw-41d2".to_owned())
        );
        for bad in [
            serde_json::json!({"certificate": pem}).to_string(),
            serde_json::json!({"certificate": "secret-key-bytes", "privateKey": key}).to_string(),
            serde_json::json!({"certificate": pem, "privateKey": "secret-key-bytes"}).to_string(),
            "secret-key-bytes".to_owned(),
        ] {
            let error = parse_client_certificate(&bad).expect_err(&bad);
            assert!(!error.contains("secret-key-bytes"), "{error}");
        }
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
}
