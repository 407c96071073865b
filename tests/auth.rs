//! Authentication modes at the deepest level this machine allows.
//!
//! librdkafka's mock cluster speaks neither TLS nor SASL, and the test broker of the
//! end-to-end tier (tansu 0.6) has SCRAM but no TLS listener. So here:
//! - every mode's librdkafka configuration is checked, and librdkafka itself must
//!   accept it (the producer is created, TLS files loaded);
//! - IAM tokens made with fixed credentials are checked against an independent
//!   SigV4 computation, and handed out through the producer's token callback;
//! - the SCRAM secret is fetched through the real AWS SDK from a local Secrets
//!   Manager endpoint;
//! - a failing SCRAM login is run for real and its logs and errors searched for the
//!   password.
//!
//! SCRAM against a real broker runs in the end-to-end tier (`tests/e2e/e2e.py`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::SharedCredentialsProvider;
use base64::Engine;
use cdc_relay::config::{Overrides, ServeSettings, Settings};
use cdc_relay::kafka::producer::{producer_config_with, Sink};
use cdc_relay::kafka::RelayContext;
use cdc_relay::kafka::{AuthMode, ClientAuth, ClientCertificate, IamTokens, Secret, TlsFiles};
use cdc_relay::modes::lambda::Function;
use cdc_relay::modes::local::EmbeddedKafka;
use cdc_relay::modes::serve::Server;
use cdc_relay::relay::Relay;
use cdc_relay::secrets::{
    fetch_client_certificate, fetch_hash_key, fetch_scram_secret, secret_region, Credentials,
    ScramCredentials,
};
use cdc_relay::transform::HashKey;
use hmac::{Hmac, KeyInit, Mac};
use lambda_runtime::LambdaEvent;
use rdkafka::client::ClientContext;
use sha2::{Digest, Sha256};

use crate::util;

const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const SESSION_TOKEN: &str = "FwoGZXIvYXdzEXAMPLE/session+token==";

fn tls_dir() -> PathBuf {
    util::root().join("tests").join("tls")
}

fn tls_files(with_client_cert: bool) -> TlsFiles {
    TlsFiles {
        ca_file: Some(tls_dir().join("ca.pem")),
        cert_file: with_client_cert.then(|| tls_dir().join("client.pem")),
        key_file: with_client_cert.then(|| tls_dir().join("client.key")),
        key_password: None,
        client_certificate: None,
    }
}

fn fixed_credentials() -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(aws_credential_types::Credentials::new(
        ACCESS_KEY,
        SECRET_KEY,
        Some(SESSION_TOKEN.to_owned()),
        None,
        "fixed",
    ))
}

fn iam_tokens() -> IamTokens {
    IamTokens::new(
        Region::new("eu-west-1"),
        fixed_credentials(),
        tokio::runtime::Handle::current(),
    )
}

