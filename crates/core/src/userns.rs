//! User namespaces (KEP-127): which id mappings a pod may ask for, and
//! what they mean for its files.
//!
//! A pod in mode POD gets one user namespace, made by its pause process and
//! joined by each of its containers. runc 1.1 has no idmapped mounts, so the
//! root filesystems are remapped copies of the image's snapshots (what
//! containerd 1.7 does): every id `i` of a file becomes `host_id + i`.

use serde::{Deserialize, Serialize};

use crate::sandbox::NamespaceMode;
use crate::{Error, Result};

/// kubelet gives each pod a multiple of 65536 ids; fewer would leave the
/// ids of ordinary images (`nobody` is 65534) unmapped.
pub const MIN_LENGTH: u32 = 65536;

/// One CRI `IDMapping`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapping {
    pub container_id: u32,
    pub host_id: u32,
    pub length: u32,
}

impl IdMapping {
    /// The host id of the container id `id`, when the mapping has it.
    pub fn to_host(&self, id: u32) -> Option<u32> {
        let offset = id.checked_sub(self.container_id)?;
        (offset < self.length).then(|| self.host_id + offset)
    }
}

/// `m` in the OCI spec's form.
pub fn oci(m: &IdMapping) -> oci_spec::runtime::LinuxIdMapping {
    oci_spec::runtime::LinuxIdMappingBuilder::default()
        .container_id(m.container_id)
        .host_id(m.host_id)
        .size(m.length)
        .build()
        .unwrap_or_default()
}

/// What a request's `userns_options` hold besides the mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Asked {
    pub uids: Vec<IdMapping>,
    pub gids: Vec<IdMapping>,
}

/// A pod's user namespace: its uid and gid mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMaps {
    pub uids: IdMapping,
    pub gids: IdMapping,
}

impl IdMaps {
    /// The name of the remapped copy of the snapshot `chain_id`: one per
    /// image and mapping, shared by every pod with that mapping.
    pub fn remapped_name(&self, chain_id: &str) -> String {
        format!(
            "{chain_id}-remap-{}-{}-{}-{}",
            self.uids.host_id, self.uids.length, self.gids.host_id, self.gids.length
        )
    }
}

/// The mappings of a pod's (or container's) user namespace: `None` for
/// mode NODE (or none given), else the one mapping of each kind. `field`
/// names the request's `namespace_options`.
///
/// As containerd: NODE takes no mappings, POD needs exactly one of each
/// (runc and the remapped snapshot know one range), CONTAINER and TARGET
/// are refused ("unsupported user namespace mode"). security, beyond
/// containerd: container id 0 must be mapped and the range must hold
/// [`MIN_LENGTH`] ids that do not wrap around: a file owned by an id the
/// range lacks would keep a host id outside the pod's range.
pub fn pod_maps(field: &str, mode: Option<NamespaceMode>, asked: &Asked) -> Result<Option<IdMaps>> {
    let field = format!("{field}.userns_options");
    match mode {
        None | Some(NamespaceMode::Node) => {
            if !asked.uids.is_empty() || !asked.gids.is_empty() {
                return Err(Error::invalid(
                    format!("{field}.uids"),
                    "mode NODE takes no id mappings",
                ));
            }
            Ok(None)
        }
        Some(NamespaceMode::Pod) => Ok(Some(IdMaps {
            uids: one_mapping(&format!("{field}.uids"), &asked.uids)?,
            gids: one_mapping(&format!("{field}.gids"), &asked.gids)?,
        })),
        Some(mode) => Err(Error::invalid(
            format!("{field}.mode"),
            format!("unsupported user namespace mode {mode:?} (only NODE and POD)"),
        )),
    }
}

fn one_mapping(field: &str, list: &[IdMapping]) -> Result<IdMapping> {
    let [m] = list else {
        return Err(Error::invalid(
            field,
            format!("exactly one mapping is supported, got {}", list.len()),
        ));
    };
    if m.container_id != 0 {
        return Err(Error::invalid(field, "container id 0 must be mapped"));
    }
    if m.length < MIN_LENGTH {
        return Err(Error::invalid(
            field,
            format!("length {} is below {MIN_LENGTH}", m.length),
        ));
    }
    if m.host_id == 0 || m.host_id.checked_add(m.length).is_none() {
        return Err(Error::invalid(
            field,
            format!(
                "host ids {}..+{} must not include the host's root or wrap",
                m.host_id, m.length
            ),
        ));
    }
    Ok(*m)
}

