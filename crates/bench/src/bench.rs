//! The scenarios, run against any CRI endpoints.
//!
//! Endpoints take turns: run `i` visits them in order when `i` is even and in
//! reverse order when odd (A,B then B,A ...), so drift of the machine (page
//! cache, CPU frequency, a noisy neighbour) hits every endpoint alike.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crius_cri_api::v1::{
    ImageSpec, ImageStatusRequest, ListImagesRequest, PullImageRequest, RemoveImageRequest,
    VersionRequest,
};
use crius_testkit::client::Cri;
use serde::Serialize;

use crate::report::{EndpointInfo, EndpointResult, ScenarioReport};
use crate::stats::summarize;

/// How long a single PullImage may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a removed image's content may take to be garbage collected.
const GC_TIMEOUT: Duration = Duration::from_secs(15);

/// One CRI endpoint under test.
pub struct Target {
    /// Short name: `A`, `B`.
    pub name: String,
    /// What it is: `crius`, `containerd-cri`, or the address.
    pub label: String,
    /// `unix:///...`.
    pub address: String,
    pub cri: Cri,
    /// The root of the containerd behind it, when known (`compare` started
    /// it): lets the benchmark check that a removed image's blobs are gone
    /// before a cold pull.
    pub containerd_root: Option<PathBuf>,
    /// Its processes and directories, when `compare` started it: lets the
    /// benchmark measure memory, CPU and leaks.
    pub local: Option<crate::probe::Local>,
}

impl Target {
    pub async fn info(&self) -> EndpointInfo {
        let mut cri = self.cri.clone();
        let version = cri
            .runtime
            .version(VersionRequest {
                version: "v1".into(),
            })
            .await;
        let (runtime_name, runtime_version, error) = match version {
            Ok(v) => {
                let v = v.into_inner();
                (v.runtime_name, v.runtime_version, None)
            }
            Err(s) => (
                String::new(),
                String::new(),
                Some(status_text("Version", &s)),
            ),
        };
        EndpointInfo {
            name: self.name.clone(),
            label: self.label.clone(),
            address: self.address.clone(),
            runtime_name,
            runtime_version,
            error,
        }
    }

    fn content_blob(&self, digest: &str) -> Option<PathBuf> {
        let root = self.containerd_root.as_ref()?;
        let (algo, hex) = digest.split_once(':')?;
        Some(
            root.join("io.containerd.content.v1.content/blobs")
                .join(algo)
                .join(hex),
        )
    }
}

/// An image to pull.
#[derive(Debug, Clone, Serialize)]
pub struct BenchImage {
    /// `big`, `small`, or the reference itself.
    pub label: String,
    pub reference: String,
    /// Compressed size (what a pull downloads), when known beforehand;
    /// otherwise what each endpoint's ImageStatus reports after its pull.
    pub size_bytes: Option<u64>,
    pub uncompressed_bytes: Option<u64>,
    /// Compressed layer digests (empty when unknown).
    pub layers: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub runs: usize,
    pub warmup: usize,
    /// ImageStatus / ListImages calls per endpoint.
    pub calls: usize,
}

pub fn status_text(what: &str, s: &tonic::Status) -> String {
    format!("{what}: {:?}: {}", s.code(), s.message())
}

fn spec(reference: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: reference.to_owned(),
        ..Default::default()
    })
}

/// The order in which run `run` visits `n` endpoints.
pub fn visit_order(run: usize, n: usize) -> Vec<usize> {
    if run.is_multiple_of(2) {
        (0..n).collect()
    } else {
        (0..n).rev().collect()
    }
}

