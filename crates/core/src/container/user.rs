//! The user a container runs as: uid, gid and supplementary groups, from
//! the request's security context or the image's `USER`, with names looked
//! up in the image's `/etc/passwd` and `/etc/group`.

use super::ContainerRequest;
use super::validate::MAX_ID;
use crate::{Error, Result};

/// The most the caller should read of the image's `/etc/passwd` or
/// `/etc/group` (1 MiB); see [`resolve_user`].
pub const MAX_ETC_FILE_SIZE: u64 = 1 << 20;

/// Who the container's process is.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// The primary gid first (containerd's fix for CVE-2023-25173), then the
    /// groups of `/etc/group` that list the user (policy Merge only), then
    /// the request's `supplemental_groups`; without duplicates.
    pub additional_gids: Vec<u32>,
}

/// A user or group part (`name` or id) and where it came from.
type Part<'a> = Option<(String, Source<'a>)>;

/// Where a user or group spec came from, for errors.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// A request field (`run_as_username`...): errors are InvalidArgument.
    Request(&'static str),
    /// The image's `USER`: errors are FailedPrecondition.
    Image(&'a str),
}

impl Source<'_> {
    fn error(self, reason: String) -> Error {
        match self {
            Source::Request(field) => {
                Error::invalid(format!("config.linux.security_context.{field}"), reason)
            }
            Source::Image(image) => {
                Error::FailedPrecondition(format!("the USER of image {image:?}: {reason}"))
            }
        }
    }
}

/// The user of `req`, containerd's way (`oci.WithUser`,
/// `WithAdditionalGIDs`, `WithSupplementalGroups`):
/// - the request wins over the image: `run_as_username` (or else
///   `run_as_user`) with `run_as_group`; without either, the image's `USER`
///   (`uid`, `name`, `uid:gid`, `name:group`, `uid:group`, `name:gid`); with
///   neither, root;
/// - a name is looked up in `passwd` (the uid and its primary gid) or
///   `group`; a purely numeric name is an id;
/// - without a group, the gid is the user's primary gid from `passwd`, or 0
///   when the uid is not in it;
/// - supplementary groups: see [`User::additional_gids`]; the user's name
///   (for a numeric uid, the name `passwd` gives it) is looked up in the
///   member lists of `group`, skipping a group named like the user; not
///   with `supplemental_groups_policy = Strict`, as in containerd 2.
///
/// Errors: an unknown name, or an id outside 0..=2^31-1, is an
/// [`Error::InvalidArgument`] naming the request field it came from, or an
/// [`Error::FailedPrecondition`] when it came from the image's `USER`.
/// containerd refuses them all too (`WithUser`, `UserFromFS`, `GIDFromFS`:
/// no matching entry, "uid out of range").
///
/// # The caller's contract
/// `passwd` and `group` are the contents of `/etc/passwd` and `/etc/group`
/// of the container's root filesystem (the image's layers), or `None` when
/// the file does not exist. The caller reads them with a size cap
/// ([`MAX_ETC_FILE_SIZE`]: a bigger file is an error, not truncated) and
/// resolves the path *inside* the root filesystem: a symlinked `/etc` or
/// `/etc/passwd` pointing to `/` or `..` must not reach the host (e.g.
/// `openat2` with `RESOLVE_IN_ROOT`, or a symlink walk clamped to the
/// root). Only a non-UTF-8 file may be passed lossily converted.
pub fn resolve_user(
    req: &ContainerRequest,
    image_user: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<User> {
    let sc = &req.linux.security;
    let (user_spec, group_spec) = user_and_group_specs(req, image_user)?;
    let passwd = passwd.map(parse_passwd).unwrap_or_default();
    let groups = group.map(parse_group).unwrap_or_default();
    let (uid, primary_gid, name) = resolve_uid(&user_spec, &passwd)?;
    let gid = resolve_gid(&group_spec, &groups, primary_gid)?;
    let mut additional = vec![gid];
    // Strict (KEP-3619): only the request's groups, so an image cannot
    // give its user more than the pod spec says.
    if let Some(name) = name.as_ref().filter(|_| !sc.strict_supplemental_groups) {
        add_member_groups(&mut additional, name, &groups);
    }
    add_supplemental_groups(&mut additional, &sc.supplemental_groups)?;
    Ok(User {
        uid,
        gid,
        additional_gids: additional,
    })
}

/// The user and group parts to resolve: the request's (`run_as_username`,
/// else `run_as_user`, with `run_as_group`), else the image's `USER`
/// (`user` or `user:group`), else none (root).
fn user_and_group_specs<'a>(
    req: &'a ContainerRequest,
    image_user: &str,
) -> Result<(Part<'a>, Part<'a>)> {
    let sc = &req.linux.security;
    let image = Source::Image(&req.image);
    if !sc.run_as_username.is_empty() || sc.run_as_user.is_some() {
        let user = if sc.run_as_username.is_empty() {
            let uid = sc.run_as_user.unwrap_or_default();
            (uid.to_string(), Source::Request("run_as_user"))
        } else {
            (
                sc.run_as_username.clone(),
                Source::Request("run_as_username"),
            )
        };
        let group = sc
            .run_as_group
            .map(|g| (g.to_string(), Source::Request("run_as_group")));
        Ok((Some(user), group))
    } else if sc.run_as_group.is_some() {
        // containerd refuses it too ("user group is specified without
        // user").
        Err(Error::invalid(
            "config.linux.security_context.run_as_group",
            "is set without run_as_user or run_as_username",
        ))
    } else if image_user.trim().is_empty() {
        Ok((None, None))
    } else {
        let spec = image_user.trim();
        Ok(match spec.split_once(':') {
            Some((u, g)) => (Some((u.to_string(), image)), Some((g.to_string(), image))),
            None => (Some((spec.to_string(), image)), None),
        })
    }
}

