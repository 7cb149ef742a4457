//! The content store: blobs addressed by digest, with labels (containerd's
//! garbage collector follows the `containerd.io/gc.ref.*` ones).
//!
//! Writing goes through containerd's bidirectional `Content.Write` stream
//! under a *reference* (an ingest name): containerd keeps the partial data
//! under that name and verifies size and digest when the write is committed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::{Error, Result};
use bytes::{Bytes, BytesMut};
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::{
    AbortRequest, DeleteContentRequest, Info, InfoRequest, ListContentRequest, ListStatusesRequest,
    ReadContentRequest, UpdateRequest, WriteAction, WriteContentRequest, WriteContentResponse,
};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tonic::codec::Streaming;

use crate::{Containerd, map_status, not_found_as_none, not_found_ok};

/// The largest `data` of one Write message.
pub const WRITE_CHUNK: usize = 1 << 20;

/// How long a write waits for another writer of the same reference (which
/// holds containerd's lock on it) to finish.
const LOCKED_REF_WAIT: Duration = Duration::from_secs(30 * 60);

/// How long closing a write stream may take once we are done with it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the content store knows about a blob.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentInfo {
    pub digest: String,
    pub size: u64,
    pub labels: HashMap<String, String>,
}

impl From<Info> for ContentInfo {
    fn from(i: Info) -> Self {
        ContentInfo {
            digest: i.digest,
            size: u64::try_from(i.size).unwrap_or(0),
            labels: i.labels,
        }
    }
}

/// How a write ended when it did not fail.
enum Written {
    /// We committed the blob.
    Committed,
    /// The blob was in the store already (or someone else committed it
    /// while we wrote); our own ingest is gone.
    Exists,
}

/// An open `Content.Write` stream: we send a message, containerd answers it.
struct Session {
    reference: String,
    tx: Option<mpsc::Sender<WriteContentRequest>>,
    responses: Streaming<WriteContentResponse>,
    /// containerd has all of the expected blob under this ingest already
    /// (see [`Containerd::content_write`]): commit without sending data.
    complete: bool,
}

impl Session {
    /// Sends `msg` and waits for containerd's answer to it.
    async fn call(
        &mut self,
        msg: WriteContentRequest,
    ) -> std::result::Result<WriteContentResponse, tonic::Status> {
        let sent = match &self.tx {
            Some(tx) => tx.send(msg).await.is_ok(),
            None => false,
        };
        // When the send fails the call is over; its status says why.
        match self.responses.message().await {
            Ok(Some(resp)) if sent => Ok(resp),
            Ok(Some(_)) => Err(tonic::Status::internal(
                "content write stream answered a message it was not sent",
            )),
            Ok(None) => Err(tonic::Status::unavailable(format!(
                "containerd closed the write stream of {}",
                self.reference
            ))),
            Err(s) => Err(s),
        }
    }

    /// Half-closes our side and waits until containerd ended the call (so
    /// it no longer holds the reference's lock or its file).
    async fn close(mut self) {
        self.tx = None;
        let drain = async { while let Ok(Some(_)) = self.responses.message().await {} };
        if tokio::time::timeout(CLOSE_TIMEOUT, drain).await.is_err() {
            tracing::warn!(reference = %self.reference, "containerd did not end the content write stream");
        }
    }
}

/// The crius error for a status of a content write of `digest`.
fn write_error(digest: &str, s: &tonic::Status) -> Error {
    // containerd 1.6 reports a digest or size that does not match the one
    // expected at commit as FailedPrecondition "unexpected commit digest|size".
    if s.code() == tonic::Code::FailedPrecondition && s.message().contains("unexpected commit") {
        return Error::Corrupt(format!(
            "content {digest} failed verification: {}",
            s.message()
        ));
    }
    Error::Status {
        op: "content write",
        status: s.clone(),
    }
}

/// True for containerd's "another writer holds this reference" refusal.
fn is_locked(s: &tonic::Status) -> bool {
    s.code() == tonic::Code::Unavailable && s.message().contains("locked")
}

