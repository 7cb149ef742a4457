//! Optional TLS of the streaming server ([`ServerTls`]) and of its client
//! ([`ClientTls`]): rustls with its ring provider, passed explicitly (no
//! process-wide default is needed or installed).
//!
//! The server takes a PEM certificate chain and key (PKCS#8, RSA or EC),
//! or makes a self-signed certificate in memory ([`ServerTls::self_signed`]),
//! as containerd's CRI does for `enable_tls_streaming` without
//! `x509_key_pair_streaming`. Both sides speak HTTP/1.1 only (ALPN
//! `http/1.1`): the upgrades to SPDY and WebSocket need it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The one application protocol either side offers.
const HTTP11: &[u8] = b"http/1.1";
/// How long the self-signed certificate is valid from start-up (it lives
/// only as long as the daemon; the hour before covers clock skew).
const SELF_SIGNED_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Why TLS could not be set up; every file error names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not PEM or has nothing of the kind wanted.
    #[error("{}: {what}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// The key is unusable or does not belong to the certificate.
    #[error("{}: not a usable key for the certificate in {}: {source}", key.display(), cert.display())]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' reason.
        source: rustls::Error,
    },
    /// The self-signed certificate could not be made.
    #[error("making a self-signed certificate: {0}")]
    SelfSigned(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The server's TLS: a certificate and key, HTTP/1.1 only.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerTls { .. }")
    }
}

impl ServerTls {
    /// Loads a PEM certificate chain (leaf first) and its PEM key (PKCS#8,
    /// RSA or EC); a key that does not fit the leaf is refused. Reads the
    /// files: call it off the async workers.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let chain = read_certs(cert)?;
        let key_bytes = read(key)?;
        let key_der = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| TlsError::Pem {
            path: key.to_owned(),
            what: pem_problem(e, "private key (PKCS#8, RSA or EC)"),
        })?;
        Self::new(chain, key_der).map_err(|source| TlsError::Pair {
            cert: cert.to_owned(),
            key: key.to_owned(),
            source,
        })
    }

    /// A fresh ECDSA P-256 key and a self-signed certificate for `names`
    /// (IP addresses become IP SANs, others DNS SANs; the first is the
    /// common name), held in memory only; also answers the certificate, for
    /// a client to trust.
    pub fn self_signed(names: &[String]) -> Result<(Self, CertificateDer<'static>), TlsError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = rcgen::CertificateParams::new(names.to_vec())?;
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(
            rcgen::DnType::CommonName,
            names.first().map_or("crius", String::as_str),
        );
        params.distinguished_name = dn;
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(3600)).into();
        params.not_after = (now + SELF_SIGNED_VALIDITY).into();
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.self_signed(&key)?.der().clone();
        let tls = Self::new(vec![cert.clone()], PrivateKeyDer::from(key))?;
        Ok((tls, cert))
    }

    fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, rustls::Error> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![HTTP11.to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.clone())
    }
}

/// How a client checks the server's certificate.
///
/// For comparison, kubelet's proxy (`proxyStream`: apimachinery's
/// `UpgradeAwareHandler` with no transport, dialing through `DialURL`) does
/// *not* skip verification of a runtime's `https` streaming URL: Go's
/// default TLS config checks the chain against the node's system roots and
/// the URL's host. A self-signed certificate (containerd's
/// `enable_tls_streaming` without files) therefore fails there with
/// "certificate signed by unknown authority", which is why containerd
/// serves plain HTTP on loopback by default; crictl and critest skip
/// verification instead, as [`ClientTls::insecure`] does.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientTls { .. }")
    }
}

impl ClientTls {
    /// Trusts the certificates of a PEM file (CA or self-signed server
    /// certificates). Reads the file: call it off the async workers.
    pub fn from_roots_pem(path: &Path) -> Result<Self, TlsError> {
        let roots = read_certs(path)?;
        Self::from_roots(roots).map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            what: e.to_string(),
        })
    }

    /// Trusts `roots` (DER).
    pub fn from_roots(
        roots: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Result<Self, TlsError> {
        let mut store = rustls::RootCertStore::empty();
        for root in roots {
            store.add(root)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(Self::with_alpn(config))
    }

    /// Accepts any certificate (the handshake's signatures are still
    /// checked): the connection is encrypted but the server not
    /// authenticated, as crictl's streaming client does.
    pub fn insecure() -> Result<Self, TlsError> {
        let provider = provider();
        let verifier = Arc::new(SkipVerification(provider.signature_verification_algorithms));
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Self::with_alpn(config))
    }

    fn with_alpn(mut config: rustls::ClientConfig) -> Self {
        config.alpn_protocols = vec![HTTP11.to_vec()];
        Self {
            config: Arc::new(config),
        }
    }

    pub(crate) fn connector(&self) -> TlsConnector {
        TlsConnector::from(self.config.clone())
    }
}

/// rustls with ring, whatever provider the process installed.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every CERTIFICATE of a PEM file; at least one.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let pem_err = |what: String| TlsError::Pem {
        path: path.to_owned(),
        what,
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(pem_problem(e, "certificate")))?;
    if certs.is_empty() {
        return Err(pem_err("no PEM certificate in it".into()));
    }
    Ok(certs)
}

fn pem_problem(e: rustls::pki_types::pem::Error, wanted: &str) -> String {
    match e {
        rustls::pki_types::pem::Error::NoItemsFound => format!("no PEM {wanted} in it"),
        e => format!("not valid PEM: {e}"),
    }
}

/// Takes any server certificate; checks only the handshake signatures.
#[derive(Debug)]
struct SkipVerification(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for SkipVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