/// Whether a user or group part is an id rather than a name (a leading
/// `-` too, so that a negative id is refused as an id).
fn is_id(spec: &str) -> bool {
    spec.bytes().all(|b| b.is_ascii_digit()) || spec.starts_with('-')
}

/// The uid, its primary gid and (when known) its name: root without a user
/// part, an id as is, a name from `passwd`.
fn resolve_uid(spec: &Part<'_>, passwd: &[PasswdEntry]) -> Result<(u32, u32, Option<String>)> {
    let Some((spec, source)) = spec else {
        return Ok(lookup_uid(passwd, 0));
    };
    // containerd refuses it too (no user is named "").
    if spec.is_empty() {
        return Err(source.error("the user part is empty".into()));
    }
    if is_id(spec) {
        let uid = parse_id(spec, *source)?;
        return Ok(lookup_uid(passwd, uid));
    }
    let entry = passwd.iter().find(|e| e.name == *spec).ok_or_else(|| {
        source.error(if passwd.is_empty() {
            format!("user {spec:?} cannot be resolved: the image has no (usable) /etc/passwd")
        } else {
            format!("user {spec:?} is not in the image's /etc/passwd")
        })
    })?;
    let uid = check_id(entry.uid, *source, "its uid")?;
    let gid = check_id(entry.gid, *source, "its primary gid")?;
    Ok((uid, gid, Some(entry.name.clone())))
}

/// The gid: the user's primary gid without a group part, an id as is, a
/// name from `group`.
fn resolve_gid(spec: &Part<'_>, groups: &[GroupEntry], primary_gid: u32) -> Result<u32> {
    let Some((spec, source)) = spec else {
        return Ok(primary_gid);
    };
    // containerd refuses it too (no group is named "").
    if spec.is_empty() {
        return Err(source.error("the group part is empty".into()));
    }
    if is_id(spec) {
        return parse_id(spec, *source);
    }
    let entry = groups
        .iter()
        .find(|g| g.name == *spec)
        .ok_or_else(|| source.error(format!("group {spec:?} is not in the image's /etc/group")))?;
    check_id(entry.gid, *source, "its gid")
}

/// Adds the gids of the groups that list `name` as a member (except a group
/// named like the user), in file order, without duplicates.
fn add_member_groups(additional: &mut Vec<u32>, name: &str, groups: &[GroupEntry]) {
    for g in groups {
        if g.name != name && g.members.iter().any(|m| m == name) {
            // Out-of-range gids in the image's file are skipped.
            let id = u32::try_from(g.gid).ok().filter(|id| *id <= MAX_ID);
            if let Some(id) = id.filter(|id| !additional.contains(id)) {
                additional.push(id);
            }
        }
    }
}

/// Adds the request's `supplemental_groups`, without duplicates.
fn add_supplemental_groups(additional: &mut Vec<u32>, supplemental: &[i64]) -> Result<()> {
    for (i, g) in supplemental.iter().enumerate() {
        // security: a gid beyond 2^32 would be truncated on the way (to 0,
        // root's group, for 2^32); validate refuses it first.
        let id = u32::try_from(*g)
            .ok()
            .filter(|id| *id <= MAX_ID)
            .ok_or_else(|| {
                Error::invalid(
                    format!("config.linux.security_context.supplemental_groups[{i}]"),
                    format!("{g} is not a valid gid (0..={MAX_ID})"),
                )
            })?;
        if !additional.contains(&id) {
            additional.push(id);
        }
    }
    Ok(())
}

