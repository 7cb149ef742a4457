//! Runtime-wide and image requests, and malformed maps.

use std::collections::HashMap;

use crius_cri_api::v1;

use super::super::bad;
use super::super::call::{Request, Rpc};
use super::Ctx;

/// The requests of `rpc` that are neither a pod's nor a container's.
pub fn build(rpc: Rpc, cx: &mut Ctx<'_>) -> Request {
    match rpc {
        Rpc::Version => Request::Version(version(cx)),
        Rpc::Status => Request::Status(v1::StatusRequest {
            verbose: cx.g.chance(0.5),
        }),
        Rpc::RuntimeConfig => Request::RuntimeConfig(v1::RuntimeConfigRequest {}),
        Rpc::UpdateRuntimeConfig => Request::UpdateRuntimeConfig(update_runtime_config(cx)),
        Rpc::PullImage => Request::PullImage(pull(cx)),
        Rpc::ImageStatus => Request::ImageStatus(image_status(cx)),
        Rpc::ListImages => Request::ListImages(list_images(cx)),
        Rpc::RemoveImage => Request::RemoveImage(remove_image(cx)),
        _ => Request::ImageFsInfo(v1::ImageFsInfoRequest {}),
    }
}

/// Makes a map malformed: a bad key or value, or very many entries.
pub fn bad_map(map: &mut HashMap<String, String>, cx: &mut Ctx<'_>) -> String {
    match cx.g.below(4) {
        0 => {
            let b = bad::string(&mut cx.g);
            map.insert(b.value, "v".into());
            format!("key {}", b.what)
        }
        1 | 2 => {
            let b = bad::string(&mut cx.g);
            map.insert("crius.fuzz/k".into(), b.value);
            format!("value {}", b.what)
        }
        _ => {
            map.extend((0..1000).map(|i| (format!("crius.fuzz/k{i}"), "v".repeat(100))));
            "1000 entries".into()
        }
    }
}

fn version(cx: &mut Ctx<'_>) -> v1::VersionRequest {
    let mut q = v1::VersionRequest {
        version: cx.g.pick(&["v1", "", "0.1.0"]).into(),
    };
    cx.mutate(
        &mut q,
        &[("version", |q, cx| {
            let b = bad::string(&mut cx.g);
            q.version = b.value;
            b.what
        })],
    );
    q
}

fn update_runtime_config(cx: &mut Ctx<'_>) -> v1::UpdateRuntimeConfigRequest {
    let cidr = cx.g.pick(&["10.88.0.0/16", "", "fd00:10:88::/64"]);
    let mut q = v1::UpdateRuntimeConfigRequest {
        runtime_config: Some(v1::RuntimeConfig {
            network_config: Some(v1::NetworkConfig {
                pod_cidr: cidr.into(),
            }),
        }),
    };
    cx.mutate(
        &mut q,
        &[
            ("runtime_config.network_config.pod_cidr", |q, cx| {
                let v = match cx.g.below(3) {
                    0 => "garbage".to_owned(),
                    1 => "10.0.0.0/99".to_owned(),
                    _ => bad::string(&mut cx.g).value,
                };
                let what = format!("{:?}", v.chars().take(20).collect::<String>());
                q.runtime_config = Some(v1::RuntimeConfig {
                    network_config: Some(v1::NetworkConfig { pod_cidr: v }),
                });
                what
            }),
            ("runtime_config", |q, _| {
                q.runtime_config = None;
                "missing".into()
            }),
        ],
    );
    q
}

/// An image to pull, query or remove: the containers' image, a spare one,
/// or one the registry does not have (all valid references).
fn image(cx: &mut Ctx<'_>, main: f64) -> String {
    if cx.g.chance(main) || cx.s.spare_images.is_empty() {
        return cx.s.image.clone();
    }
    if cx.g.chance(0.15) {
        return format!(
            "{}/crius-fuzz/no-such-image:{}",
            cx.registry,
            cx.g.pick(&["1", "latest"])
        );
    }
    cx.g.pick(&cx.s.spare_images)
}

fn spec(image: String) -> Option<v1::ImageSpec> {
    Some(v1::ImageSpec {
        image,
        ..Default::default()
    })
}

/// A malformed reference, always naming the test registry so that no
/// call leaves the machine.
fn bad_reference(cx: &mut Ctx<'_>) -> (String, String) {
    let r = cx.registry;
    match cx.g.below(7) {
        0 => (String::new(), "empty".into()),
        1 => (format!("{r}/UPPER/Case:tag"), "upper case".into()),
        2 => (format!("{r}/a:tag:tag"), "two tags".into()),
        3 => (format!("{r}/a@sha256:zzz"), "bad digest".into()),
        4 => (
            format!("{r}/a:{}", "t".repeat(200)),
            "a 200-character tag".into(),
        ),
        5 => (format!("{r}/../../a"), "traversal".into()),
        _ => {
            let b = bad::string(&mut cx.g);
            (format!("{r}/{}", b.value), format!("<registry>/{}", b.what))
        }
    }
}

/// A malformed image reference in `image`; what it is.
fn bad_image(image: &mut Option<v1::ImageSpec>, cx: &mut Ctx<'_>) -> String {
    let (r, what) = bad_reference(cx);
    *image = spec(r);
    what
}

fn pull(cx: &mut Ctx<'_>) -> v1::PullImageRequest {
    let mut q = v1::PullImageRequest {
        image: spec(image(cx, 0.4)),
        auth: None,
        sandbox_config: None,
    };
    cx.mutate(
        &mut q,
        &[
            ("image", |q, cx| bad_image(&mut q.image, cx)),
            ("image", |q, _| {
                q.image = None;
                "missing".into()
            }),
            ("auth", |q, cx| {
                let b = bad::string(&mut cx.g);
                q.auth = Some(v1::AuthConfig {
                    username: b.value,
                    auth: "!!!not-base64".into(),
                    ..Default::default()
                });
                format!("username {}, auth not base64", b.what)
            }),
        ],
    );
    q
}

fn image_status(cx: &mut Ctx<'_>) -> v1::ImageStatusRequest {
    let mut q = v1::ImageStatusRequest {
        image: spec(image(cx, 0.5)),
        verbose: cx.g.chance(0.5),
    };
    cx.mutate(&mut q, &[("image", |q, cx| bad_image(&mut q.image, cx))]);
    q
}

fn list_images(cx: &mut Ctx<'_>) -> v1::ListImagesRequest {
    let filter = cx.g.chance(0.3).then(|| v1::ImageFilter {
        image: spec(image(cx, 0.5)),
    });
    let mut q = v1::ListImagesRequest { filter };
    cx.mutate(
        &mut q,
        &[("filter.image", |q, cx| {
            let (r, what) = bad_reference(cx);
            q.filter = Some(v1::ImageFilter { image: spec(r) });
            what
        })],
    );
    q
}

/// RemoveImage: a spare image mostly, the containers' own rarely (a later
/// pull brings it back).
fn remove_image(cx: &mut Ctx<'_>) -> v1::RemoveImageRequest {
    let mut q = v1::RemoveImageRequest {
        image: spec(image(cx, 0.05)),
    };
    cx.mutate(
        &mut q,
        &[
            ("image", |q, cx| bad_image(&mut q.image, cx)),
            ("image", |q, _| {
                q.image = None;
                "missing".into()
            }),
        ],
    );
    q
}
