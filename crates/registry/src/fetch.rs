//! Resolving an image reference and fetching its blobs over the OCI
//! distribution API.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use crius_core::{Error, Result};
use futures::Stream;
use oci_spec::image::{Descriptor, Digest, ImageIndex, ImageManifest, MediaType};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, WWW_AUTHENTICATE};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use url::Url;

use crate::auth::{self, Authorization, Credentials};
use crate::hosts::{RegistryConfig, RegistryHost, registry_hosts};
use crate::media::{self, MANIFEST_ACCEPT, MAX_MANIFEST_SIZE, ManifestKind};
use crate::platform::{Platform, select_manifest};
use crate::reference::{self, Reference, check_digest, normalized};

/// How long connecting to a registry may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How much of an error answer is read to quote the registry's message.
const ERROR_BODY_LIMIT: u64 = 16 * 1024;

/// A blob with its descriptor; `bytes` were verified against it.
#[derive(Debug, Clone, PartialEq)]
pub struct Blob {
    pub descriptor: Descriptor,
    pub bytes: Bytes,
}

impl Blob {
    /// The blob's digest, `sha256:…`.
    pub fn digest(&self) -> String {
        self.descriptor.digest().to_string()
    }

    /// The blob's media type.
    pub fn media_type(&self) -> String {
        self.descriptor.media_type().to_string()
    }
}

/// An image resolved for one platform.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The normalized reference (`docker.io/library/busybox:latest`).
    pub name: String,
    /// What the tag or digest points at: an index or a manifest.
    pub top: Blob,
    /// The platform's image manifest (the same as `top` when that is not an
    /// index).
    pub manifest: Blob,
    /// The image config; its digest is the image id.
    pub config: Blob,
    /// The layers, in order (each with an accepted media type).
    pub layers: Vec<Descriptor>,
    /// The uncompressed digests of the layers, from the config.
    pub diff_ids: Vec<String>,
}

impl Resolved {
    /// The image id: the config's digest.
    pub fn image_id(&self) -> String {
        self.config.digest()
    }

    /// `registry/repository@<top digest>`.
    pub fn repo_digest(&self) -> String {
        match reference::parse_reference(&self.name) {
            Ok(r) => reference::repo_digest(&r, &self.top.digest()),
            Err(_) => format!("{}@{}", self.name, self.top.digest()),
        }
    }

    /// `registry/repository:tag`, when the reference has a tag.
    pub fn repo_tag(&self) -> Option<String> {
        reference::parse_reference(&self.name)
            .ok()
            .and_then(|r| reference::repo_tag(&r))
    }
}

/// Fetches one image reference from its registry (and mirrors).
///
/// Cheap to clone; clones share the hosts, their connections and the
/// authorization obtained so far.
#[derive(Clone)]
pub struct Fetcher {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    registry: String,
    repository: String,
    /// Tag or digest to resolve (the digest when both are given).
    target: String,
    digest: Option<String>,
    hosts: Vec<HostClient>,
    progress_timeout: Duration,
    /// Index in `hosts` of the host that resolved.
    resolved_host: Mutex<Option<usize>>,
}