/// Removes `image` and checks it is gone; with a known containerd root, also
/// waits for its layer blobs to be garbage collected. Returns whether the
/// next pull is cold (`false`: blobs still there after [`GC_TIMEOUT`]).
async fn make_absent(target: &Target, image: &BenchImage) -> Result<bool, String> {
    let mut cri = target.cri.clone();
    match cri
        .image
        .remove_image(RemoveImageRequest {
            image: spec(&image.reference),
        })
        .await
    {
        Ok(_) => {}
        Err(s) if s.code() == tonic::Code::NotFound => {}
        Err(s) => return Err(status_text("RemoveImage", &s)),
    }
    let status = cri
        .image
        .image_status(ImageStatusRequest {
            image: spec(&image.reference),
            verbose: false,
        })
        .await
        .map_err(|s| status_text("ImageStatus", &s))?
        .into_inner();
    if let Some(img) = status.image {
        return Err(format!(
            "RemoveImage succeeded but ImageStatus still finds {} ({})",
            image.reference, img.id
        ));
    }
    let blobs: Vec<PathBuf> = image
        .layers
        .iter()
        .filter_map(|l| target.content_blob(l))
        .collect();
    let deadline = Instant::now() + GC_TIMEOUT;
    loop {
        if !blobs.iter().any(|b| b.exists()) {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn pull(target: &Target, image: &BenchImage) -> Result<Duration, String> {
    let mut cri = target.cri.clone();
    let started = Instant::now();
    let resp = tokio::time::timeout(
        PULL_TIMEOUT,
        cri.image.pull_image(PullImageRequest {
            image: spec(&image.reference),
            ..Default::default()
        }),
    )
    .await;
    let elapsed = started.elapsed();
    match resp {
        Err(_) => Err(format!("PullImage: no answer within {PULL_TIMEOUT:?}")),
        Ok(Err(s)) => Err(status_text("PullImage", &s)),
        Ok(Ok(r)) if r.get_ref().image_ref.is_empty() => {
            Err("PullImage: answered an empty image_ref".to_owned())
        }
        Ok(Ok(_)) => Ok(elapsed),
    }
}

/// Size of `image` as the endpoint reports it.
async fn reported_size(target: &Target, image: &BenchImage) -> Option<u64> {
    let mut cri = target.cri.clone();
    cri.image
        .image_status(ImageStatusRequest {
            image: spec(&image.reference),
            verbose: false,
        })
        .await
        .ok()?
        .into_inner()
        .image
        .map(|i| i.size)
}

#[derive(Default)]
struct Acc {
    samples_ms: Vec<f64>,
    warm: usize,
    size: Option<u64>,
    error: Option<String>,
    notes: Vec<String>,
}

/// Scenario "pull": cold pulls of `image`, alternating endpoints.
pub async fn pull_scenario(targets: &[Target], image: &BenchImage, s: Settings) -> ScenarioReport {
    let mut acc: Vec<Acc> = targets.iter().map(|_| Acc::default()).collect();
    let total = s.warmup + s.runs;
    for run in 0..total {
        for i in visit_order(run, targets.len()) {
            let (t, a) = (&targets[i], &mut acc[i]);
            if a.error.is_some() {
                continue;
            }
            let cold = match make_absent(t, image).await {
                Ok(cold) => cold,
                Err(e) => {
                    a.error = Some(e);
                    continue;
                }
            };
            match pull(t, image).await {
                Ok(d) => {
                    let ms = d.as_secs_f64() * 1e3;
                    let warmup = run < s.warmup;
                    eprintln!(
                        "crius-bench: pull {} run {}/{}{} on {} ({}): {ms:.1} ms{}",
                        image.label,
                        run + 1,
                        total,
                        if warmup { " (warmup)" } else { "" },
                        t.name,
                        t.label,
                        if cold {
                            ""
                        } else {
                            " (WARM: blobs not collected)"
                        }
                    );
                    if !warmup {
                        a.samples_ms.push(ms);
                        if !cold {
                            a.warm += 1;
                        }
                    }
                    if a.size.is_none() {
                        a.size = image.size_bytes.or(reported_size(t, image).await);
                    }
                    if run == 0
                        && let Some(blob) = image.layers.first().and_then(|l| t.content_blob(l))
                        && !blob.exists()
                    {
                        a.notes.push(format!(
                            "layer blob not found at {} after the pull: the cold-pull check cannot see this endpoint's content",
                            blob.display()
                        ));
                    }
                }
                Err(e) => {
                    eprintln!(
                        "crius-bench: pull {} on {} ({}): {e}",
                        image.label, t.name, t.label
                    );
                    a.error = Some(e);
                }
            }
        }
    }
    let results = targets
        .iter()
        .zip(acc)
        .map(|(t, a)| {
            let summary = summarize(&a.samples_ms);
            let mb_per_s_p50 = match (summary, a.size) {
                (Some(sum), Some(size)) if sum.p50_ms > 0.0 => {
                    Some(size as f64 / 1e6 / (sum.p50_ms / 1e3))
                }
                _ => None,
            };
            let mut notes = a.notes;
            if a.warm > 0 {
                notes.push(format!(
                    "{} of {} samples were warm: the layer blobs were still in containerd's content store {GC_TIMEOUT:?} after RemoveImage",
                    a.warm,
                    a.samples_ms.len()
                ));
            }
            EndpointResult {
                endpoint: t.name.clone(),
                label: t.label.clone(),
                samples_ms: a.samples_ms,
                summary,
                size_bytes: a.size,
                mb_per_s_p50,
                warm_samples: a.warm,
                error: a.error,
                notes,
            }
        })
        .collect();
    ScenarioReport::new(
        "pull",
        &image.label,
        Some(image.reference.clone()),
        image.size_bytes,
        (!image.layers.is_empty()).then_some(image.layers.len()),
        s,
        results,
    )
}

/// Which latency scenario to run.
#[derive(Debug, Clone, Copy)]
pub enum Query {
    ImageStatus,
    ListImages,
}

/// ImageStatus of `image` or ListImages, `calls` times per endpoint,
/// alternating endpoints call by call.
pub async fn query_scenario(
    targets: &[Target],
    image: &BenchImage,
    query: Query,
    s: Settings,
) -> ScenarioReport {
    let mut samples: Vec<Vec<f64>> = targets.iter().map(|_| Vec::new()).collect();
    let mut errors: Vec<Option<String>> = targets.iter().map(|_| None).collect();
    let mut absent: Vec<bool> = targets.iter().map(|_| false).collect();
    for call in 0..s.calls {
        for i in visit_order(call, targets.len()) {
            if errors[i].is_some() {
                continue;
            }
            let mut cri = targets[i].cri.clone();
            let started = Instant::now();
            let r = match query {
                Query::ImageStatus => cri
                    .image
                    .image_status(ImageStatusRequest {
                        image: spec(&image.reference),
                        verbose: false,
                    })
                    .await
                    .map(|r| r.into_inner().image.is_some())
                    .map_err(|e| status_text("ImageStatus", &e)),
                Query::ListImages => cri
                    .image
                    .list_images(ListImagesRequest { filter: None })
                    .await
                    .map(|r| !r.into_inner().images.is_empty())
                    .map_err(|e| status_text("ListImages", &e)),
            };
            let ms = started.elapsed().as_secs_f64() * 1e3;
            match r {
                Ok(found) => {
                    samples[i].push(ms);
                    absent[i] |= !found;
                }
                Err(e) => errors[i] = Some(e),
            }
        }
    }
    let (scenario, what) = match query {
        Query::ImageStatus => ("image_status", "image"),
        Query::ListImages => ("list_images", "image list"),
    };
    let results = targets
        .iter()
        .zip(samples)
        .zip(errors)
        .zip(absent)
        .map(|(((t, samples), error), absent)| EndpointResult {
            endpoint: t.name.clone(),
            label: t.label.clone(),
            summary: summarize(&samples),
            samples_ms: Vec::new(),
            size_bytes: None,
            mb_per_s_p50: None,
            warm_samples: 0,
            error,
            notes: if absent {
                vec![format!(
                    "empty {what}: {} was not pulled on this endpoint",
                    image.reference
                )]
            } else {
                Vec::new()
            },
        })
        .collect();
    ScenarioReport::new(
        scenario,
        &image.label,
        Some(image.reference.clone()),
        None,
        None,
        Settings {
            runs: s.calls,
            warmup: 0,
            calls: s.calls,
        },
        results,
    )
}

/// Pulls `reference` on `target` unless it is there already.
pub async fn ensure_pulled(target: &Target, reference: &str) -> Result<()> {
    let mut cri = target.cri.clone();
    let present = cri
        .image
        .image_status(ImageStatusRequest {
            image: spec(reference),
            verbose: false,
        })
        .await
        .map_err(|s| {
            anyhow::anyhow!(
                "{} ({}): {}",
                target.name,
                target.label,
                status_text("ImageStatus", &s)
            )
        })?
        .into_inner()
        .image
        .is_some();
    if !present {
        tokio::time::timeout(
            PULL_TIMEOUT,
            cri.image.pull_image(PullImageRequest {
                image: spec(reference),
                ..Default::default()
            }),
        )
        .await
        .map_err(|_| anyhow::anyhow!("{}: PullImage {reference}: no answer", target.name))?
        .map_err(|s| {
            anyhow::anyhow!(
                "{} ({}): {}",
                target.name,
                target.label,
                status_text(&format!("PullImage {reference}"), &s)
            )
        })?;
    }
    Ok(())
}

/// Connects to `address` (`unix:///path` or a plain path).
pub async fn connect(address: &str) -> Result<Cri> {
    let path = address.strip_prefix("unix://").unwrap_or(address);
    if path.is_empty() || !Path::new(path).is_absolute() {
        anyhow::bail!("endpoint address {address:?}: expected unix:///absolute/path.sock");
    }
    crius_testkit::client::connect(Path::new(path))
        .await
        .with_context(|| format!("endpoint {address}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternates() {
        assert_eq!(visit_order(0, 2), vec![0, 1]);
        assert_eq!(visit_order(1, 2), vec![1, 0]);
        assert_eq!(visit_order(2, 2), vec![0, 1]);
        assert_eq!(visit_order(3, 3), vec![2, 1, 0]);
    }
}