/// Whether a container's `userns_options` agree with its pod's: a
/// container cannot leave its pod's user namespace, nor bring its own
/// (security: a container asking POD in a pod without one would run with
/// the host's ids unawares).
pub fn container_agrees(
    field: &str,
    pod: Option<&IdMaps>,
    mode: Option<NamespaceMode>,
    asked: &Asked,
) -> Result<()> {
    let own = pod_maps(field, mode, asked)?;
    let differs = match (pod, own) {
        (Some(_), None) => mode.is_some(),
        (None, Some(_)) => true,
        (Some(p), Some(o)) => *p != o,
        (None, None) => false,
    };
    if differs {
        return Err(Error::invalid(
            format!("{field}.userns_options"),
            "a container's user namespace must be its pod's",
        ));
    }
    Ok(())
}

/// The uid/gid mappings of a container's mounts (`mappings[i]` of mount
/// `i`): none, or exactly its pod's (kubelet gives every mount of a
/// container in a user namespace the pod's mappings). Such a mount is a
/// plain bind mount, since runc 1.1 has no idmapped mounts: its files keep
/// their host ids, so the container gets less access than an idmapped
/// mount would give, never more. security: other mappings are refused (an
/// idmapped mount outside the pod's range, or without a user namespace,
/// would change whose files the container's ids own).
pub fn check_mounts(pod: Option<&IdMaps>, mappings: &[&Asked]) -> Result<()> {
    for (i, asked) in mappings.iter().enumerate() {
        if asked.uids.is_empty() && asked.gids.is_empty() {
            continue;
        }
        let same = pod.is_some_and(|p| asked.uids == [p.uids] && asked.gids == [p.gids]);
        if !same {
            return Err(Error::invalid(
                format!("config.mounts[{i}].uidMappings"),
                "idmapped mounts are only taken with the pod's own user namespace mappings",
            ));
        }
    }
    Ok(())
}

/// The name of the extended attribute holding a file's capabilities.
pub const FILE_CAPS_XATTR: &str = "security.capability";