/// librdkafka properties a mode must set (`Some`) or leave unset (`None`).
type Expected = Vec<(&'static str, Option<String>)>;

/// Each mode sets exactly the librdkafka properties it needs, user overrides win, and
/// librdkafka accepts the result (creating the producer loads the TLS files).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mode_configures_librdkafka() {
    let scram = ScramCredentials {
        username: "relay".to_owned(),
        password: Secret::new("pw-9f3a"),
    };
    let cases: Vec<(ClientAuth, Expected)> = vec![
        (
            ClientAuth::None,
            vec![
                ("security.protocol", Some("plaintext".into())),
                ("sasl.mechanisms", None),
            ],
        ),
        (
            ClientAuth::Tls(tls_files(true)),
            vec![
                ("security.protocol", Some("ssl".into())),
                ("sasl.mechanisms", None),
                (
                    "ssl.ca.location",
                    Some(tls_dir().join("ca.pem").display().to_string()),
                ),
                (
                    "ssl.certificate.location",
                    Some(tls_dir().join("client.pem").display().to_string()),
                ),
                (
                    "ssl.key.location",
                    Some(tls_dir().join("client.key").display().to_string()),
                ),
            ],
        ),
        (
            ClientAuth::Scram(tls_files(false), scram),
            vec![
                ("security.protocol", Some("sasl_ssl".into())),
                ("sasl.mechanisms", Some("SCRAM-SHA-512".into())),
                ("sasl.username", Some("relay".into())),
                ("sasl.password", Some("pw-9f3a".into())),
                ("ssl.certificate.location", None),
            ],
        ),
        (
            ClientAuth::Iam(TlsFiles::default(), iam_tokens()),
            vec![
                ("security.protocol", Some("sasl_ssl".into())),
                ("sasl.mechanisms", Some("OAUTHBEARER".into())),
                ("sasl.username", None),
                ("ssl.ca.location", None),
            ],
        ),
    ];
    for (auth, expected) in cases {
        let mode = auth.mode();
        let config = producer_config_with("127.0.0.1:9", &auth, &[]);
        for (name, value) in expected {
            assert_eq!(config.get(name), value.as_deref(), "{mode:?}: {name}");
        }
        // The relay's own guarantees hold in every mode.
        assert_eq!(config.get("enable.idempotence"), Some("true"), "{mode:?}");
        assert_eq!(config.get("acks"), Some("all"), "{mode:?}");
        let sink = Sink::connect_with("127.0.0.1:9", auth, &[])
            .unwrap_or_else(|e| panic!("{mode:?}: librdkafka refused the configuration: {e}"));
        assert!(format!("{sink:?}").to_lowercase().contains(mode.as_str()));
    }
    // RELAY_PRODUCER_* overrides come last and win (e.g. SASL without TLS for a lab broker).
    let overridden = producer_config_with(
        "127.0.0.1:9",
        &ClientAuth::Iam(TlsFiles::default(), iam_tokens()),
        &[("security.protocol".to_owned(), "sasl_plaintext".to_owned())],
    );
    assert_eq!(overridden.get("security.protocol"), Some("sasl_plaintext"));
    // A CA file that is not a certificate is refused by librdkafka at creation.
    let bad = TlsFiles {
        ca_file: Some(util::root().join("routes.toml")),
        ..TlsFiles::default()
    };
    assert!(Sink::connect_with("127.0.0.1:9", ClientAuth::Tls(bad), &[]).is_err());
}

/// A client certificate from Secrets Manager (the event source mapping's
/// `CLIENT_CERTIFICATE_TLS_AUTH` secret) reaches librdkafka as PEM text, which it
/// checks when the producer is made: the relay writes with the certificate the mapping
/// reads with, in Lambda and ECS, where no certificate file can be shipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_secret_reaches_librdkafka() {
    let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:relay-client-cert-AbCdEf";
    let read = |name: &str| std::fs::read_to_string(tls_dir().join(name)).expect("test PEM");
    let (certificate, key) = (read("client.pem"), read("client.key"));
    let body = serde_json::json!({"ARN": arn, "Name": "relay-client-cert", "VersionId": "v1",
        "CreatedDate": 1.7e9,
        "SecretString": serde_json::json!({"certificate": certificate, "privateKey": key}).to_string()})
    .to_string();
    let (endpoint, server) = secrets_manager_stub("200 OK", body);
    let aws = sdk_config(&endpoint).await;
    let client = fetch_client_certificate(&aws, arn).await.expect("fetched");
    server.join().expect("stub");
    let credentials = Credentials {
        client_certificate: Some(client),
        ..Credentials::default()
    };
    let settings = Settings::from_vars([
        ("RELAY_AUTH", "tls"),
        ("RELAY_TLS_CLIENT_CERT_SECRET_ARN", arn),
    ])
    .expect("settings");
    let auth = ClientAuth::for_mode(AuthMode::Tls, &settings.auth, &credentials).expect("auth");
    let config = producer_config_with("127.0.0.1:9", &auth, &[]);
    assert_eq!(config.get("security.protocol"), Some("ssl"));
    assert_eq!(
        config.get("ssl.certificate.pem"),
        Some(certificate.as_str())
    );
    assert_eq!(config.get("ssl.key.pem"), Some(key.as_str()));
    assert_eq!(config.get("ssl.certificate.location"), None);
    Sink::connect_with("127.0.0.1:9", auth, &[]).expect("librdkafka takes the PEM");
    // Not fetched (no init): refused, never a producer without its certificate.
    assert!(ClientAuth::for_mode(AuthMode::Tls, &settings.auth, &Credentials::default()).is_err());
    // A certificate librdkafka cannot read is refused when the producer is made.
    let garbled = ClientAuth::Tls(TlsFiles {
        client_certificate: Some(ClientCertificate {
            certificate: certificate.replace("MII", "XXX"),
            private_key: Secret::new(key),
            private_key_password: None,
        }),
        ..TlsFiles::default()
    });
    assert!(Sink::connect_with("127.0.0.1:9", garbled, &[]).is_err());
}