/// The uid, its primary gid (0 when not in passwd, or out of range) and its
/// name.
fn lookup_uid(passwd: &[PasswdEntry], uid: u32) -> (u32, u32, Option<String>) {
    match passwd.iter().find(|e| e.uid == u64::from(uid)) {
        Some(e) => (
            uid,
            u32::try_from(e.gid)
                .ok()
                .filter(|g| *g <= MAX_ID)
                .unwrap_or(0),
            Some(e.name.clone()),
        ),
        None => (uid, 0, None),
    }
}

/// containerd refuses ids outside 0..=2^31-1 too ("uid out of range", its
/// fix of CVE-2024-40635).
fn parse_id(spec: &str, source: Source<'_>) -> Result<u32> {
    spec.parse::<i64>()
        .ok()
        .and_then(|v| u32::try_from(v).ok())
        .filter(|v| *v <= MAX_ID)
        .ok_or_else(|| source.error(format!("{spec} is not a valid id (0..={MAX_ID})")))
}

fn check_id(id: u64, source: Source<'_>, what: &str) -> Result<u32> {
    u32::try_from(id)
        .ok()
        .filter(|v| *v <= MAX_ID)
        .ok_or_else(|| source.error(format!("{what} {id} is outside 0..={MAX_ID}")))
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u64,
    gid: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u64,
    members: Vec<String>,
}

/// `name:password:uid:gid:gecos:home:shell` lines; comments, blank and
/// malformed lines (missing fields, non-numeric ids) are skipped: a broken
/// line must not turn into uid 0.
fn parse_passwd(content: &str) -> Vec<PasswdEntry> {
    content
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?.trim();
            let _password = f.next()?;
            let uid = f.next()?.trim().parse().ok()?;
            let gid = f.next()?.trim().parse().ok()?;
            (!name.is_empty()).then(|| PasswdEntry {
                name: name.to_string(),
                uid,
                gid,
            })
        })
        .collect()
}

