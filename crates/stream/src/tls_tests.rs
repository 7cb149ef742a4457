//! TLS of the streaming server and client over loopback: a self-signed
//! certificate trusted as the client's root, exec over SPDY and WebSocket
//! through TLS, refused handshakes, plain HTTP on the TLS port, and
//! certificate and key files.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::channel::ExitStatus;
use crate::client::{self, ClientError, ClientTls, Transport};
use crate::server::ServerConfig;
use crate::server_tests::{Harness, WAIT, exec_request, options, read_to_end, start};
use crate::tls::{ServerTls, TlsError};

/// The names the test certificates are for.
fn loopback() -> Vec<String> {
    vec!["127.0.0.1".into(), "localhost".into()]
}

/// A server with a fresh self-signed certificate, and that certificate.
async fn tls_server(tls: ServerTls) -> Harness {
    start(ServerConfig {
        tls: Some(tls),
        ..ServerConfig::default()
    })
    .await
}

fn self_signed() -> (ServerTls, CertificateDer<'static>) {
    ServerTls::self_signed(&loopback()).expect("self-signed")
}

/// Echo through `url`: stdin comes back on stdout, "err" on stderr, 0.
async fn echo(url: &str, transport: Transport, tls: &ClientTls) -> Result<(), ClientError> {
    let mut session = client::exec_tls(url, options(true, false), transport, tls).await?;
    let mut stdin = session.stdin.take().expect("stdin");
    stdin.write_all(b"over tls").await.expect("writes");
    stdin.shutdown().await.expect("EOF");
    let stdout = tokio::spawn(read_to_end(session.stdout.take()));
    let stderr = tokio::spawn(read_to_end(session.stderr.take()));
    let status = timeout(WAIT, session.exit.wait()).await.expect("in time");
    assert_eq!(stdout.await.expect("stdout"), "over tls");
    assert_eq!(stderr.await.expect("stderr"), "err\n");
    assert_eq!(status?, ExitStatus::from_code(0, "exit"));
    Ok(())
}

async fn echo_url(h: &Harness) -> String {
    let url = h
        .urls
        .url(&exec_request(&["echo", "0"], true, false))
        .expect("url");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    url
}

async fn stop(h: Harness) {
    h.stop.cancel();
    timeout(WAIT, h.served)
        .await
        .expect("stops")
        .expect("joins");
}

async fn exec_over_tls(transport: Transport) {
    let (tls, cert) = self_signed();
    let h = tls_server(tls).await;
    let client = ClientTls::from_roots([cert]).expect("roots");
    echo(&echo_url(&h).await, transport, &client)
        .await
        .expect("exec over TLS");
    stop(h).await;
}

#[tokio::test]
async fn spdy_exec_runs_over_tls_with_the_self_signed_certificate_as_root() {
    exec_over_tls(Transport::Spdy).await;
}

#[tokio::test]
async fn websocket_exec_runs_over_tls_with_the_self_signed_certificate_as_root() {
    exec_over_tls(Transport::WebSocket).await;
}

#[tokio::test]
async fn an_insecure_client_takes_any_certificate() {
    let (tls, _) = self_signed();
    let h = tls_server(tls).await;
    let client = ClientTls::insecure().expect("insecure");
    echo(&echo_url(&h).await, Transport::Spdy, &client)
        .await
        .expect("exec");
    stop(h).await;
}