/// RFC 3986 encoding as SigV4 canonicalisation wants it.
fn sigv4_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// An IAM token made from fixed credentials is the base64url of a presigned
/// `kafka-cluster:Connect` URL for the region, valid 15 minutes, carrying the session
/// token, whose signature matches an independent SigV4 computation; the secret key
/// itself is not in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_token_is_a_presigned_connect_url() {
    let before_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let token = iam_tokens().token().await.expect("token");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&token.token)
        .expect("token is unpadded base64url");
    let text = String::from_utf8(raw).expect("token is a URL");
    assert!(
        !text.contains(SECRET_KEY),
        "the secret key leaked into the token"
    );
    let url = url::Url::parse(&text).expect("token is a URL");
    assert_eq!(url.scheme(), "https");
    assert_eq!(url.host_str(), Some("kafka.eu-west-1.amazonaws.com"));
    assert_eq!(url.path(), "/");
    let params: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{name} missing from {text}"))
    };
    assert_eq!(get("Action"), "kafka-cluster:Connect");
    assert_eq!(get("X-Amz-Algorithm"), "AWS4-HMAC-SHA256");
    assert_eq!(get("X-Amz-Expires"), "900");
    assert_eq!(get("X-Amz-SignedHeaders"), "host");
    assert_eq!(get("X-Amz-Security-Token"), SESSION_TOKEN);
    let amz_date = get("X-Amz-Date");
    let date = &amz_date[..8];
    assert_eq!(
        get("X-Amz-Credential"),
        format!("{ACCESS_KEY}/{date}/eu-west-1/kafka-cluster/aws4_request")
    );
    assert!(
        get("User-Agent").starts_with("aws-msk-iam-sasl-signer"),
        "{text}"
    );
    // Expiry: signing time + 900 s, as librdkafka wants it (ms since the epoch).
    assert!(
        token.expires_at_ms >= before_ms + 899_000 && token.expires_at_ms <= before_ms + 961_000,
        "expires_at_ms {} vs now {before_ms}",
        token.expires_at_ms
    );

    // Independent SigV4 (query-string signing): the User-Agent is appended after signing.
    let mut canonical: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "X-Amz-Signature" && k != "User-Agent")
        .map(|(k, v)| (sigv4_encode(k), sigv4_encode(v)))
        .collect();
    canonical.sort();
    let query = canonical
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let empty_hash = hex::encode(Sha256::digest(b""));
    let request =
        format!("GET\n/\n{query}\nhost:kafka.eu-west-1.amazonaws.com\n\nhost\n{empty_hash}");
    let scope = format!("{date}/eu-west-1/kafka-cluster/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(request.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{SECRET_KEY}").as_bytes(), date);
    let k_region = hmac(&k_date, "eu-west-1");
    let k_service = hmac(&k_region, "kafka-cluster");
    let k_signing = hmac(&k_service, "aws4_request");
    let signature = hex::encode(hmac(&k_signing, &to_sign));
    assert_eq!(
        get("X-Amz-Signature"),
        signature,
        "signature does not verify"
    );
}

/// librdkafka's token refresh callback gets a fresh token from the producer's context,
/// whether it is called from a plain thread (the polling thread) or from inside the
/// runtime (a flush from async code), without needing a tokio worker to block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_refresh_callback_supplies_tokens() {
    let context = RelayContext::new(&ClientAuth::Iam(TlsFiles::default(), iam_tokens()));
    let from_thread = std::thread::scope(|s| {
        s.spawn(|| {
            context
                .generate_oauth_token(None)
                .map_err(|e| e.to_string())
        })
        .join()
        .expect("no panic")
    })
    .expect("token from a plain thread");
    assert!(!from_thread.token.is_empty());
    assert!(from_thread.principal_name.is_empty());
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    assert!(from_thread.lifetime_ms > now_ms + 800_000);
    let inside = context
        .generate_oauth_token(None)
        .map_err(|e| e.to_string())
        .expect("token from inside the runtime");
    assert!(!inside.token.is_empty());

    // Without IAM there is no token to give: librdkafka is told so.
    let plain = RelayContext::new(&ClientAuth::None);
    let refused = plain
        .generate_oauth_token(None)
        .map(|_| ())
        .expect_err("no token source");
    assert!(refused.to_string().contains("RELAY_AUTH=iam"), "{refused}");
}

