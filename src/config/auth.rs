//! `RELAY_AUTH` and the TLS and SCRAM variables, as read from the environment: what
//! the Kafka clients turn into their security settings once the credentials are
//! resolved (from Secrets Manager, for SCRAM).

use std::fmt;
use std::path::PathBuf;

use crate::error::ConfigError;

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
    pub(crate) fn parse(value: &str) -> Option<AuthMode> {
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
    /// A client certificate and key read from Secrets Manager at init
    /// (`RELAY_TLS_CLIENT_CERT_SECRET_ARN`), instead of the files.
    pub client_certificate: Option<ClientCertificate>,
}

/// A client certificate for mutual TLS as the Kafka event source mapping keeps it in
/// Secrets Manager (`CLIENT_CERTIFICATE_TLS_AUTH`): PEM text, the client's certificate
/// first, then any chain; its private key; the key's password when it is encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The certificate chain (PEM).
    pub certificate: String,
    /// The private key (PEM).
    pub private_key: Secret,
    /// The private key's password, when it is encrypted.
    pub private_key_password: Option<Secret>,
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
    /// `RELAY_TLS_CLIENT_CERT_SECRET_ARN`: Secrets Manager secret holding a client
    /// certificate as the event source mapping reads it (`{"certificate", "privateKey",
    /// "privateKeyPassword"}`).
    pub client_cert_secret_arn: Option<String>,
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
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
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
        if self.client_cert_secret_arn.is_some()
            && (self.tls.cert_file.is_some() || self.tls.key_password.is_some())
        {
            return problem(
                "RELAY_TLS_CLIENT_CERT_SECRET_ARN gives the client certificate, its key and the \
                 key's password: RELAY_TLS_CERT_FILE, RELAY_TLS_KEY_FILE and \
                 RELAY_TLS_KEY_PASSWORD go with it"
                    .to_owned(),
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