#[tokio::test]
async fn a_client_without_the_root_fails_the_handshake_and_calls_nothing() {
    let (tls, _) = self_signed();
    let h = tls_server(tls).await;
    let (_, other) = self_signed();
    let client = ClientTls::from_roots([other]).expect("roots");
    let url = echo_url(&h).await;
    let refused = client::exec_tls(&url, options(true, false), Transport::Spdy, &client).await;
    match refused {
        Err(ClientError::Handshake(e)) => {
            let text = e.to_string();
            assert!(text.contains("certificate"), "{text}");
        }
        Err(e) => panic!("not a handshake error: {e}"),
        Ok(_) => panic!("an untrusted server was accepted"),
    }
    assert_eq!(h.fake.calls.load(Ordering::SeqCst), 0);
    // The token was never read: a trusted client can still use it.
    let insecure = ClientTls::insecure().expect("insecure");
    echo(&url, Transport::Spdy, &insecure).await.expect("exec");
    stop(h).await;
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_nothing_and_the_server_stays_healthy() {
    let (tls, cert) = self_signed();
    let h = tls_server(tls).await;
    let url = echo_url(&h).await;
    let plain = url.replacen("https://", "http://", 1);
    let refused = client::exec(&plain, options(true, false), Transport::Spdy).await;
    assert!(
        matches!(refused, Err(ClientError::Http(_))),
        "{:?}",
        refused.err()
    );
    let addr = plain
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("authority")
        .to_owned();
    let mut raw = TcpStream::connect(&addr).await.expect("connects");
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("writes");
    // Closed with the request unread: an EOF or a reset, never a byte.
    let mut answer = Vec::new();
    let read = timeout(WAIT, raw.read_to_end(&mut answer))
        .await
        .expect("closed in time");
    match read {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
    assert_eq!(h.fake.calls.load(Ordering::SeqCst), 0);
    let client = ClientTls::from_roots([cert]).expect("roots");
    echo(&url, Transport::WebSocket, &client)
        .await
        .expect("a TLS exec after the plain clients");
    stop(h).await;
}

#[tokio::test]
async fn an_https_url_needs_client_tls() {
    let (tls, _) = self_signed();
    let h = tls_server(tls).await;
    let url = echo_url(&h).await;
    let refused = client::exec(&url, options(false, false), Transport::Spdy).await;
    assert!(
        matches!(refused, Err(ClientError::NeedsTls(_))),
        "{:?}",
        refused.err()
    );
    stop(h).await;
}

/// PEM text of one DER item.
fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// One DER TLV of `der`: its content and what follows it.
fn der_item(der: &[u8]) -> (&[u8], &[u8]) {
    let (len, head) = match der[1] {
        n if n < 0x80 => (usize::from(n), 2),
        0x81 => (usize::from(der[2]), 3),
        0x82 => (usize::from(der[2]) << 8 | usize::from(der[3]), 4),
        n => panic!("length form {n:#x}"),
    };
    (&der[head..head + len], &der[head + len..])
}

/// The SEC1 `ECPrivateKey` inside a PKCS#8 `PrivateKeyInfo` (its last
/// field, an OCTET STRING).
fn sec1_of_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
    let (info, _) = der_item(pkcs8);
    let (_version, rest) = der_item(info);
    let (_algorithm, octets) = der_item(rest);
    assert_eq!(octets[0], 0x04, "an OCTET STRING");
    der_item(octets).0.to_vec()
}

/// A certificate for loopback and its key pair, as rcgen makes them.
fn generated() -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(loopback())
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    (cert, key)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writes");
    path
}

#[tokio::test]
async fn pem_files_with_pkcs8_and_ec_keys_load_and_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = generated();
    let cert_file = write(dir.path(), "cert.pem", &cert.pem());
    let pkcs8 = write(dir.path(), "pkcs8.pem", &key.serialize_pem());
    assert!(
        std::fs::read_to_string(&pkcs8)
            .expect("reads")
            .contains("BEGIN PRIVATE KEY")
    );
    ServerTls::from_pem_files(&cert_file, &pkcs8).expect("PKCS#8 key loads");
    let sec1 = sec1_of_pkcs8(&key.serialize_der());
    let ec = write(dir.path(), "ec.pem", &pem("EC PRIVATE KEY", &sec1));
    let tls = ServerTls::from_pem_files(&cert_file, &ec).expect("EC key loads");
    let h = tls_server(tls).await;
    let client = ClientTls::from_roots_pem(&cert_file).expect("roots from the file");
    echo(&echo_url(&h).await, Transport::Spdy, &client)
        .await
        .expect("exec with the loaded certificate");
    stop(h).await;
}

#[test]
fn a_key_of_another_certificate_is_refused_naming_the_key_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, _) = generated();
    let (_, other_key) = generated();
    let cert_file = write(dir.path(), "cert.pem", &cert.pem());
    let key_file = write(dir.path(), "other.key", &other_key.serialize_pem());
    let err = ServerTls::from_pem_files(&cert_file, &key_file).expect_err("mismatch");
    assert!(matches!(err, TlsError::Pair { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.starts_with(&key_file.display().to_string()), "{text}");
    assert!(text.contains(&cert_file.display().to_string()), "{text}");
}

#[test]
fn garbage_and_missing_files_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = generated();
    let cert_file = write(dir.path(), "cert.pem", &cert.pem());
    let key_file = write(dir.path(), "key.pem", &key.serialize_pem());
    let garbage = write(dir.path(), "garbage", "not a certificate\n");
    let broken = write(
        dir.path(),
        "broken.pem",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let missing = dir.path().join("missing.pem");
    let cases = [
        (&garbage, &key_file, &garbage),
        (&cert_file, &garbage, &garbage),
        (&cert_file, &broken, &broken),
        (&missing, &key_file, &missing),
        (&cert_file, &missing, &missing),
    ];
    for (cert_path, key_path, named) in cases {
        let err = ServerTls::from_pem_files(cert_path, key_path).expect_err("refused");
        let text = err.to_string();
        assert!(
            text.starts_with(&named.display().to_string()),
            "{cert_path:?} {key_path:?}: {text}"
        );
    }
    let err = ClientTls::from_roots_pem(&garbage).expect_err("no roots");
    assert!(err.to_string().contains("no PEM certificate"), "{err}");
}