/// A file's capabilities (`security.capability`, `struct vfs_cap_data` v1,
/// v2 or v3) made the pod's: as v3, whose root id is the host id the
/// pod's root maps to (a v1 or v2 set, the image's root's, would be
/// ignored inside the pod: its root id, the host's root, is not mapped
/// there). `None`: not a capability set the mapping can carry.
pub fn remap_file_caps(xattr: &[u8], uids: &IdMapping) -> Option<Vec<u8>> {
    let word = |i: usize| -> Option<u32> {
        let b = xattr.get(i * 4..i * 4 + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let magic = word(0)?;
    let effective = magic & 1;
    let (data, rootid) = match (magic & 0xFF00_0000, xattr.len()) {
        // v1: one 32-bit set, no root id.
        (0x0100_0000, 12) => ([word(1)?, word(2)?, 0, 0], 0),
        (0x0200_0000, 20) => ([word(1)?, word(2)?, word(3)?, word(4)?], 0),
        (0x0300_0000, 24) => ([word(1)?, word(2)?, word(3)?, word(4)?], word(5)?),
        _ => return None,
    };
    let host_root = uids.to_host(rootid)?;
    let mut out = Vec::with_capacity(24);
    for w in [
        0x0300_0000 | effective,
        data[0],
        data[1],
        data[2],
        data[3],
        host_root,
    ] {
        out.extend_from_slice(&w.to_le_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(container_id: u32, host_id: u32, length: u32) -> IdMapping {
        IdMapping {
            container_id,
            host_id,
            length,
        }
    }

    fn asked(uids: Vec<IdMapping>) -> Asked {
        Asked {
            gids: uids.clone(),
            uids,
        }
    }

    fn field_of(r: Result<Option<IdMaps>>) -> String {
        match r {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn pod_mode_needs_one_mapping_of_root() {
        let ns = "config.linux.security_context.namespace_options";
        let ok = pod_maps(
            ns,
            Some(NamespaceMode::Pod),
            &asked(vec![m(0, 1000, 100000)]),
        );
        assert_eq!(
            ok.expect("accepted").expect("mapped").uids,
            m(0, 1000, 100000)
        );
        let two = asked(vec![m(0, 1000, 100000), m(0, 2000, 100000)]);
        assert_eq!(
            field_of(pod_maps(ns, Some(NamespaceMode::Pod), &two)),
            format!("{ns}.userns_options.uids")
        );
        for bad in [
            m(1, 1000, 100000),
            m(0, 1000, 1000),
            m(0, 0, 65536),
            m(0, u32::MAX - 10, 65536),
        ] {
            assert!(
                pod_maps(ns, Some(NamespaceMode::Pod), &asked(vec![bad])).is_err(),
                "{bad:?}"
            );
        }
        let no_gids = Asked {
            uids: vec![m(0, 1000, 65536)],
            gids: vec![],
        };
        assert_eq!(
            field_of(pod_maps(ns, Some(NamespaceMode::Pod), &no_gids)),
            format!("{ns}.userns_options.gids")
        );
    }

    #[test]
    fn node_takes_nothing_and_other_modes_are_refused() {
        let ns = "ns";
        assert_eq!(
            pod_maps(ns, None, &Asked::default()).expect("accepted"),
            None
        );
        assert_eq!(
            pod_maps(ns, Some(NamespaceMode::Node), &Asked::default()).expect("accepted"),
            None
        );
        let with = asked(vec![m(0, 1000, 65536)]);
        assert_eq!(
            field_of(pod_maps(ns, Some(NamespaceMode::Node), &with)),
            "ns.userns_options.uids"
        );
        for mode in [NamespaceMode::Container, NamespaceMode::Target] {
            assert_eq!(
                field_of(pod_maps(ns, Some(mode), &with)),
                "ns.userns_options.mode"
            );
        }
    }

    #[test]
    fn containers_stay_in_their_pods_namespace() {
        let maps = IdMaps {
            uids: m(0, 1000, 65536),
            gids: m(0, 1000, 65536),
        };
        let same = asked(vec![m(0, 1000, 65536)]);
        assert!(container_agrees("c", Some(&maps), Some(NamespaceMode::Pod), &same).is_ok());
        // Saying nothing follows the pod.
        assert!(container_agrees("c", Some(&maps), None, &Asked::default()).is_ok());
        assert!(container_agrees("c", None, Some(NamespaceMode::Node), &Asked::default()).is_ok());
        let other = asked(vec![m(0, 2000, 65536)]);
        assert!(container_agrees("c", Some(&maps), Some(NamespaceMode::Pod), &other).is_err());
        assert!(
            container_agrees(
                "c",
                Some(&maps),
                Some(NamespaceMode::Node),
                &Asked::default()
            )
            .is_err()
        );
        assert!(container_agrees("c", None, Some(NamespaceMode::Pod), &same).is_err());
    }

    #[test]
    fn mounts_may_carry_the_pods_mappings_only() {
        let r = m(0, 1000, 65536);
        let maps = IdMaps { uids: r, gids: r };
        let none = Asked::default();
        let pods = asked(vec![r]);
        let other = asked(vec![m(0, 5000, 65536)]);
        assert!(check_mounts(None, &[&none]).is_ok());
        assert!(check_mounts(Some(&maps), &[&none, &pods]).is_ok());
        match check_mounts(Some(&maps), &[&pods, &other]) {
            Err(Error::InvalidArgument { field, .. }) => {
                assert_eq!(field, "config.mounts[1].uidMappings")
            }
            other => panic!("{other:?}"),
        }
        assert!(check_mounts(None, &[&pods]).is_err(), "no user namespace");
    }

    #[test]
    fn ids_map_inside_the_range_only() {
        let r = m(0, 1000, 65536);
        assert_eq!(r.to_host(0), Some(1000));
        assert_eq!(r.to_host(65535), Some(66535));
        assert_eq!(r.to_host(65536), None);
        let maps = IdMaps { uids: r, gids: r };
        assert_eq!(
            maps.remapped_name("sha256:x"),
            "sha256:x-remap-1000-65536-1000-65536"
        );
    }

    #[test]
    fn file_caps_become_the_pods_roots() {
        let map = IdMapping {
            container_id: 0,
            host_id: 200_000,
            length: 65536,
        };
        let words = |w: &[u32]| -> Vec<u8> { w.iter().flat_map(|x| x.to_le_bytes()).collect() };
        // cap_net_raw+ep as v2: permitted bit 13, effective flag.
        let v2 = words(&[0x0200_0001, 1 << 13, 0, 0, 0]);
        let v3 = words(&[0x0300_0001, 1 << 13, 0, 0, 0, 200_000]);
        assert_eq!(remap_file_caps(&v2, &map), Some(v3.clone()));
        // A v3 set of a namespace root 5 of the image's: 200005.
        let ns = words(&[0x0300_0000, 1, 2, 3, 4, 5]);
        assert_eq!(
            remap_file_caps(&ns, &map),
            Some(words(&[0x0300_0000, 1, 2, 3, 4, 200_005]))
        );
        let v1 = words(&[0x0100_0000, 7, 8]);
        assert_eq!(
            remap_file_caps(&v1, &map),
            Some(words(&[0x0300_0000, 7, 8, 0, 0, 200_000]))
        );
        assert_eq!(remap_file_caps(&v2[..19], &map), None, "truncated");
        assert_eq!(
            remap_file_caps(&words(&[0x0400_0000, 0, 0, 0, 0]), &map),
            None
        );
        let outside = words(&[0x0300_0000, 1, 2, 3, 4, 70_000]);
        assert_eq!(remap_file_caps(&outside, &map), None, "root id not mapped");
    }
}