/// A minimal Secrets Manager endpoint: answers one request with `status` and `body`,
/// and returns the request it received.
fn secrets_manager_stub(status: &str, body: String) -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let status = status.to_owned();
    let handle = std::thread::spawn(move || answer_one(&listener, &status, &body, || ()));
    (url, handle)
}

/// A Secrets Manager endpoint that answers `bodies` in turn (200 OK), counting requests.
fn secrets_manager_sequence(bodies: Vec<String>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for body in bodies {
            answer_one(&listener, "200 OK", &body, || {
                count.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (url, served)
}

/// Reads one HTTP request from `listener`, calls `received` (before the answer, so a
/// count is up to date when the caller has its answer), answers it, returns the request.
fn answer_one(listener: &TcpListener, status: &str, body: &str, received: impl FnOnce()) -> String {
    {
        let (stream, _) = listener.accept().expect("request");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut head = String::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header line");
            if line.to_ascii_lowercase().starts_with("content-length:") {
                length = line[15..].trim().parse().expect("length");
            }
            head.push_str(&line);
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        let mut request_body = vec![0; length];
        reader.read_exact(&mut request_body).expect("body");
        received();
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("response");
        format!("{head}{}", String::from_utf8_lossy(&request_body))
    }
}

async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .endpoint_url(endpoint)
        .credentials_provider(fixed_credentials())
        .load()
        .await
}

/// `RELAY_SCRAM_SECRET_ARN`: the secret is read with GetSecretValue through the AWS
/// SDK; a missing secret is a retryable credentials error naming the ARN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_secret_comes_from_secrets_manager() {
    let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:AmazonMSK_relay-AbCdEf";
    let secret_string = r#"{"username":"relay","password":"sm-pw-51c2"}"#;
    let body = serde_json::json!({
        "ARN": arn,
        "Name": "AmazonMSK_relay",
        "SecretString": secret_string,
        "VersionId": "v1",
        "CreatedDate": 1.7e9,
    })
    .to_string();
    let (endpoint, server) = secrets_manager_stub("200 OK", body);
    let aws = sdk_config(&endpoint).await;
    let credentials = fetch_scram_secret(&aws, arn).await.expect("secret fetched");
    assert_eq!(credentials.username, "relay");
    assert_eq!(credentials.password.expose(), "sm-pw-51c2");
    let request = server.join().expect("stub");
    assert!(
        request.contains("secretsmanager.GetSecretValue"),
        "{request}"
    );
    assert!(request.contains(arn), "{request}");
    assert!(
        request.contains("/eu-west-1/secretsmanager/aws4_request"),
        "{request}"
    );

    // A secret in another region than the function's is asked of that region.
    let elsewhere = "arn:aws:secretsmanager:us-east-1:123456789012:secret:AmazonMSK_relay-AbCdEf";
    let body = serde_json::json!({"ARN": elsewhere, "Name": "AmazonMSK_relay",
        "SecretString": secret_string, "VersionId": "v1", "CreatedDate": 1.7e9})
    .to_string();
    let (endpoint, server) = secrets_manager_stub("200 OK", body);
    let aws = sdk_config(&endpoint).await;
    fetch_scram_secret(&aws, elsewhere)
        .await
        .expect("secret fetched");
    let request = server.join().expect("stub");
    assert!(
        request.contains("/us-east-1/secretsmanager/aws4_request"),
        "{request}"
    );

    let (endpoint, server) = secrets_manager_stub(
        "400 Bad Request",
        serde_json::json!({"__type": "ResourceNotFoundException", "Message": "Secrets Manager can't find the specified secret."}).to_string(),
    );
    let aws = sdk_config(&endpoint).await;
    let error = fetch_scram_secret(&aws, arn)
        .await
        .expect_err("no such secret");
    server.join().expect("stub");
    let text = error.to_string();
    assert!(error.is_retryable(), "{text}");
    assert!(
        text.contains(arn) && text.contains("ResourceNotFoundException"),
        "{text}"
    );
}

/// `RELAY_HASH_KEY_SECRET_ARN`: the hash key is the secret's `SecretString`, read through
/// the AWS SDK; a secret too short to be a key is refused without quoting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_key_comes_from_secrets_manager() {
    let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:relay-hash-AbCdEf";
    let body = |secret: &str| {
        serde_json::json!({"ARN": arn, "Name": "relay-hash", "SecretString": secret,
            "VersionId": "v1", "CreatedDate": 1.7e9})
        .to_string()
    };
    let key_text = "Zq8pLr3vN0aXw7Ys2KbT5mHc9Ud4Ee6F";
    let (endpoint, server) = secrets_manager_stub("200 OK", body(key_text));
    let key = fetch_hash_key(&sdk_config(&endpoint).await, arn)
        .await
        .expect("key fetched");
    assert_eq!(
        key.token(b"kim@example.com"),
        HashKey::new(key_text.as_bytes())
            .expect("key")
            .token(b"kim@example.com")
    );
    assert!(server.join().expect("stub").contains(arn));

    let (endpoint, server) = secrets_manager_stub("200 OK", body("short-9f"));
    let error = fetch_hash_key(&sdk_config(&endpoint).await, arn)
        .await
        .expect_err("too short");
    server.join().expect("stub");
    let text = error.to_string();
    assert!(
        text.contains(arn) && text.contains("at least") && !text.contains("short-9f"),
        "{text}"
    );
}