struct HostClient {
    host: RegistryHost,
    client: reqwest::Client,
    creds: Credentials,
    auth: Mutex<Option<Authorization>>,
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher")
            .field("name", &self.inner.name)
            .field(
                "hosts",
                &self
                    .inner
                    .hosts
                    .iter()
                    .map(|h| h.host.base_url())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Fetcher {
    /// Prepares fetching `reference`: works out its hosts from `config`
    /// (mirrors first) and the credentials for each (`creds` first, then
    /// `config.auths` for the host).
    pub fn new(
        config: &RegistryConfig,
        reference: &Reference,
        creds: Option<Credentials>,
    ) -> Result<Fetcher> {
        let registry = reference.registry().to_owned();
        let hosts = registry_hosts(config, &registry)?;
        let mut clients = Vec::with_capacity(hosts.len());
        for host in hosts {
            let client = http_client(&host)?;
            let creds = creds
                .clone()
                .or_else(|| config.credentials_for(&host.host).cloned())
                .or_else(|| {
                    (!host.mirror)
                        .then(|| config.credentials_for(&registry).cloned())
                        .flatten()
                })
                .unwrap_or_default();
            let auth = match &creds {
                Credentials::RegistryToken(t) => Some(Authorization::Bearer(t.clone())),
                _ => None,
            };
            clients.push(HostClient {
                host,
                client,
                creds,
                auth: Mutex::new(auth),
            });
        }
        let digest = reference.digest().map(str::to_owned);
        let target = digest
            .clone()
            .or_else(|| reference.tag().map(str::to_owned))
            .unwrap_or_else(|| "latest".to_owned());
        Ok(Fetcher {
            inner: Arc::new(Inner {
                name: normalized(reference),
                registry,
                repository: reference.repository().to_owned(),
                target,
                digest,
                hosts: clients,
                progress_timeout: config.progress_timeout,
                resolved_host: Mutex::new(None),
            }),
        })
    }

    /// The normalized reference.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The hosts tried, in order.
    pub fn hosts(&self) -> Vec<RegistryHost> {
        self.inner.hosts.iter().map(|h| h.host.clone()).collect()
    }

    /// Resolves the reference for `platform`: the top manifest or index
    /// (verified against the digest in the reference, if any), the
    /// platform's manifest, the config and the layers. Hosts are tried in
    /// order (only those that may resolve tags, or pull for a digest
    /// reference); a host that fails in any way falls back to the next, and
    /// the last host's error is returned.
    pub async fn resolve(&self, platform: &Platform) -> Result<Resolved> {
        let inner = &self.inner;
        let candidates: Vec<usize> = inner
            .hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| {
                h.host.capabilities.resolve || (inner.digest.is_some() && h.host.capabilities.pull)
            })
            .map(|(i, _)| i)
            .collect();
        let mut last_error = None;
        let count = candidates.len();
        for (n, i) in candidates.into_iter().enumerate() {
            let host = &inner.hosts[i];
            match self.resolve_on(host, platform).await {
                Ok(resolved) => {
                    *lock(&inner.resolved_host) = Some(i);
                    tracing::debug!(
                        image = %inner.name,
                        host = %host.host.base_url(),
                        digest = %resolved.top.digest(),
                        "resolved"
                    );
                    return Ok(resolved);
                }
                Err(e) => {
                    if n + 1 < count {
                        tracing::warn!(
                            image = %inner.name,
                            host = %host.host.base_url(),
                            error = %e,
                            "resolving failed on this host; trying the next"
                        );
                    }
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
            Error::FailedPrecondition(format!(
                "no host configured for registry {} may resolve {}",
                inner.registry, inner.name
            ))
        }))
    }

    async fn resolve_on(&self, h: &HostClient, platform: &Platform) -> Result<Resolved> {
        let inner = &self.inner;
        let expected = inner.digest.as_deref().map(|d| (d, None));
        let (top, top_kind) = self.fetch_manifest(h, &inner.target, expected).await?;
        let manifest = match top_kind {
            ManifestKind::Manifest => top.clone(),
            ManifestKind::Index => {
                let index: ImageIndex = serde_json::from_slice(&top.bytes).map_err(|e| {
                    Error::FailedPrecondition(format!(
                        "the index of {} is not a valid image index: {e}",
                        inner.name
                    ))
                })?;
                let chosen = select_manifest(&index, platform).ok_or_else(|| {
                    Error::not_found(format!(
                        "manifest for platform {platform} in image {:?}",
                        inner.name
                    ))
                })?;
                check_size(chosen, &inner.name, "manifest")?;
                let digest = chosen.digest().to_string();
                let (blob, kind) = self
                    .fetch_manifest(h, &digest, Some((&digest, Some(chosen.size()))))
                    .await?;
                if kind != ManifestKind::Manifest {
                    return Err(Error::FailedPrecondition(format!(
                        "the {platform} entry of {}'s index is not an image manifest",
                        inner.name
                    )));
                }
                Blob {
                    descriptor: chosen.clone(),
                    bytes: blob.bytes,
                }
            }
        };
        let parsed: ImageManifest = serde_json::from_slice(&manifest.bytes).map_err(|e| {
            Error::FailedPrecondition(format!(
                "the manifest of {} is not a valid image manifest: {e}",
                inner.name
            ))
        })?;
        let config_desc = parsed.config();
        media::check_config_media_type(config_desc.media_type().as_ref())?;
        for layer in parsed.layers() {
            media::layer_compression(layer.media_type().as_ref())?;
        }
        check_size(config_desc, &inner.name, "config")?;
        let config_bytes = self.fetch_small_blob(h, config_desc).await?;
        let diff_ids = diff_ids(&config_bytes, parsed.layers().len(), &inner.name)?;
        Ok(Resolved {
            name: inner.name.clone(),
            top,
            manifest,
            config: Blob {
                descriptor: config_desc.clone(),
                bytes: config_bytes,
            },
            layers: parsed.layers().clone(),
            diff_ids,
        })
    }

    /// GETs a manifest or index by tag or digest, verifies it and works out
    /// its media type.
    async fn fetch_manifest(
        &self,
        h: &HostClient,
        reference: &str,
        expected: Option<(&str, Option<u64>)>,
    ) -> Result<(Blob, ManifestKind)> {
        let inner = &self.inner;
        let url = h
            .host
            .url(&inner.registry, &inner.repository, "manifests", reference)?;
        let what = format!("image {:?}", inner.name);
        let resp = self.get(h, url, Some(MANIFEST_ACCEPT), &what).await?;
        let content_type = header_str(&resp, reqwest::header::CONTENT_TYPE);
        let header_digest = header_str(&resp, "docker-content-digest");
        let bytes = self
            .read_capped(
                resp,
                &h.host.host,
                &format!("the manifest of {}", inner.name),
            )
            .await?;
        let digest = media::sha256_digest(&bytes);
        match expected {
            Some((want, size)) => media::verify(&bytes, want, size)?,
            None => {
                if let Some(sent) = header_digest.as_deref()
                    && sent.starts_with("sha256:")
                    && sent != digest
                {
                    return Err(Error::DataLoss(format!(
                        "{sent}: the manifest of {} from registry {} has digest {digest}",
                        inner.name, h.host.host
                    )));
                }
            }
        }
        let json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            Error::FailedPrecondition(format!("the manifest of {} is not JSON: {e}", inner.name))
        })?;
        let media_type = media::detect_manifest_media_type(&json, content_type.as_deref());
        let kind = media::manifest_kind(&media_type).map_err(|e| match e {
            Error::FailedPrecondition(m) => {
                Error::FailedPrecondition(format!("image {}: {m}", inner.name))
            }
            e => e,
        })?;
        let descriptor = Descriptor::new(
            MediaType::from(media_type.as_str()),
            bytes.len() as u64,
            parse_digest(&digest)?,
        );
        Ok((Blob { descriptor, bytes }, kind))
    }

    /// GETs a blob of at most [`MAX_MANIFEST_SIZE`] bytes (a config) and
    /// verifies it.
    async fn fetch_small_blob(&self, h: &HostClient, desc: &Descriptor) -> Result<Bytes> {
        let inner = &self.inner;
        let digest = desc.digest().to_string();
        let url = h
            .host
            .url(&inner.registry, &inner.repository, "blobs", &digest)?;
        let what = format!("blob {digest} of image {:?}", inner.name);
        let resp = self.get(h, url, None, &what).await?;
        let bytes = self.read_capped(resp, &h.host.host, &what).await?;
        media::verify(&bytes, &digest, Some(desc.size()))?;
        Ok(bytes)
    }

    /// Streams the blob of `desc` from the host that resolved the image (or
    /// the next host that may pull), verifying its size and sha256 as it
    /// goes. A mismatch, or bytes beyond the declared size, end the stream
    /// with [`Error::DataLoss`] naming the digest; no bytes for the progress
    /// timeout end it with [`Error::DeadlineExceeded`].
    pub async fn blob(&self, desc: &Descriptor) -> Result<BlobStream> {
        let inner = &self.inner;
        let digest = desc.digest().to_string();
        check_digest(&digest).map_err(|reason| Error::invalid("digest", reason))?;
        let first = *lock(&inner.resolved_host);
        let mut order: Vec<usize> = Vec::with_capacity(inner.hosts.len());
        if let Some(i) = first {
            order.push(i);
        }
        order.extend(
            (0..inner.hosts.len())
                .filter(|i| Some(*i) != first && inner.hosts[*i].host.capabilities.pull),
        );
        let mut last_error = None;
        let count = order.len();
        for (n, i) in order.into_iter().enumerate() {
            let h = &inner.hosts[i];
            match self.open_blob(h, desc, &digest).await {
                Ok(resp) => {
                    return Ok(BlobStream::new(
                        resp,
                        digest,
                        desc.size(),
                        h.host.host.clone(),
                        inner.progress_timeout,
                    ));
                }
                Err(e) => {
                    if n + 1 < count {
                        tracing::warn!(
                            image = %inner.name,
                            blob = %digest,
                            host = %h.host.base_url(),
                            error = %e,
                            "fetching the blob failed on this host; trying the next"
                        );
                    }
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
            Error::FailedPrecondition(format!(
                "no host configured for registry {} may pull blobs",
                inner.registry
            ))
        }))
    }

    async fn open_blob(
        &self,
        h: &HostClient,
        desc: &Descriptor,
        digest: &str,
    ) -> Result<reqwest::Response> {
        let inner = &self.inner;
        let url = h
            .host
            .url(&inner.registry, &inner.repository, "blobs", digest)?;
        let what = format!("blob {digest} of image {:?}", inner.name);
        let resp = self.get(h, url, None, &what).await?;
        if let Some(len) = resp.content_length()
            && len != desc.size()
        {
            return Err(Error::DataLoss(format!(
                "{digest}: registry {} sends {len} bytes, the descriptor says {}",
                h.host.host,
                desc.size()
            )));
        }
        Ok(resp)
    }

    /// GET with the host's headers and authorization; answers 200 or an
    /// error (401 after authorizing -> Unauthenticated, 403 ->
    /// PermissionDenied, 404 -> NotFound of `what`, 5xx -> Unavailable).
    async fn get(
        &self,
        h: &HostClient,
        url: Url,
        accept: Option<&str>,
        what: &str,
    ) -> Result<reqwest::Response> {
        let sent = lock(&h.auth).clone();
        let resp = self.send(h, &url, accept, sent.as_ref()).await?;
        let resp = if resp.status() == StatusCode::UNAUTHORIZED {
            let challenges: Vec<auth::Challenge> = resp
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(auth::parse_challenges)
                .collect();
            let authorization = self.authorize(h, &challenges, sent.as_ref()).await?;
            *lock(&h.auth) = Some(authorization.clone());
            let resp = self.send(h, &url, accept, Some(&authorization)).await?;
            if resp.status() == StatusCode::UNAUTHORIZED {
                return Err(self.unauthenticated(h));
            }
            resp
        } else {
            resp
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        Err(self.status_error(h, resp, what).await)
    }

    async fn send(
        &self,
        h: &HostClient,
        url: &Url,
        accept: Option<&str>,
        authorization: Option<&Authorization>,
    ) -> Result<reqwest::Response> {
        let mut req = h.client.get(url.clone());
        for (name, value) in &h.host.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        if let Some(accept) = accept {
            req = req.header(ACCEPT, accept);
        }
        if let Some(a) = authorization {
            req = a.apply(req);
        }
        tracing::debug!(url = %url, auth = ?authorization, "GET");
        let timeout = self.inner.progress_timeout;
        match tokio::time::timeout(timeout, req.send()).await {
            Err(_) => Err(Error::DeadlineExceeded(format!(
                "registry {} did not answer within {timeout:?} ({url})",
                h.host.host
            ))),
            Ok(Err(e)) => Err(transport_error(&h.host.host, &e)),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// The authorization answering `challenges` with the host's credentials.
    async fn authorize(
        &self,
        h: &HostClient,
        challenges: &[auth::Challenge],
        sent: Option<&Authorization>,
    ) -> Result<Authorization> {
        let inner = &self.inner;
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            if let Credentials::RegistryToken(token) = &h.creds {
                if sent.is_some() {
                    return Err(self.unauthenticated(h));
                }
                return Ok(Authorization::Bearer(token.clone()));
            }
            let scope = format!("repository:{}:pull", inner.repository);
            let req = auth::token_request(bearer, &h.creds, &scope).map_err(|m| {
                Error::Unauthenticated(format!(
                    "registry {}: cannot authenticate: {m}",
                    h.host.host
                ))
            })?;
            tracing::debug!(registry = %h.host.host, realm = %req.url, "fetching a bearer token");
            let token =
                auth::fetch_token(&h.client, req, &h.host.host, inner.progress_timeout).await?;
            return Ok(Authorization::Bearer(token));
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            return match &h.creds {
                Credentials::Basic { username, password } => {
                    let a = Authorization::Basic {
                        username: username.clone(),
                        password: password.clone(),
                    };
                    if sent == Some(&a) {
                        Err(self.unauthenticated(h))
                    } else {
                        Ok(a)
                    }
                }
                _ => Err(self.unauthenticated(h)),
            };
        }
        Err(Error::Unauthenticated(format!(
            "registry {} requires authentication with a scheme crius does not support ({})",
            h.host.host,
            challenges
                .iter()
                .map(|c| c.scheme.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    fn unauthenticated(&self, h: &HostClient) -> Error {
        let name = &self.inner.name;
        match h.creds {
            Credentials::Anonymous => Error::Unauthenticated(format!(
                "registry {} refused anonymous access to {name}: the repository does not \
                 exist or needs credentials",
                h.host.host
            )),
            _ => Error::Unauthenticated(format!(
                "registry {} refused the credentials given for {name}",
                h.host.host
            )),
        }
    }

    async fn status_error(&self, h: &HostClient, resp: reqwest::Response, what: &str) -> Error {
        let status = resp.status();
        let detail = error_detail(resp, self.inner.progress_timeout).await;
        let registry = &h.host.host;
        match status.as_u16() {
            404 => Error::not_found(what.to_owned()),
            403 => Error::PermissionDenied(format!(
                "registry {registry} denied access to {what}{detail}"
            )),
            408 | 429 | 500..=599 => Error::Unavailable(format!(
                "registry {registry} answered {status} for {what}{detail}"
            )),
            _ => Error::FailedPrecondition(format!(
                "registry {registry} answered {status} for {what}{detail}"
            )),
        }
    }

    /// Reads a whole body of at most [`MAX_MANIFEST_SIZE`] bytes.
    async fn read_capped(
        &self,
        mut resp: reqwest::Response,
        registry: &str,
        what: &str,
    ) -> Result<Bytes> {
        let too_big = |len: u64| {
            Error::FailedPrecondition(format!(
                "{what} is {len} bytes, more than the limit of {MAX_MANIFEST_SIZE}"
            ))
        };
        if let Some(len) = resp.content_length()
            && len > MAX_MANIFEST_SIZE
        {
            return Err(too_big(len));
        }
        let timeout = self.inner.progress_timeout;
        let mut buf = BytesMut::new();
        loop {
            match tokio::time::timeout(timeout, resp.chunk()).await {
                Err(_) => {
                    return Err(Error::DeadlineExceeded(format!(
                        "registry {registry} sent nothing of {what} for {timeout:?}"
                    )));
                }
                Ok(Err(e)) => return Err(body_error(registry, what, &e)),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => {
                    let len = (buf.len() + chunk.len()) as u64;
                    if len > MAX_MANIFEST_SIZE {
                        return Err(too_big(len));
                    }
                    buf.extend_from_slice(&chunk);
                }
            }
        }
        Ok(buf.freeze())
    }
}

/// A verified stream of a blob's bytes. The last item is an error when the
/// blob is short, long, corrupt or stalls; a clean end means verified.
pub struct BlobStream {
    inner: Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>,
}

impl fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlobStream")
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

struct StreamState {
    resp: reqwest::Response,
    hasher: Sha256,
    received: u64,
    size: u64,
    digest: String,
    registry: String,
    timeout: Duration,
    done: bool,
}

impl BlobStream {
    fn new(
        resp: reqwest::Response,
        digest: String,
        size: u64,
        registry: String,
        timeout: Duration,
    ) -> BlobStream {
        let state = StreamState {
            resp,
            hasher: Sha256::new(),
            received: 0,
            size,
            digest,
            registry,
            timeout,
            done: false,
        };
        let stream = futures::stream::unfold(state, |mut st| async move {
            if st.done {
                return None;
            }
            let item = match tokio::time::timeout(st.timeout, st.resp.chunk()).await {
                Err(_) => Err(Error::DeadlineExceeded(format!(
                    "blob {}: registry {} sent nothing for {:?} ({} of {} bytes received)",
                    st.digest, st.registry, st.timeout, st.received, st.size
                ))),
                Ok(Err(e)) => Err(body_error(&st.registry, &format!("blob {}", st.digest), &e)),
                Ok(Ok(Some(chunk))) => {
                    st.received += chunk.len() as u64;
                    if st.received > st.size {
                        Err(Error::DataLoss(format!(
                            "{}: registry {} sent more than the {} bytes declared",
                            st.digest, st.registry, st.size
                        )))
                    } else {
                        st.hasher.update(&chunk);
                        return Some((Ok(chunk), st));
                    }
                }
                Ok(Ok(None)) => {
                    st.done = true;
                    if st.received < st.size {
                        Err(Error::DataLoss(format!(
                            "{}: registry {} sent {} of the {} bytes declared",
                            st.digest, st.registry, st.received, st.size
                        )))
                    } else {
                        let actual = media::hex_digest(st.hasher.clone().finalize().as_slice());
                        if actual == st.digest {
                            return None;
                        }
                        Err(Error::DataLoss(format!(
                            "{}: registry {} sent content with digest {actual}",
                            st.digest, st.registry
                        )))
                    }
                }
            };
            st.done = true;
            Some((item, st))
        });
        BlobStream {
            inner: Box::pin(stream),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn header_str(
    resp: &reqwest::Response,
    name: impl reqwest::header::AsHeaderName,
) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn parse_digest(digest: &str) -> Result<Digest> {
    Digest::from_str(digest).map_err(|e| Error::Internal(format!("digest {digest}: {e}")))
}

fn check_size(desc: &Descriptor, name: &str, what: &str) -> Result<()> {
    if desc.size() > MAX_MANIFEST_SIZE {
        return Err(Error::FailedPrecondition(format!(
            "the {what} of {name} is {} bytes, more than the limit of {MAX_MANIFEST_SIZE}",
            desc.size()
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
struct ConfigDoc {
    rootfs: Option<RootFs>,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// The config's `rootfs.diff_ids`, one valid sha256 digest per layer.
fn diff_ids(config: &[u8], layers: usize, name: &str) -> Result<Vec<String>> {
    let doc: ConfigDoc = serde_json::from_slice(config).map_err(|e| {
        Error::FailedPrecondition(format!("the config of {name} is not valid: {e}"))
    })?;
    let ids = doc
        .rootfs
        .ok_or_else(|| Error::FailedPrecondition(format!("the config of {name} has no rootfs")))?
        .diff_ids;
    if ids.len() != layers {
        return Err(Error::FailedPrecondition(format!(
            "the config of {name} lists {} diff_ids for {layers} layers",
            ids.len()
        )));
    }
    for id in &ids {
        check_digest(id).map_err(|reason| {
            Error::FailedPrecondition(format!("the config of {name}: {reason}"))
        })?;
    }
    Ok(ids)
}

/// The registry's own error message (`{"errors":[{"code","message"}]}`) or
/// the start of the body, as `": …"`; empty when there is none.
async fn error_detail(mut resp: reqwest::Response, timeout: Duration) -> String {
    let mut body = Vec::new();
    while (body.len() as u64) < ERROR_BODY_LIMIT {
        match tokio::time::timeout(timeout, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(&body)
        && let Some(first) = e.errors.first()
    {
        return format!(": {} {}", first.code, first.message);
    }
    let text = String::from_utf8_lossy(&body);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        let cut: String = text.chars().take(200).collect();
        format!(": {cut}")
    }
}

/// Maps a failure to reach or talk to `registry` to [`Error::Unavailable`]
/// ("registry 127.0.0.1:5999 is not reachable: connection refused").
pub(crate) fn transport_error(registry: &str, e: &reqwest::Error) -> Error {
    Error::Unavailable(format!(
        "registry {registry} is not reachable: {}",
        describe(e)
    ))
}

fn body_error(registry: &str, what: &str, e: &reqwest::Error) -> Error {
    Error::Unavailable(format!(
        "registry {registry}: reading {what} failed: {}",
        describe(e)
    ))
}

/// The causes of an error without reqwest's outer "error sending request
/// for url" wrapper, with well-known I/O and TLS errors spelled plainly.
fn describe(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = cur {
        if let Some(plain) = plain_cause(err) {
            return plain;
        }
        let msg = err.to_string();
        // hyper-util's "client error (Connect)" says nothing the causes do not.
        if !msg.starts_with("client error (") && !parts.iter().any(|p| p.contains(&msg)) {
            parts.push(msg);
        }
        // io::Error's source() skips the error it wraps: look inside.
        cur = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner),
            None => err.source(),
        };
    }
    if e.is_timeout() {
        return "timed out".to_owned();
    }
    if parts.is_empty() {
        return e.to_string();
    }
    parts.join(": ")
}

/// A short description of a well-known cause.
fn plain_cause(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(tls) = err.downcast_ref::<rustls::Error>() {
        return Some(format!("TLS handshake failed: {tls}"));
    }
    let io = err.downcast_ref::<std::io::Error>()?;
    use std::io::ErrorKind::*;
    let plain = match io.kind() {
        ConnectionRefused => "connection refused",
        ConnectionReset => "connection reset",
        ConnectionAborted => "connection aborted",
        TimedOut => "timed out",
        HostUnreachable => "host unreachable",
        NetworkUnreachable => "network unreachable",
        _ => return None,
    };
    Some(plain.to_owned())
}

/// A client for `host`'s TLS settings; clients (and their connection pools)
/// are shared by every fetcher with the same settings.
fn http_client(host: &RegistryHost) -> Result<reqwest::Client> {
    install_crypto_provider();
    let mut pems = Vec::with_capacity(host.ca.len());
    for ca in &host.ca {
        let pem = std::fs::read(ca).map_err(|e| {
            Error::io(
                format!(
                    "reading CA certificate {} for registry {}",
                    ca.display(),
                    host.host
                ),
                e,
            )
        })?;
        pems.push(pem);
    }
    // Per tokio runtime too: a pooled connection's task lives on the
    // runtime that opened it, and a client reused from another runtime that
    // has ended fails with "dispatch task is gone" (criusd has one runtime;
    // tests have one per test).
    type Key = (bool, Vec<Vec<u8>>, Option<tokio::runtime::Id>);
    static CLIENTS: OnceLock<Mutex<HashMap<Key, reqwest::Client>>> = OnceLock::new();
    let runtime = tokio::runtime::Handle::try_current().ok().map(|h| h.id());
    let key = (host.skip_verify, pems, runtime);
    let clients = CLIENTS.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(client) = lock(clients).get(&key) {
        return Ok(client.clone());
    }
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("crius/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .tls_danger_accept_invalid_certs(key.0);
    for (pem, path) in key.1.iter().zip(&host.ca) {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
            Error::FailedPrecondition(format!(
                "CA certificate {} for registry {}: {e}",
                path.display(),
                host.host
            ))
        })?;
        builder = builder.tls_certs_merge(certs);
    }
    let client = builder.build().map_err(|e| {
        Error::FailedPrecondition(format!(
            "setting up the HTTP client for registry {}: {}",
            host.host,
            describe(&e)
        ))
    })?;
    lock(clients).insert(key, client.clone());
    Ok(client)
}

/// Installs rustls' ring provider as the process default (once; a provider
/// installed by someone else stays).
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if rustls::crypto::ring::default_provider()
            .install_default()
            .is_err()
        {
            tracing::debug!("a rustls crypto provider was installed already");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn futures_are_send() -> Result<()> {
        fn assert_send<T: Send + 'static>(_: &T) {}
        let reference = crate::parse_reference("127.0.0.1:1/a/b:c")?;
        let fetcher = Fetcher::new(&RegistryConfig::default(), &reference, None)?;
        let platform = Platform::host();
        let resolve = {
            let f = fetcher.clone();
            async move { f.resolve(&platform).await }
        };
        assert_send(&resolve);
        let d = format!("sha256:{}", "a".repeat(64));
        let desc = Descriptor::new(MediaType::ImageLayerGzip, 1, parse_digest(&d)?);
        let blob = async move { fetcher.blob(&desc).await };
        assert_send(&blob);
        Ok(())
    }

    #[test]
    fn diff_ids_are_checked() {
        let d = format!("sha256:{}", "a".repeat(64));
        let config = serde_json::json!({"rootfs": {"type": "layers", "diff_ids": [d]}}).to_string();
        assert_eq!(
            diff_ids(config.as_bytes(), 1, "x").ok(),
            Some(vec![d.clone()])
        );
        assert!(matches!(
            diff_ids(config.as_bytes(), 2, "x"),
            Err(Error::FailedPrecondition(_))
        ));
        let bad = serde_json::json!({"rootfs": {"diff_ids": ["sha256:zz"]}}).to_string();
        assert!(diff_ids(bad.as_bytes(), 1, "x").is_err());
        assert!(diff_ids(b"{}", 0, "x").is_err());
        assert!(diff_ids(b"nope", 0, "x").is_err());
    }

    #[test]
    fn size_limits() {
        let d = format!("sha256:{}", "a".repeat(64));
        let ok = Descriptor::new(
            MediaType::ImageConfig,
            MAX_MANIFEST_SIZE,
            parse_digest(&d).expect("digest"),
        );
        assert!(check_size(&ok, "x", "config").is_ok());
        let big = Descriptor::new(
            MediaType::ImageConfig,
            MAX_MANIFEST_SIZE + 1,
            parse_digest(&d).expect("digest"),
        );
        assert!(matches!(
            check_size(&big, "x", "config"),
            Err(Error::FailedPrecondition(_))
        ));
    }
}