impl Containerd {
    pub(crate) fn content(&self) -> ContentClient<crate::timed::Timed> {
        ContentClient::new(self.channel.clone())
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }

    /// What the store knows about `digest`; `None` when it does not hold it.
    pub async fn content_info(&self, digest: &str) -> Result<Option<ContentInfo>> {
        let r = self
            .content()
            .info(self.request(InfoRequest {
                digest: digest.to_string(),
            }))
            .await;
        Ok(not_found_as_none("content info", r)?
            .and_then(|r| r.into_inner().info)
            .map(ContentInfo::from))
    }

    /// The blobs that match `filters` (containerd's filter syntax, e.g.
    /// `labels."containerd.io/uncompressed"`); all of them when empty.
    pub async fn content_list(&self, filters: &[String]) -> Result<Vec<ContentInfo>> {
        let mut stream = self
            .content()
            .list(self.request(ListContentRequest {
                filters: filters.to_vec(),
            }))
            .await
            .map_err(map_status("content list"))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(map_status("content list"))?;
            out.extend(batch.info.into_iter().map(ContentInfo::from));
        }
        Ok(out)
    }

    /// The whole blob `digest`. Refuses with `FailedPrecondition`, before
    /// reading anything, when it is larger than `max_size`; `NotFound` when
    /// the store does not hold it.
    pub async fn content_read(&self, digest: &str, max_size: u64) -> Result<Bytes> {
        let info = self
            .content_info(digest)
            .await?
            .ok_or_else(|| Error::Missing {
                what: format!("content {digest}"),
            })?;
        if info.size > max_size {
            return Err(Error::Precondition(format!(
                "content {digest} is {} bytes, more than the {max_size} allowed",
                info.size
            )));
        }
        let mut stream = self.content_chunks(digest).await?;
        let mut buf = BytesMut::with_capacity(usize::try_from(info.size).unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if buf.len() as u64 + chunk.data.len() as u64 > max_size {
                return Err(Error::Precondition(format!(
                    "content {digest} is more than the {max_size} bytes allowed"
                )));
            }
            buf.extend_from_slice(&chunk.data);
        }
        if buf.len() as u64 != info.size {
            return Err(Error::Corrupt(format!(
                "content {digest}: read {} bytes of {}",
                buf.len(),
                info.size
            )));
        }
        Ok(buf.freeze())
    }

    /// Blob `digest`, whole, as the chunks containerd sends.
    pub(crate) async fn content_chunks(
        &self,
        digest: &str,
    ) -> Result<
        impl Stream<Item = Result<containerd_client::services::v1::ReadContentResponse>> + use<>,
    > {
        let stream = self
            .content()
            .read(self.request(ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            }))
            .await
            .map_err(map_status("content read"))?
            .into_inner();
        Ok(stream.map(|c| c.map_err(map_status("content read"))))
    }

    /// Sets `labels` on blob `digest`, keeping its other labels. No labels:
    /// nothing to do (an empty update mask would make containerd replace
    /// every label).
    pub async fn content_update_labels(
        &self,
        digest: &str,
        labels: HashMap<String, String>,
    ) -> Result<()> {
        if labels.is_empty() {
            return Ok(());
        }
        let mut paths: Vec<String> = labels.keys().map(|k| format!("labels.{k}")).collect();
        paths.sort();
        self.content()
            .update(self.request(UpdateRequest {
                info: Some(Info {
                    digest: digest.to_string(),
                    labels,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask { paths }),
            }))
            .await
            .map_err(map_status("content update"))?;
        Ok(())
    }

    /// Deletes blob `digest` from this namespace; absent is fine.
    pub async fn content_delete(&self, digest: &str) -> Result<()> {
        let r = self
            .content()
            .delete(self.request(DeleteContentRequest {
                digest: digest.to_string(),
            }))
            .await;
        not_found_ok("content delete", r)
    }

    /// Drops the partial ingest `reference`; absent is fine.
    pub async fn content_abort(&self, reference: &str) -> Result<()> {
        let r = self
            .content()
            .abort(self.request(AbortRequest {
                r#ref: reference.to_string(),
            }))
            .await;
        not_found_ok("content abort", r)
    }

    /// The references of the ingests in progress (or left over) in this
    /// namespace.
    pub async fn content_list_statuses(&self) -> Result<Vec<String>> {
        let resp = self
            .content()
            .list_statuses(self.request(ListStatusesRequest { filters: vec![] }))
            .await
            .map_err(map_status("content list statuses"))?
            .into_inner();
        let mut refs: Vec<String> = resp.statuses.into_iter().map(|s| s.r#ref).collect();
        refs.sort();
        Ok(refs)
    }

    /// Stores a small blob held in memory (a manifest, an index, a config):
    /// [`Containerd::content_write`] with its size.
    pub async fn content_write_bytes(
        &self,
        reference: &str,
        digest: &str,
        labels: HashMap<String, String>,
        data: Bytes,
    ) -> Result<()> {
        let size = data.len() as u64;
        self.content_write(
            reference,
            digest,
            size,
            labels,
            futures::stream::iter([Ok(data)]),
        )
        .await
    }

    /// Stores the blob `data` streams as `expected_digest` with `labels`,
    /// through the ingest `reference`.
    ///
    /// - A blob the store holds already (found when the write opens, or
    ///   committed by someone else meanwhile) is success; `labels` are then
    ///   merged into its labels ([`Containerd::content_update_labels`]).
    /// - A partial ingest left under `reference` (by a crash) is restarted
    ///   from offset 0: `data` always starts at the blob's first byte.
    ///   When containerd reports the whole blob under the ingest already
    ///   (offset = `expected_size`, digest = `expected_digest`), it is
    ///   committed at once and `data` is never polled. containerd 1.6 does
    ///   so for a blob it holds for another namespace, or one deleted from
    ///   this namespace but not yet garbage-collected ("shared" content).
    /// - While another writer holds `reference`, waits for it (up to 30 min).
    /// - containerd verifies size and digest at commit; a mismatch (or a
    ///   stream longer or shorter than `expected_size`) is `DataLoss` naming
    ///   the digest.
    /// - On any failure, including an error item of `data` (nothing more is
    ///   sent then), the ingest is aborted, so no partial data is left.
    pub async fn content_write<S>(
        &self,
        reference: &str,
        expected_digest: &str,
        expected_size: u64,
        labels: HashMap<String, String>,
        data: S,
    ) -> Result<()>
    where
        S: Stream<Item = Result<Bytes>> + Send + 'static,
    {
        let session = match self
            .write_open(reference, expected_digest, expected_size)
            .await?
        {
            Some(s) => s,
            None => {
                tracing::debug!(digest = expected_digest, "content exists already");
                return self.content_update_labels(expected_digest, labels).await;
            }
        };
        let mut session = session;
        let result = write_all(
            &mut session,
            expected_digest,
            expected_size,
            labels.clone(),
            data,
        )
        .await;
        session.close().await;
        match result {
            Ok(Written::Committed) => {
                tracing::debug!(
                    digest = expected_digest,
                    size = expected_size,
                    "content committed"
                );
                Ok(())
            }
            Ok(Written::Exists) => {
                tracing::debug!(
                    digest = expected_digest,
                    "content committed by someone else"
                );
                // containerd dropped our ingest itself; make sure.
                self.abort_quietly(reference).await;
                self.content_update_labels(expected_digest, labels).await
            }
            Err(e) => {
                self.abort_quietly(reference).await;
                Err(e)
            }
        }
    }

    async fn abort_quietly(&self, reference: &str) {
        if let Err(e) = self.content_abort(reference).await {
            tracing::warn!(reference, "cannot abort the content ingest: {e}");
        }
    }

    /// Opens the write stream of `reference` with a Stat. `None` when the
    /// store holds `digest` already.
    async fn write_open(
        &self,
        reference: &str,
        digest: &str,
        size: u64,
    ) -> Result<Option<Session>> {
        let deadline = Instant::now() + LOCKED_REF_WAIT;
        let mut backoff = Duration::from_millis(20);
        loop {
            let (tx, rx) = mpsc::channel(1);
            let stat = WriteContentRequest {
                action: WriteAction::Stat as i32,
                r#ref: reference.to_string(),
                total: i64::try_from(size).unwrap_or(i64::MAX),
                expected: digest.to_string(),
                ..Default::default()
            };
            // The first message must be queued before the call: containerd
            // answers (and sends its headers) only once it has read it.
            if tx.send(stat).await.is_err() {
                return Err(Error::Broken("content write channel closed".into()));
            }
            let opened = self
                .content()
                .write(self.request(tokio_stream::wrappers::ReceiverStream::new(rx)))
                .await;
            let status = match opened {
                Ok(resp) => {
                    let mut responses = resp.into_inner();
                    match responses.message().await {
                        Ok(Some(st)) => {
                            tracing::trace!(reference, offset = st.offset, total = st.total, digest = %st.digest, "ingest status");
                            let complete =
                                u64::try_from(st.offset).ok() == Some(size) && st.digest == digest;
                            if complete {
                                tracing::debug!(
                                    reference,
                                    "containerd has the whole blob; committing"
                                );
                            } else if st.offset > 0 {
                                tracing::debug!(
                                    reference,
                                    offset = st.offset,
                                    "restarting a partial ingest from 0"
                                );
                            }
                            return Ok(Some(Session {
                                reference: reference.to_string(),
                                tx: Some(tx),
                                responses,
                                complete,
                            }));
                        }
                        Ok(None) => tonic::Status::unavailable(
                            "containerd closed the content write stream at once",
                        ),
                        Err(s) => s,
                    }
                }
                Err(s) => s,
            };
            if status.code() == tonic::Code::AlreadyExists {
                return Ok(None);
            }
            if is_locked(&status) && Instant::now() < deadline {
                tracing::debug!(reference, "ingest locked by another writer; waiting");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
            return Err(write_error(digest, &status));
        }
    }
}

/// How many input items (a registry's body chunks: a few to some tens of
/// KiB each) are read ahead of the writes to containerd.
const READ_AHEAD_ITEMS: usize = 256;

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends `data` in chunks of at most [`WRITE_CHUNK`] bytes, the last one
/// with the commit.
async fn write_all<S>(
    session: &mut Session,
    digest: &str,
    size: u64,
    labels: HashMap<String, String>,
    data: S,
) -> Result<Written>
where
    S: Stream<Item = Result<Bytes>> + Send + 'static,
{
    let (mut rx, _reader) = read_ahead(data);
    let mut w = ChunkWriter::new(session, digest, size);
    if w.session.complete {
        // Nothing to send: `data` is dropped unread.
        w.written = size;
    }
    while !w.session.complete
        && let Some(item) = rx.recv().await
    {
        // An input error aborts: the caller closes the stream and aborts.
        if let Some(exists) = w.push(item?).await? {
            return Ok(exists);
        }
    }
    w.commit(labels).await
}

/// Reads `data` ahead in a task of its own, so fetching the next chunk
/// (from a registry, say) overlaps containerd writing this one; the task
/// stops when the guard is dropped, however the write ends.
fn read_ahead<S>(data: S) -> (tokio::sync::mpsc::Receiver<Result<Bytes>>, AbortOnDrop)
where
    S: Stream<Item = Result<Bytes>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes>>(READ_AHEAD_ITEMS);
    let reader = tokio::spawn(async move {
        let mut data = Box::pin(data);
        while let Some(item) = data.next().await {
            if tx.send(item).await.is_err() {
                break;
            }
        }
    });
    (rx, AbortOnDrop(reader))
}

/// One blob's writes: full chunks go out as they fill, the last one waits
/// for the commit.
struct ChunkWriter<'a> {
    session: &'a mut Session,
    digest: &'a str,
    size: u64,
    /// Bytes containerd has confirmed.
    written: u64,
    pending: Vec<u8>,
    chunk_capacity: usize,
}

