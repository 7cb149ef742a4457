//! The streaming server's TLS from `[streaming]`: the configured PEM files,
//! or a self-signed certificate for this node, made at start-up and held
//! in memory only (containerd's `enable_tls_streaming` without
//! `x509_key_pair_streaming` does the same: the hostname as the subject,
//! every interface address as a subject alternative name).

use std::net::IpAddr;

use anyhow::Context;
use crius_core::config::StreamingConfig;
use crius_stream::tls::ServerTls;

/// The server's TLS, `None` without `streaming.tls`. Reads files and
/// interfaces: run it on the blocking pool.
pub(crate) fn server_tls(s: &StreamingConfig, ip: IpAddr) -> anyhow::Result<Option<ServerTls>> {
    if !s.tls {
        return Ok(None);
    }
    if !s.tls_cert_file.as_os_str().is_empty() {
        let tls = ServerTls::from_pem_files(&s.tls_cert_file, &s.tls_key_file)
            .context("streaming.tls_cert_file / streaming.tls_key_file")?;
        tracing::info!(cert = %s.tls_cert_file.display(), "streaming over TLS");
        return Ok(Some(tls));
    }
    let names = node_names(ip);
    let (tls, _) = ServerTls::self_signed(&names)
        .with_context(|| format!("streaming.tls: a self-signed certificate for {names:?}"))?;
    tracing::info!(
        ?names,
        "streaming over TLS with a self-signed certificate (in memory only)"
    );
    Ok(Some(tls))
}

/// The hostname, the streaming address (unless a wildcard) and every
/// interface address, each once, in that order.
fn node_names(ip: IpAddr) -> Vec<String> {
    let mut names = Vec::new();
    match nix::unistd::gethostname() {
        Ok(host) => names.extend(host.to_str().map(str::to_owned)),
        Err(e) => tracing::warn!(error = %e, "self-signed streaming certificate: no hostname"),
    }
    if !ip.is_unspecified() {
        names.push(ip.to_string());
    }
    match nix::ifaddrs::getifaddrs() {
        Ok(addrs) => names.extend(addrs.filter_map(|a| a.address).filter_map(|a| {
            let v4 = a.as_sockaddr_in().map(|s| IpAddr::V4(s.ip()));
            v4.or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
                .map(|ip| ip.to_string())
        })),
        Err(e) => {
            tracing::warn!(error = %e, "self-signed streaming certificate: no interface addresses")
        }
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| !n.is_empty() && seen.insert(n.clone()));
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_tls_there_is_none() {
        let s = StreamingConfig::default();
        let tls = server_tls(&s, IpAddr::from([127, 0, 0, 1])).expect("no TLS");
        assert!(tls.is_none());
    }

    #[test]
    fn the_self_signed_certificate_names_the_address_and_loopback() {
        let names = node_names(IpAddr::from([10, 1, 2, 3]));
        assert!(names.contains(&"10.1.2.3".to_owned()), "{names:?}");
        assert!(names.contains(&"127.0.0.1".to_owned()), "{names:?}");
        let s = StreamingConfig {
            tls: true,
            ..StreamingConfig::default()
        };
        let tls = server_tls(&s, IpAddr::from([127, 0, 0, 1])).expect("self-signed");
        assert!(tls.is_some());
    }

    #[test]
    fn a_missing_file_fails_naming_it() {
        let s = StreamingConfig {
            tls: true,
            tls_cert_file: "/nonexistent/crius-streaming.crt".into(),
            tls_key_file: "/nonexistent/crius-streaming.key".into(),
            ..StreamingConfig::default()
        };
        let err = server_tls(&s, IpAddr::from([127, 0, 0, 1])).expect_err("refused");
        let text = format!("{err:#}");
        assert!(text.contains("/nonexistent/crius-streaming.crt"), "{text}");
    }
}