/// The hash key is resolved only when a route hashes: routes without `hash` start with
/// a secret named and make no call (counted at a local Secrets Manager, which a route
/// that hashes does call); routes with `hash` and no key are refused naming the
/// settings, unless the command produces nowhere real.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_key_only_when_a_route_hashes() {
    let settings = |routes: &str, vars: &[(&str, &str)]| {
        let mut all = vec![("RELAY_ROUTES".to_owned(), routes.to_owned())];
        all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Settings::from_vars(all).expect("valid settings")
    };
    let flat = util::root().join("tests/routes/flat.toml");
    let example = util::root().join("routes.toml");
    let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:hash-key-AbC";
    let named = [("RELAY_HASH_KEY_SECRET_ARN", arn)];
    let body = serde_json::json!({
        "ARN": arn, "Name": "hash-key", "SecretString": "a key of thirty-two bytes, exactly",
    })
    .to_string();
    let (endpoint, served) = secrets_manager_sequence(vec![body]);
    let aws = sdk_config(&endpoint).await;
    Relay::load_routes_with(&settings(&flat.display().to_string(), &named), Some(&aws))
        .await
        .expect("no route hashes: no key needed");
    assert_eq!(served.load(Ordering::SeqCst), 0, "a call was made");
    // The same secret, with routes that hash: one call, and the key is used.
    Relay::load_routes_with(
        &settings(&example.display().to_string(), &named),
        Some(&aws),
    )
    .await
    .expect("the key from the secret");
    assert_eq!(served.load(Ordering::SeqCst), 1, "the key was not fetched");

    let example = example.display().to_string();
    let refused = Relay::load_routes(&settings(&example, &[]))
        .await
        .expect_err("hash without a key");
    assert!(refused.to_string().contains("RELAY_HASH_KEY"), "{refused}");
    let local = Settings::from_vars_with(
        [("RELAY_ROUTES", example.as_str())],
        Overrides {
            local_hash_key: true,
            ..Overrides::default()
        },
    )
    .expect("valid settings");
    Relay::load_routes(&local).await.expect("the local key");
    Relay::load_routes(&settings(
        &example,
        &[("RELAY_HASH_KEY", "a key of thirty-two bytes, exactly")],
    ))
    .await
    .expect("a key");
}

/// `RELAY_HASH_KEY` that looks like an ARN is refused without being echoed (it belongs
/// in RELAY_HASH_KEY_SECRET_ARN); that variable takes only Secrets Manager ARNs, in any
/// partition, and the secret is read in its own region.
#[test]
fn hash_key_settings_are_checked() {
    let vars = |name: &str, value: &str| Settings::from_vars([(name.to_owned(), value.to_owned())]);
    let arn = "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:relay-hash-AbC";
    let refused = vars("RELAY_HASH_KEY", arn).expect_err("an ARN as the key");
    let text = refused.to_string();
    assert!(
        text.contains("RELAY_HASH_KEY_SECRET_ARN") && !text.contains("cn-north-1"),
        "{text}"
    );
    assert_eq!(
        vars("RELAY_HASH_KEY_SECRET_ARN", arn)
            .expect("an ARN")
            .routes
            .hash_key_secret_arn
            .as_deref(),
        Some(arn)
    );
    assert_eq!(secret_region(arn), Some("cn-north-1"));
    for wrong in [
        "prod/relay/hash",
        "arn:aws:kms:eu-west-1:123456789012:key/k-1",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:",
        "arn:aws:secretsmanager::123456789012:secret:x",
    ] {
        assert!(vars("RELAY_HASH_KEY_SECRET_ARN", wrong).is_err(), "{wrong}");
        assert_eq!(secret_region(wrong), None, "{wrong}");
    }
}