impl<'a> ChunkWriter<'a> {
    fn new(session: &'a mut Session, digest: &'a str, size: u64) -> Self {
        ChunkWriter {
            session,
            digest,
            size,
            written: 0,
            pending: Vec::new(),
            chunk_capacity: WRITE_CHUNK.min(usize::try_from(size).unwrap_or(WRITE_CHUNK)),
        }
    }

    fn message(&self, action: WriteAction, data: Vec<u8>) -> WriteContentRequest {
        WriteContentRequest {
            action: action as i32,
            r#ref: self.session.reference.clone(),
            total: i64::try_from(self.size).unwrap_or(i64::MAX),
            expected: self.digest.to_string(),
            offset: i64::try_from(self.written).unwrap_or(i64::MAX),
            data,
            labels: HashMap::new(),
        }
    }

    /// Takes `bytes` in; `Some` when containerd says the blob exists.
    async fn push(&mut self, mut bytes: Bytes) -> Result<Option<Written>> {
        if self.written + self.pending.len() as u64 + bytes.len() as u64 > self.size {
            return Err(Error::Corrupt(format!(
                "content {}: more data than its declared {} bytes",
                self.digest, self.size
            )));
        }
        while !bytes.is_empty() {
            // Full, and not the last chunk (that one goes with the commit):
            // the size check above leaves room after it.
            if self.pending.len() == WRITE_CHUNK
                && let Some(exists) = self.send_pending().await?
            {
                return Ok(Some(exists));
            }
            if self.pending.capacity() == 0 {
                self.pending.reserve_exact(self.chunk_capacity);
            }
            let take = (WRITE_CHUNK - self.pending.len()).min(bytes.len());
            self.pending.extend_from_slice(&bytes.split_to(take));
        }
        Ok(None)
    }

