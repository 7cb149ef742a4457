//! The image store's error boundary. Pulls, imports and built-in images
//! meet failures of three parties: the registry, containerd and the
//! archive the client named. Each is kept apart here with its cause, and
//! [`From<ImageError> for Error`] is the one place that decides what the
//! client sees: a containerd `NotFound` met while storing (content the
//! collector took, a lease or snapshot parent gone) must not reach it as
//! if the image it asked for did not exist.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures::{Stream, StreamExt};

use crius_containerd::Kind;
use crius_core::Error;

/// What went wrong storing an image, by whose it is.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ImageError {
    /// The registry's answer about the reference the client named (a bad
    /// reference, refused credentials, no such repository, tag or digest):
    /// the client's to act on, as the registry classified it.
    #[error(transparent)]
    Registry(Error),
    /// The registry failed to serve a blob the image's manifest names.
    #[error("fetching {digest}: {source}")]
    Blob {
        digest: String,
        #[source]
        source: Error,
    },
    /// containerd failed at `step` of storing the image.
    #[error("{step}: {source}")]
    Containerd {
        step: &'static str,
        #[source]
        source: crius_containerd::Error,
    },
    /// The store's own lookup failed at `step` (already a crius error).
    #[error("{step}: {source}")]
    Lookup {
        step: &'static str,
        #[source]
        source: Error,
    },
    /// The archive the client named does not exist.
    #[error("archive {} not found", path.display())]
    NoArchive { path: PathBuf },
    /// The archive cannot be read as an image archive.
    #[error("{}: {reason}", path.display())]
    Archive { path: PathBuf, reason: String },
    /// Reading the archive failed below the tar format.
    #[error("{context}: {source}")]
    ArchiveIo {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A blob of the archive does not match its digest or size.
    #[error("{}: blob {digest} does not match its digest or size", path.display())]
    Corrupt { path: PathBuf, digest: String },
    /// The archive has no manifest for the host's platform.
    #[error("a manifest for {platform} in {}", path.display())]
    NoPlatform { platform: String, path: PathBuf },
    /// The image contradicts itself (layers without diff ids, a config
    /// that is no JSON).
    #[error("{0}")]
    Inconsistent(String),
    /// Another client's call on the same image got in between (a removal
    /// during a pull): theirs to retry.
    #[error("{0}")]
    Raced(String),
    /// A fault of crius' own: a lost blocking task, a poisoned lock, a
    /// document it built that does not serialize.
    #[error("{0}")]
    Internal(String),
    /// The blocking pool lost the task reading an archive.
    #[error(transparent)]
    Lost(Error),
}

impl ImageError {
    /// A containerd failure at `step`, for `map_err`.
    pub(crate) fn containerd(
        step: &'static str,
    ) -> impl FnOnce(crius_containerd::Error) -> ImageError {
        move |source| ImageError::Containerd { step, source }
    }

    /// A failure of the store's lookup at `step`, for `map_err`.
    pub(crate) fn lookup(step: &'static str) -> impl FnOnce(Error) -> ImageError {
        move |source| ImageError::Lookup { step, source }
    }