/// The credentials of a SCRAM secret fetched at init from a Secrets Manager that will
/// answer the next fetch with the secret rotated; how many fetches it has answered.
async fn rotated_secret(arn: &str) -> (Credentials, Arc<AtomicUsize>) {
    let body = |password: &str| {
        serde_json::json!({
            "ARN": arn, "Name": "AmazonMSK_relay", "VersionId": password, "CreatedDate": 1.7e9,
            "SecretString": serde_json::json!({"username": "relay", "password": password}).to_string(),
        })
        .to_string()
    };
    let (endpoint, served) =
        secrets_manager_sequence(vec![body("before-rotation"), body("after-rotation")]);
    let aws = sdk_config(&endpoint).await;
    let credentials = Credentials {
        scram: Some(fetch_scram_secret(&aws, arn).await.expect("secret at init")),
        aws: Some(aws),
        client_certificate: None,
    };
    (credentials, served)
}

/// A SCRAM login the brokers refuse (after a secret rotation) makes the relay fetch the
/// secret again before the next batch; when it changed, the producer is replaced, so
/// that batch logs in with the new secret instead of failing until the environment is
/// recycled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_scram_login_fetches_the_secret_again() {
    let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:AmazonMSK_rotated-AbCdEf";
    let (credentials, served) = rotated_secret(arn).await;
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let relay = util::relay(
        &kafka,
        util::example_routes(),
        &[
            ("RELAY_AUTH", "scram"),
            ("RELAY_SCRAM_SECRET_ARN", arn),
            ("AWS_REGION", "eu-west-1"),
            // The mock cluster has no SASL: every login is refused.
            ("RELAY_PRODUCER_SECURITY_PROTOCOL", "sasl_plaintext"),
            ("RELAY_DEADLINE_MARGIN_MS", "1000"),
            ("RELAY_PARTIAL_BATCH", "true"),
        ],
    )
    .with_credentials(credentials);
    let batch = || {
        relay.handle(LambdaEvent::new(
            util::load_event("insert.json"),
            util::context(4_000),
        ))
    };
    let response = batch().await.expect("an answer");
    assert!(
        !response.batch_item_failures.is_empty(),
        "no login, nothing produced"
    );
    let refused = relay.relay().sink().expect("the producer");
    assert!(refused.login_refused());
    assert_eq!(served.load(Ordering::SeqCst), 1, "fetched once, at init");
    batch().await.expect("an answer");
    assert_eq!(
        served.load(Ordering::SeqCst),
        2,
        "the secret was fetched again"
    );
    let current = relay.relay().sink().expect("a producer");
    assert!(
        !Arc::ptr_eq(&refused, &current),
        "the producer with the old secret was replaced"
    );
}

/// `serve` with SCRAM: a login the brokers refuse (a rotated secret) makes it fetch the
/// secret again, as Lambda does before a batch, also when only the consumer is refused
/// and nothing can be read; when the secret changed, the consumer is made again with it.
/// Before, serve kept the secret it started with until its task was replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_fetches_a_refused_scram_secret_again() {
    let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:AmazonMSK_served-AbCdEf";
    let (credentials, served) = rotated_secret(arn).await;
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let brokers = kafka.bootstrap_servers();
    let vars = [
        ("RELAY_BROKERS", brokers.as_str()),
        ("RELAY_SOURCE_TOPICS", "dms.cdc"),
        ("RELAY_HTTP_ADDR", "off"),
        ("RELAY_AUTH", "scram"),
        ("RELAY_SCRAM_SECRET_ARN", arn),
        ("AWS_REGION", "eu-west-1"),
        // The mock cluster has no SASL: the consumer's every login is refused; the
        // producer goes without.
        ("RELAY_CONSUMER_SECURITY_PROTOCOL", "sasl_plaintext"),
        ("RELAY_PRODUCER_SECURITY_PROTOCOL", "plaintext"),
    ];
    let pairs = || vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let serve = ServeSettings::from_vars(pairs()).expect("serve settings");
    let settings = Settings::from_vars(pairs()).expect("settings");
    let relay = Arc::new(
        Relay::with_routes(settings, util::example_routes()).with_credentials(credentials),
    );
    let server = Server::new(relay, serve).expect("server");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while served.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        served.load(Ordering::SeqCst),
        2,
        "the secret was fetched again after the consumer's login was refused"
    );
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("serve stops")
        .expect("serve task")
        .expect("serve ends cleanly");
}

