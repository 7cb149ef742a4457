//! containerd's image records: a name pointing at a target descriptor (an
//! index or a manifest in the content store), with labels.

use std::collections::HashMap;
use std::time::SystemTime;

use crate::{Error, Result};
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{
    CreateImageRequest, DeleteImageRequest, GetImageRequest, Image, ListImagesRequest,
    UpdateImageRequest,
};
use oci_spec::image::{Descriptor, Digest, MediaType};

use crate::{
    Containerd, from_containerd_descriptor, map_status, not_found_as_none, not_found_ok,
    system_time, to_containerd_descriptor,
};

/// The digest of zero bytes: the target of a default [`ImageRecord`].
const EMPTY_DIGEST: &str =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// One image record of containerd's image store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// The record's name (a reference, or anything else unique).
    pub name: String,
    /// What the name points at: an index or a manifest.
    pub target: Descriptor,
    pub labels: HashMap<String, String>,
    /// Set by containerd; ignored by [`Containerd::image_put`].
    pub created_at: Option<SystemTime>,
    /// Set by containerd; ignored by [`Containerd::image_put`].
    pub updated_at: Option<SystemTime>,
}

impl Default for ImageRecord {
    /// No name, no labels, and as target the descriptor of the empty blob
    /// (an OCI descriptor has no empty value): meant to be overwritten.
    fn default() -> Self {
        let digest = EMPTY_DIGEST
            .parse::<Digest>()
            .unwrap_or_else(|_| unreachable!("the empty digest parses"));
        ImageRecord {
            name: String::new(),
            target: Descriptor::new(MediaType::Other(String::new()), 0, digest),
            labels: HashMap::new(),
            created_at: None,
            updated_at: None,
        }
    }
}

impl ImageRecord {
    fn from_image(op: &'static str, i: Image) -> Result<Self> {
        let target = i.target.ok_or_else(|| Error::Malformed {
            op,
            what: format!("image {} has no target", i.name),
        })?;
        Ok(ImageRecord {
            target: from_containerd_descriptor(op, target)?,
            name: i.name,
            labels: i.labels,
            created_at: system_time(i.created_at),
            updated_at: system_time(i.updated_at),
        })
    }

    fn to_image(&self) -> Image {
        Image {
            name: self.name.clone(),
            labels: self.labels.clone(),
            target: Some(to_containerd_descriptor(&self.target)),
            created_at: None,
            updated_at: None,
        }
    }
}

impl Containerd {
    fn images(&self) -> ImagesClient<crate::timed::Timed> {
        ImagesClient::new(self.channel.clone()).max_decoding_message_size(usize::MAX)
    }

    /// The record `name`; `None` when there is none.
    pub async fn image_get(&self, name: &str) -> Result<Option<ImageRecord>> {
        let r = self
            .images()
            .get(self.request(GetImageRequest {
                name: name.to_string(),
            }))
            .await;
        match not_found_as_none("image get", r)?.and_then(|r| r.into_inner().image) {
            Some(i) => Ok(Some(ImageRecord::from_image("image get", i)?)),
            None => Ok(None),
        }
    }

    /// The records that match `filters` (containerd's filter syntax, e.g.
    /// `labels."io.crius.managed"==true` or `name==docker.io/library/x:y`;
    /// several filters are OR-ed); all of them when empty.
    pub async fn image_list(&self, filters: &[String]) -> Result<Vec<ImageRecord>> {
        let resp = self
            .images()
            .list(self.request(ListImagesRequest {
                filters: filters.to_vec(),
            }))
            .await
            .map_err(map_status("image list"))?
            .into_inner();
        resp.images
            .into_iter()
            .map(|i| ImageRecord::from_image("image list", i))
            .collect()
    }

    /// Creates the record, or when one of that name exists, replaces its
    /// target and labels (all of them). A record deleted between the two
    /// (a removal racing the pull) is created again.
    pub async fn image_put(&self, record: ImageRecord) -> Result<()> {
        let image = record.to_image();
        for _ in 0..3 {
            let created = self
                .images()
                .create(self.request(CreateImageRequest {
                    image: Some(image.clone()),
                    source_date_epoch: None,
                }))
                .await;
            match created {
                Ok(_) => {
                    tracing::debug!(image = %record.name, target = %record.target.digest(), "image record created");
                    return Ok(());
                }
                Err(s) if s.code() == tonic::Code::AlreadyExists => {}
                Err(s) => return Err(map_status("image create")(s)),
            }
            let updated = self
                .images()
                .update(self.request(UpdateImageRequest {
                    image: Some(image.clone()),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["target".into(), "labels".into()],
                    }),
                    source_date_epoch: None,
                }))
                .await;
            match updated {
                Ok(_) => {
                    tracing::debug!(image = %record.name, target = %record.target.digest(), "image record updated");
                    return Ok(());
                }
                Err(s) if s.code() == tonic::Code::NotFound => {}
                Err(s) => return Err(map_status("image update")(s)),
            }
        }
        Err(Error::Malformed {
            op: "image put",
            what: format!(
                "the record {:?} kept being created and deleted by others",
                record.name
            ),
        })
    }

    /// Deletes the record `name` (not what it points at: that is left to
    /// the garbage collector). `sync` waits for the garbage collection to
    /// finish. A record that does not exist is fine.
    pub async fn image_delete(&self, name: &str, sync: bool) -> Result<()> {
        let r = self
            .images()
            .delete(self.request(DeleteImageRequest {
                name: name.to_string(),
                sync,
                target: None,
            }))
            .await;
        not_found_ok("image delete", r)?;
        tracing::debug!(image = name, sync, "image record deleted");
        Ok(())
    }
}