    /// The archive at `path` is malformed (`reason` says how).
    pub(crate) fn archive(path: &std::path::Path, reason: impl std::fmt::Display) -> ImageError {
        ImageError::Archive {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

impl From<ImageError> for Error {
    fn from(e: ImageError) -> Error {
        match e {
            ImageError::Registry(e) | ImageError::Lost(e) => e,
            ImageError::Blob { source, .. } => match source {
                // The image the client named exists; the registry lost a
                // part of it. Still NotFound, as containerd answers it (its
                // fetcher's "content not found"): the message says which.
                Error::NotFound { what } => Error::not_found(format!(
                    "{what}, which the image's manifest names, in the registry"
                )),
                other => other,
            },
            ImageError::Containerd { step, source } => match source.kind() {
                // About containerd's objects, not the client's.
                Kind::NotFound | Kind::AlreadyExists => Error::Containerd {
                    op: step,
                    message: source.to_string(),
                },
                _ => Error::from(source),
            },
            ImageError::Lookup { step, source } => match source {
                Error::NotFound { .. } | Error::AlreadyExists { .. } => Error::Containerd {
                    op: step,
                    message: source.to_string(),
                },
                other => other,
            },
            ImageError::NoArchive { path } => {
                Error::not_found(format!("archive {}", path.display()))
            }
            e @ ImageError::Archive { .. } => Error::invalid("path", e.to_string()),
            ImageError::ArchiveIo { context, source } => Error::io(context, source),
            e @ ImageError::Corrupt { .. } => Error::DataLoss(e.to_string()),
            e @ ImageError::NoPlatform { .. } => Error::not_found(e.to_string()),
            ImageError::Inconsistent(m) | ImageError::Raced(m) => Error::FailedPrecondition(m),
            ImageError::Internal(m) => Error::Internal(m),
        }
    }
}

/// The first failure of the data a containerd write is fed from (a
/// registry's blob stream), kept apart so that it is reported as that
/// source's, not as containerd's; the write itself sees only that its
/// data broke off.
pub(crate) struct SourceFailure(Arc<Mutex<Option<Error>>>);

impl SourceFailure {
    /// `data` as the write takes it, and where its first failure is kept.
    pub(crate) fn split<S>(
        data: S,
    ) -> (
        impl Stream<Item = crius_containerd::Result<Bytes>> + Send + 'static,
        SourceFailure,
    )
    where
        S: Stream<Item = Result<Bytes, Error>> + Send + 'static,
    {
        let slot = Arc::new(Mutex::new(None));
        let kept = Arc::clone(&slot);
        let data = data.map(move |item| {
            item.map_err(|e| {
                let why = format!("the data source failed: {e}");
                kept.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert(e);
                crius_containerd::Error::Broken(why)
            })
        });
        (data, SourceFailure(slot))
    }

    /// The source's failure, if it failed.
    pub(crate) fn take(&self) -> Option<Error> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerds_not_found_is_not_the_clients() {
        let gone = crius_containerd::Error::Missing {
            what: "content sha256:ab".into(),
        };
        let e = ImageError::containerd("storing a layer")(gone);
        match Error::from(e) {
            Error::Containerd { op, message } => {
                assert_eq!(op, "storing a layer");
                assert!(message.contains("content sha256:ab not found"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let down = tonic::Status::unavailable("down");
        let busy = ImageError::containerd("x")(crius_containerd::Error::Status {
            op: "content info",
            status: down,
        });
        assert!(matches!(Error::from(busy), Error::Unavailable(_)));
        let taken = tonic::Status::already_exists("y");
        let exists = ImageError::containerd("x")(crius_containerd::Error::Status {
            op: "image create",
            status: taken,
        });
        assert!(matches!(Error::from(exists), Error::Containerd { .. }));
    }

    #[test]
    fn the_registrys_answer_about_the_reference_is_kept() {
        let tag = ImageError::Registry(Error::not_found("manifest busybox:no-such-tag"));
        match Error::from(tag) {
            Error::NotFound { what } => assert!(what.contains("no-such-tag")),
            other => panic!("{other:?}"),
        }
        let denied = ImageError::Registry(Error::Unauthenticated("who".into()));
        assert!(matches!(Error::from(denied), Error::Unauthenticated(_)));
    }

    #[test]
    fn a_lost_blob_is_named_as_part_of_the_image() {
        let lost = ImageError::Blob {
            digest: "sha256:cd".into(),
            source: Error::not_found("blob sha256:cd of image \"x\""),
        };
        match Error::from(lost) {
            Error::NotFound { what } => {
                assert!(
                    what.contains("blob sha256:cd") && what.contains("manifest"),
                    "{what}"
                )
            }
            other => panic!("{other:?}"),
        }
        let corrupt = ImageError::Blob {
            digest: "sha256:cd".into(),
            source: Error::DataLoss("digest mismatch".into()),
        };
        assert!(matches!(Error::from(corrupt), Error::DataLoss(_)));
    }

    #[tokio::test]
    async fn a_failing_source_is_kept_apart_from_the_write_it_feeds() {
        let items = vec![
            Ok(Bytes::from_static(b"ab")),
            Err(Error::DataLoss("digest mismatch".into())),
            Err(Error::Unavailable("second".into())),
        ];
        let (data, failure) = SourceFailure::split(futures::stream::iter(items));
        let seen: Vec<_> = data.collect().await;
        assert!(matches!(&seen[0], Ok(b) if b.as_ref() == b"ab"));
        assert!(
            matches!(&seen[1], Err(crius_containerd::Error::Broken(m)) if m.contains("digest mismatch"))
        );
        assert!(
            matches!(failure.take(), Some(Error::DataLoss(_))),
            "the first failure is kept"
        );
        assert!(failure.take().is_none());
    }

    #[test]
    fn a_pull_that_lost_a_race_with_a_removal_is_a_precondition() {
        let raced = ImageError::Raced("busybox was removed while it was being pulled".into());
        assert!(
            matches!(Error::from(raced), Error::FailedPrecondition(m) if m.contains("removed"))
        );
    }

    #[test]
    fn archive_failures_are_the_clients_input() {
        let path = std::path::Path::new("/tmp/a.tar");
        let missing = ImageError::NoArchive {
            path: path.to_path_buf(),
        };
        match Error::from(missing) {
            Error::NotFound { what } => assert_eq!(what, "archive /tmp/a.tar"),
            other => panic!("{other:?}"),
        }
        match Error::from(ImageError::archive(path, "not a tar archive")) {
            Error::InvalidArgument { field, reason } => {
                assert_eq!(field, "path");
                assert_eq!(reason, "/tmp/a.tar: not a tar archive");
            }
            other => panic!("{other:?}"),
        }
        let corrupt = ImageError::Corrupt {
            path: path.to_path_buf(),
            digest: "sha256:ef".into(),
        };
        assert!(matches!(Error::from(corrupt), Error::DataLoss(_)));
        let io = ImageError::ArchiveIo {
            context: "opening /tmp/a.tar".into(),
            source: std::io::Error::other("EIO"),
        };
        assert!(matches!(Error::from(io), Error::Io { .. }));
    }
}