/// A Secrets Manager that accepts the connection and never answers does not hold init
/// past Lambda's init phase: the fetch gives up with a retryable credentials error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_fetch_gives_up_in_time() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    // Accept and hold connections without answering, until the test ends.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept() {
            held.push(stream);
        }
    });
    let aws = sdk_config(&endpoint).await;
    let started = std::time::Instant::now();
    let error = tokio::time::timeout(
        Duration::from_secs(10),
        fetch_scram_secret(&aws, "arn:aws:secretsmanager:eu-west-1:1:secret:s"),
    )
    .await
    .expect("the fetch gives up by itself")
    .expect_err("no answer");
    let elapsed = started.elapsed();
    assert!(error.is_retryable(), "{error}");
    assert!(error.to_string().contains("no answer within"), "{error}");
    assert!(
        elapsed <= cdc_relay::secrets::SECRET_FETCH_TIMEOUT + Duration::from_millis(500),
        "{elapsed:?}"
    );
}

/// A SCRAM login that fails (the mock cluster has no SASL) never shows the password:
/// not in the logs, not in the errors, not in `Debug` output; yet the failure itself
/// is visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_auth_never_reveals_the_password() {
    let captured = crate::observability::captured_logs();
    let password = "pw-never-logged-7c41e";
    let kafka = EmbeddedKafka::start(1).expect("mock cluster");
    let brokers = kafka.bootstrap_servers();
    let settings = Settings::from_vars([
        ("RELAY_BROKERS", brokers.as_str()),
        ("RELAY_AUTH", "scram"),
        ("RELAY_SCRAM_USERNAME", "relay"),
        ("RELAY_SCRAM_PASSWORD", password),
        // The example routes hash a column.
        ("RELAY_HASH_KEY", "a test key of more than 16 bytes"),
        // The mock cluster has no TLS; SASL over plaintext still runs the SCRAM exchange.
        ("RELAY_PRODUCER_SECURITY_PROTOCOL", "sasl_plaintext"),
        ("RELAY_PRODUCER_DEBUG", "security,broker,conf"),
        ("RELAY_DEADLINE_MARGIN_MS", "500"),
        ("RELAY_PARTIAL_BATCH", "true"),
    ])
    .expect("settings");
    assert_eq!(settings.auth.mode, AuthMode::Scram);
    let relay = Function::init(settings)
        .await
        .expect("init survives a failing login");
    let mut context = util::context(4_000);
    context.request_id = "failing-auth".to_owned();
    let response = relay
        .handle(LambdaEvent::new(util::load_event("insert.json"), context))
        .await
        .expect("an answer");
    assert!(
        !response.batch_item_failures.is_empty(),
        "nothing can be produced without a login"
    );

    let logs = String::from_utf8(captured.0.lock().expect("logs").clone()).expect("utf-8");
    let ours: Vec<&str> = logs.lines().filter(|l| l.contains(&brokers)).collect();
    assert!(
        ours.iter()
            .any(|l| l.contains("\"level\":\"ERROR\"") && l.contains("SASL authentication")),
        "the failing login is not visible in the logs:\n{}",
        ours.join("\n")
    );
    if std::env::var_os("SHOW_AUTH_LOGS").is_some() {
        eprintln!("{}", ours.join("\n"));
    }
    assert!(!logs.contains(password), "the password reached the logs");
    let debug = format!("{relay:?}");
    assert!(!debug.contains(password), "the password is in Debug output");
    let sink = relay.relay().sink().expect("producer created at init");
    let refused = sink
        .warm_up(Duration::from_millis(500))
        .await
        .expect_err("no metadata without a login");
    assert!(!refused.to_string().contains(password), "{refused}");
}