/// `name:password:gid:member,member` lines, skipped like [`parse_passwd`].
fn parse_group(content: &str) -> Vec<GroupEntry> {
    content
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?.trim();
            let _password = f.next()?;
            let gid = f.next()?.trim().parse().ok()?;
            let members = f
                .next()
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect();
            (!name.is_empty()).then(|| GroupEntry {
                name: name.to_string(),
                gid,
                members,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
broken:x:notanumber:0::/:/bin/sh
short:x:7
app:x:1000:1000:App:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
huge:x:3000000000:100::/:/bin/sh
";

    const GROUP: &str = "\
root:x:0:
daemon:x:1:app
wheel:x:10:root,app
app:x:1000:app
staff:x:50: app , other
video:x:44:
users:x:100:nobody
";

    fn request() -> ContainerRequest {
        ContainerRequest {
            name: "c".into(),
            image: "example/app:1".into(),
            ..Default::default()
        }
    }

    fn user(req: &ContainerRequest, image_user: &str) -> Result<User> {
        resolve_user(req, image_user, Some(PASSWD), Some(GROUP))
    }

    fn ids(u: &User) -> (u32, u32, Vec<u32>) {
        (u.uid, u.gid, u.additional_gids.clone())
    }

    #[test]
    fn parsing_skips_malformed_lines() {
        let p = parse_passwd(PASSWD);
        let names: Vec<&str> = p.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["root", "daemon", "app", "nobody", "huge"]);
        let g = parse_group(GROUP);
        assert_eq!(g[4].members, ["app", "other"]);
        assert!(g[5].members.is_empty());
    }

    #[test]
    fn image_user_forms() -> Result<()> {
        let req = request();
        // Root by default, with root's groups.
        assert_eq!(ids(&user(&req, "")?), (0, 0, vec![0, 10]));
        // Numeric: the primary gid from passwd, groups by its name.
        assert_eq!(
            ids(&user(&req, "1000")?),
            (1000, 1000, vec![1000, 1, 10, 50])
        );
        // Numeric but not in passwd: gid 0, no groups.
        assert_eq!(ids(&user(&req, "4242")?), (4242, 0, vec![0]));
        // Named.
        assert_eq!(
            ids(&user(&req, "app")?),
            (1000, 1000, vec![1000, 1, 10, 50])
        );
        assert_eq!(
            ids(&user(&req, "nobody")?),
            (65534, 65534, vec![65534, 100])
        );
        // uid:gid needs no lookup for the gid.
        assert_eq!(
            ids(&user(&req, "1000:44")?),
            (1000, 44, vec![44, 1, 10, 50])
        );
        // name:group.
        assert_eq!(
            ids(&user(&req, "app:video")?),
            (1000, 44, vec![44, 1, 10, 50])
        );
        // uid:group.
        assert_eq!(ids(&user(&req, "0:staff")?), (0, 50, vec![50, 10]));
        Ok(())
    }

    #[test]
    fn unknown_names_and_bad_ids_are_refused() {
        let req = request();
        for bad in [
            "ghost",
            "app:ghosts",
            "huge",
            "2147483648",
            "-1",
            "1000:",
            ":0",
        ] {
            match user(&req, bad) {
                Err(Error::FailedPrecondition(msg)) => {
                    assert!(msg.contains("example/app:1"), "{bad}: {msg}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        match user(&req, "ghost") {
            Err(e) => assert!(e.to_string().contains("\"ghost\""), "{e}"),
            Ok(u) => panic!("{u:?}"),
        }
        // No passwd at all: names cannot be resolved, numbers still work.
        assert!(resolve_user(&req, "app", None, None).is_err());
        assert_eq!(
            resolve_user(&req, "1000", None, None).map(|u| ids(&u)).ok(),
            Some((1000, 0, vec![0]))
        );
        assert!(resolve_user(&req, "1000:video", Some(PASSWD), None).is_err());
    }

    #[test]
    fn the_request_wins_over_the_image() -> Result<()> {
        let mut req = request();
        req.linux.security.run_as_user = Some(1000);
        assert_eq!(
            ids(&user(&req, "nobody")?),
            (1000, 1000, vec![1000, 1, 10, 50])
        );
        req.linux.security.run_as_group = Some(3000);
        req.linux.security.supplemental_groups = vec![4000, 3000, 10];
        assert_eq!(
            ids(&user(&req, "nobody")?),
            (1000, 3000, vec![3000, 1, 10, 50, 4000])
        );
        // A username wins over run_as_user.
        req.linux.security.run_as_username = "nobody".into();
        req.linux.security.run_as_group = None;
        req.linux.security.supplemental_groups.clear();
        assert_eq!(ids(&user(&req, "app")?), (65534, 65534, vec![65534, 100]));
        // A numeric username is a uid.
        req.linux.security.run_as_username = "4242".into();
        assert_eq!(ids(&user(&req, "app")?), (4242, 0, vec![0]));
        Ok(())
    }

    #[test]
    fn request_errors_name_the_field() {
        let field = |req: &ContainerRequest| match user(req, "") {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let mut req = request();
        req.linux.security.run_as_username = "ghost".into();
        assert_eq!(field(&req), "config.linux.security_context.run_as_username");
        let mut req = request();
        req.linux.security.run_as_group = Some(5);
        assert_eq!(field(&req), "config.linux.security_context.run_as_group");
        let mut req = request();
        req.linux.security.run_as_user = Some(1 << 31);
        assert_eq!(field(&req), "config.linux.security_context.run_as_user");
        let mut req = request();
        req.linux.security.run_as_user = Some(0);
        req.linux.security.supplemental_groups = vec![-5];
        assert_eq!(
            field(&req),
            "config.linux.security_context.supplemental_groups[0]"
        );
    }

    #[test]
    fn member_groups_skip_the_users_own_and_out_of_range_gids() {
        let groups = parse_group(
            "app:x:2000:app\nbig:x:4294967296:app\nhigh:x:2147483648:app\n\
             ops:x:30:app\nalso:x:30:app\nnot:x:31:other\n",
        );
        let mut additional = vec![1000];
        add_member_groups(&mut additional, "app", &groups);
        assert_eq!(additional, [1000, 30]);
    }

    #[test]
    fn strict_takes_only_the_requests_groups() -> Result<()> {
        // The validation suite's case: uid 1000 is a member of image groups.
        let mut req = request();
        req.linux.security.run_as_user = Some(1000);
        req.linux.security.supplemental_groups = vec![1234];
        assert_eq!(
            ids(&user(&req, "")?),
            (1000, 1000, vec![1000, 1, 10, 50, 1234]),
            "Merge"
        );
        req.linux.security.strict_supplemental_groups = true;
        assert_eq!(
            ids(&user(&req, "")?),
            (1000, 1000, vec![1000, 1234]),
            "Strict"
        );
        // The primary gid still comes from passwd, and the image's USER
        // still counts.
        let mut req = request();
        req.linux.security.strict_supplemental_groups = true;
        assert_eq!(ids(&user(&req, "app")?), (1000, 1000, vec![1000]));
        Ok(())
    }

    #[test]
    fn ids_are_digits_or_negative() {
        for id in ["0", "1000", "-1", "-x"] {
            assert!(is_id(id), "{id}");
        }
        for name in ["app", "1000a", "a-1"] {
            assert!(!is_id(name), "{name}");
        }
    }
}