    async fn send_pending(&mut self) -> Result<Option<Written>> {
        let chunk = std::mem::take(&mut self.pending);
        let len = chunk.len() as u64;
        let request = self.message(WriteAction::Write, chunk);
        match self.session.call(request).await {
            Ok(resp) => {
                self.written += len;
                if u64::try_from(resp.offset).ok() != Some(self.written) {
                    return Err(Error::Malformed {
                        op: "content write",
                        what: format!(
                            "{}: containerd is at offset {} after we wrote {} bytes",
                            self.digest, resp.offset, self.written
                        ),
                    });
                }
                Ok(None)
            }
            Err(s) if s.code() == tonic::Code::AlreadyExists => Ok(Some(Written::Exists)),
            Err(s) => Err(write_error(self.digest, &s)),
        }
    }

    /// Sends the last chunk with the commit.
    async fn commit(mut self, labels: HashMap<String, String>) -> Result<Written> {
        let (digest, size) = (self.digest, self.size);
        let got = self.written + self.pending.len() as u64;
        if got != size {
            return Err(Error::Corrupt(format!(
                "content {digest}: got {got} bytes, {size} declared"
            )));
        }
        let pending = std::mem::take(&mut self.pending);
        let mut commit = self.message(WriteAction::Commit, pending);
        commit.labels = labels;
        match self.session.call(commit).await {
            // containerd verified `expected`; another digest cannot happen.
            Ok(resp) if !resp.digest.is_empty() && resp.digest != digest => Err(Error::Corrupt(
                format!("content {digest} was committed as {}", resp.digest),
            )),
            Ok(_) => Ok(Written::Committed),
            Err(s) if s.code() == tonic::Code::AlreadyExists => Ok(Written::Exists),
            Err(s) => Err(write_error(digest, &s)),
        }
    }
}
