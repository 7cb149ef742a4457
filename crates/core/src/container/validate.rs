//! Validation of a [`ContainerRequest`]: every refusal is an
//! [`Error::InvalidArgument`] naming the CRI field (`config.metadata.name`,
//! `config.envs[2].key`, `config.linux.security_context.run_as_group`...).
//!
//! Each refusal says why beside it: containerd refuses it too, a security
//! boundary, or impossible (the kernel or runc would refuse it; refusing
//! early names the field and leaves nothing half-made). Everything else
//! containerd takes is taken.
//!
//! Line breaks: CR and LF are refused where a value ends up in a
//! line-oriented file or a line-oriented key (names, the user name looked
//! up in `/etc/passwd`), and accepted elsewhere (environment keys and
//! values, arguments, paths): Linux allows them there, they are never
//! written to a line-oriented file by crius (the environment goes to runc
//! inside the JSON spec, escaped; mountinfo escapes paths), and Kubernetes
//! users do pass multi-line values (PEM certificates) through the
//! environment. NUL is refused everywhere: `execve` and paths cannot carry
//! it.

use super::{ContainerRequest, ContainerResources, SecurityContext, SecurityProfile};
use crate::sandbox::NamespaceMode;
use crate::sandbox::validate::clean_path;
use crate::{Error, Result};

/// The largest uid or gid crius accepts (2^31-1): Kubernetes' limit, and
/// what stays clear of `(uid_t)-1` and of user-namespace overflow ids.
pub const MAX_ID: u32 = i32::MAX as u32;

/// The kernel's bounds on a CFS period, in microseconds.
const CPU_PERIOD_RANGE: std::ops::RangeInclusive<i64> = 1_000..=1_000_000;
/// The kernel's smallest CFS quota, in microseconds.
const MIN_CPU_QUOTA: i64 = 1_000;
/// cgroup v1 `cpu.shares` bounds (the kernel clamps, runc then refuses).
const CPU_SHARES_RANGE: std::ops::RangeInclusive<i64> = 2..=262_144;

/// Checks `req` before anything is created.
pub fn validate(req: &ContainerRequest) -> Result<()> {
    check_name(&req.name).map_err(|r| Error::invalid("config.metadata.name", r))?;
    validate_image(&req.image)?;
    validate_process(req)?;
    validate_mounts(req)?;
    validate_devices(req)?;
    validate_cdi_names(req)?;
    // Labels become containerd labels (the pod's rules); annotations are
    // kept in crius' own record and reach the spec without empty keys, so
    // any is taken, up to a size.
    crate::sandbox::validate::validate_labels(&req.labels)?;
    crate::sandbox::validate::validate_annotations(&req.annotations)?;
    check_log_path(&req.log_path).map_err(|r| Error::invalid("config.log_path", r))?;
    if let Some(r) = &req.linux.resources {
        validate_resources(r)?;
    }
    validate_security(&req.linux.security)
}

/// The image reference: not empty, no control characters.
fn validate_image(image: &str) -> Result<()> {
    // containerd refuses it too (no image resolves to it).
    if image.trim().is_empty() {
        return Err(Error::invalid("config.image.image", "must not be empty"));
    }
    // containerd refuses it too (not a reference).
    if image.chars().any(char::is_control) {
        return Err(Error::invalid(
            "config.image.image",
            "control characters are not allowed",
        ));
    }
    Ok(())
}

/// The command, args, working directory and environment.
fn validate_process(req: &ContainerRequest) -> Result<()> {
    check_argv("config.command", &req.command)?;
    check_argv("config.args", &req.args)?;
    if !req.working_dir.is_empty() {
        check_path(&req.working_dir).map_err(|r| Error::invalid("config.working_dir", r))?;
    }
    for (i, (key, value)) in req.envs.iter().enumerate() {
        check_env_name(key).map_err(|r| Error::invalid(format!("config.envs[{i}].key"), r))?;
        // impossible: execve cannot carry NUL.
        if value.contains('\0') {
            return Err(Error::invalid(
                format!("config.envs[{i}].value"),
                "NUL is not allowed",
            ));
        }
    }
    Ok(())
}

/// CDI device names are fully qualified (`vendor.com/class=name`);
/// whether they exist is for the spec files, at CreateContainer.
fn validate_cdi_names(req: &ContainerRequest) -> Result<()> {
    for (field, name) in crate::cdi::requested(req) {
        crate::cdi::parse_name(&name).map_err(|why| Error::invalid(field, why))?;
    }
    Ok(())
}

/// A name as [`crate::sandbox::validate::check_object_name`] takes it (the
/// reasons for what it refuses are there): kubelet's `<name>/<attempt>.log`
/// reaches crius as `log_path`, which has its own checks.
fn check_name(name: &str) -> Result<(), String> {
    crate::sandbox::validate::check_object_name(name)
}

/// An environment variable's name: anything but what cannot be one.
/// Control characters are accepted, as runc and the kernel accept them.
fn check_env_name(key: &str) -> Result<(), String> {
    // impossible: runc refuses it ("name cannot be empty").
    if key.is_empty() {
        return Err("must not be empty".into());
    }
    // impossible: `k=v` with a `=` in `k` is another variable (containerd
    // would silently change the meaning).
    if key.contains('=') {
        return Err(format!("{key:?} contains '='"));
    }
    // impossible: execve cannot carry NUL.
    if key.contains('\0') {
        return Err("NUL is not allowed".into());
    }
    Ok(())
}

/// An absolute path. `.` and `..` are accepted (cleaned lexically by
/// [`normalized`]): the fields checked so are trusted (kubelet's) or
/// resolved inside the container's root, so no boundary depends on them.
pub(crate) fn check_path(path: &str) -> Result<(), String> {
    // impossible: a relative host path would resolve against criusd's
    // working directory (and runc's against the bundle); runc refuses a
    // relative working directory ("Cwd must be an absolute path").
    if !path.starts_with('/') {
        return Err(format!("{path:?} is not an absolute path"));
    }
    check_no_nul(path)
}

/// A path inside the container (a mount or device target, a masked or
/// read-only path): relative ones are taken from the root (`data` is
/// `/data`), as runc does.
fn check_target(path: &str) -> Result<(), String> {
    // impossible: an empty path names no mount point or node.
    if path.is_empty() {
        return Err("must not be empty".into());
    }
    check_no_nul(path)
}

/// The longest path the kernel takes (`PATH_MAX` less its NUL).
pub const MAX_PATH_LEN: usize = 4095;

fn check_no_nul(path: &str) -> Result<(), String> {
    // impossible: no path holds NUL.
    if path.contains('\0') {
        return Err("NUL is not allowed in a path".into());
    }
    check_path_len(path)
}

/// impossible: the kernel refuses a longer path (ENAMETOOLONG). Refused
/// early as well because runc's error quoting such a path can fill the
/// 64 KiB pipe it reports through, and then it hangs holding the shim's
/// lock: the container wedges (runc#2530).
pub(crate) fn check_path_len(path: &str) -> Result<(), String> {
    if path.len() > MAX_PATH_LEN {
        return Err(format!(
            "{} bytes: longer than any path Linux takes ({MAX_PATH_LEN})",
            path.len()
        ));
    }
    Ok(())
}

/// Arguments (a program among them, maybe): no NUL.
fn check_argv(field: &str, argv: &[String]) -> Result<()> {
    for (i, arg) in argv.iter().enumerate() {
        // impossible: execve cannot carry NUL.
        if arg.contains('\0') {
            return Err(Error::invalid(
                format!("{field}[{i}]"),
                "NUL is not allowed",
            ));
        }
    }
    Ok(())
}

/// The program a process runs (its `argv[0]`): a path, so no longer than
/// one (see [`check_path_len`]; a name longer than that is never found).
pub(crate) fn check_program(program: &str) -> Result<(), String> {
    check_path_len(program).map_err(|r| format!("the program's name has {r}"))
}

/// The command of an exec (ExecSync, Exec): a program, then its
/// arguments, as containerd takes them.
pub fn validate_exec_cmd(cmd: &[String]) -> Result<()> {
    // impossible: there is nothing to execute (containerd's runtime
    // refuses an empty process args too).
    match cmd.first() {
        None => Err(Error::invalid("cmd", "must not be empty")),
        // impossible too: an empty program name is never found.
        Some(p) if p.is_empty() => Err(Error::invalid("cmd[0]", "the program must not be empty")),
        Some(p) => {
            check_program(p).map_err(|r| Error::invalid("cmd[0]", r))?;
            check_argv("cmd", cmd)
        }
    }
}

/// `path` as an absolute path inside the container, cleaned lexically
/// (Go's `path.Clean` of `/` + `path`): `data/../x/` is `/x`, `/` stays `/`.
pub(crate) fn clean(path: &str) -> String {
    clean_path(&format!("/{path}"))
}

/// `req` as crius uses it once it passed [`validate`]: every path cleaned
/// lexically, so that the spec, the host facts, the dedupe of mounts and
/// the records all see one spelling; relative mount and device targets,
/// masked and read-only paths taken from `/`; empty masked and read-only
/// entries dropped (runc ignores a path that does not exist); device
/// permissions in `rwm` order; a label with an empty key and value dropped
/// (containerd drops labels with empty values).
pub fn normalized(mut req: ContainerRequest) -> ContainerRequest {
    let absolute = |p: &mut String| {
        if p.starts_with('/') {
            *p = clean_path(p);
        }
    };
    absolute(&mut req.working_dir);
    for m in &mut req.mounts {
        m.container_path = clean(&m.container_path);
        absolute(&mut m.host_path);
    }
    for d in &mut req.devices {
        d.container_path = clean(&d.container_path);
        absolute(&mut d.host_path);
        d.permissions = device_permissions(&d.permissions);
    }
    let sc = &mut req.linux.security;
    for list in [&mut sc.masked_paths, &mut sc.readonly_paths]
        .into_iter()
        .flatten()
    {
        *list = container_paths(list);
    }
    if let Some(SecurityProfile::Localhost(path)) = &mut sc.seccomp {
        absolute(path);
    }
    req.labels.retain(|k, v| !(k.is_empty() && v.is_empty()));
    req
}

/// Masked or read-only paths as runc applies them: empty ones dropped (a
/// no-op in runc), the others absolute and cleaned.
pub(crate) fn container_paths(list: &[String]) -> Vec<String> {
    list.iter()
        .filter(|p| !p.is_empty())
        .map(|p| clean(p))
        .collect()
}

/// Mount targets may repeat: both mounts are made, in the request's order
/// (sorted by depth, stably), so the later one is what the container sees,
/// as in containerd.
fn validate_mounts(req: &ContainerRequest) -> Result<()> {
    for (i, m) in req.mounts.iter().enumerate() {
        let field = |f: &str| format!("config.mounts[{i}].{f}");
        check_target(&m.container_path).map_err(|r| Error::invalid(field("container_path"), r))?;
        check_recursive_read_only(m)
            .map_err(|r| Error::invalid(field("recursive_read_only"), r))?;
        // Mappings are checked against the pod's: crate::userns::check_mounts.
        if m.image.is_empty() {
            check_path(&m.host_path).map_err(|r| Error::invalid(field("host_path"), r))?;
        } else {
            check_image_volume(m).map_err(|(f, r)| Error::invalid(field(f), r))?;
        }
    }
    Ok(())
}

/// An image volume is read-only (KEP-4639; the validation suite expects
/// a writable one refused); its host path is crius' to fill (containerd
/// overwrites it too), its sub-path a path inside the image.
fn check_image_volume(m: &super::Mount) -> std::result::Result<(), (&'static str, String)> {
    if !m.readonly {
        return Err(("readonly", "an image volume must be read-only".into()));
    }
    if m.image_sub_path.contains('\0') {
        return Err(("image_sub_path", "must not contain NUL".into()));
    }
    check_path_len(&m.image_sub_path).map_err(|r| ("image_sub_path", r))
}

/// A recursive read-only mount is read-only all the way down, so it must
/// be read-only itself and private: a propagated mount would appear below
/// it after the runtime made everything read-only (containerd and CRI-O
/// refuse the same, and kubelet never sends them).
fn check_recursive_read_only(m: &super::Mount) -> std::result::Result<(), String> {
    if !m.recursive_read_only {
        return Ok(());
    }
    if !m.readonly {
        return Err("a recursive read-only mount must be read-only (readonly: true)".into());
    }
    if m.propagation != super::Propagation::Private {
        return Err(format!(
            "a recursive read-only mount must have private propagation, not {:?}",
            m.propagation
        ));
    }
    Ok(())
}

/// Refuses what the request asks of its pod's runtime handler that the
/// handler cannot do (`features`, as `Status` advertises them).
pub fn check_handler_features(
    req: &ContainerRequest,
    handler: &str,
    features: &crate::runtime::HandlerFeatures,
) -> Result<()> {
    if features.recursive_read_only_mounts {
        return Ok(());
    }
    match req.mounts.iter().position(|m| m.recursive_read_only) {
        // security: a plain read-only bind leaves the mounts below it
        // writable; the request asked that they not be.
        Some(i) => Err(Error::invalid(
            format!("config.mounts[{i}].recursive_read_only"),
            format!(
                "the pod's runtime handler {handler:?} does not support recursive read-only \
                 mounts (its OCI runtime does not list rro, or the kernel lacks mount_setattr)"
            ),
        )),
        None => Ok(()),
    }
}

/// Device targets may repeat (the later node wins, every cgroup rule is
/// kept, as containerd appends them all).
fn validate_devices(req: &ContainerRequest) -> Result<()> {
    for (i, d) in req.devices.iter().enumerate() {
        let field = |f: &str| format!("config.devices[{i}].{f}");
        check_target(&d.container_path).map_err(|r| Error::invalid(field("container_path"), r))?;
        check_path(&d.host_path).map_err(|r| Error::invalid(field("host_path"), r))?;
        // impossible: the cgroup takes only r, w and m (v1 refuses the
        // write, v2's device filter "unknown device access").
        if let Some(c) = d
            .permissions
            .chars()
            .find(|c| !matches!(c, 'r' | 'w' | 'm'))
        {
            return Err(Error::invalid(
                field("permissions"),
                format!(
                    "{:?}: {c:?} is not a device permission (use 'r', 'w', 'm')",
                    d.permissions
                ),
            ));
        }
    }
    Ok(())
}

/// Device permissions in `rwm` order without repeats (`mrw`, `rrw` are
/// `rwm`, `rw`); empty stays empty: the node with no cgroup access.
pub(crate) fn device_permissions(permissions: &str) -> String {
    ['r', 'w', 'm']
        .into_iter()
        .filter(|c| permissions.contains(*c))
        .collect()
}

/// Empty (no log), or a path [`log_path_beneath`] takes.
fn check_log_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Ok(());
    }
    log_path_beneath(path).map(|_| ())
}

/// The file a container's `log_path` names below the pod's log directory,
/// as containerd joins them (Go's `filepath.Join`): a leading `/` is just
/// joined (`/a/0.log` is `<dir>/a/0.log`), `.` and `//` dropped, `..`
/// resolved lexically (symbolic links below the directory are refused
/// when the file is opened, so this is where the kernel would end up too).
/// Returns the relative path (`a/0.log`).
pub fn log_path_beneath(log_path: &str) -> Result<String, String> {
    // impossible: no path holds NUL.
    if log_path.contains('\0') {
        return Err("NUL is not allowed in a path".into());
    }
    // impossible: a path ending in `/`, `.` or `..` names a directory;
    // containerd's open would fail with EISDIR at StartContainer.
    if log_path.is_empty() || matches!(log_path.rsplit('/').next(), Some("" | "." | "..")) {
        return Err(format!("{log_path:?} names a directory, not a file"));
    }
    crate::sandbox::validate::check_name_lengths(log_path)?;
    let mut parts: Vec<&str> = Vec::new();
    for c in log_path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                // security: a `..` that climbs out of the log directory
                // would let the client have criusd (root) write anywhere
                // (containerd's Join does not stop it).
                if parts.pop().is_none() {
                    return Err(format!(
                        "{log_path:?} climbs out of the pod's log directory"
                    ));
                }
            }
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// What the kernel or runc would refuse whatever the node; what depends on
/// the node (swap, hugepages) is checked when it is applied, by
/// [`super::linux_resources`] (containerd drops both where the node
/// cannot apply them).
fn validate_resources(r: &ContainerResources) -> Result<()> {
    let field = |f: &str| format!("config.linux.resources.{f}");
    // impossible: the kernel's bounds on a CFS period.
    if r.cpu_period != 0 && !CPU_PERIOD_RANGE.contains(&r.cpu_period) {
        return Err(Error::invalid(
            field("cpu_period"),
            "must be 0 (unset) or in 1000..=1000000 microseconds",
        ));
    }
    // impossible: the kernel refuses a quota below 1 ms (and below -1).
    if !(r.cpu_quota == 0 || r.cpu_quota == -1 || r.cpu_quota >= MIN_CPU_QUOTA) {
        return Err(Error::invalid(
            field("cpu_quota"),
            "must be 0 (unset), -1 (unlimited) or at least 1000 microseconds",
        ));
    }
    // impossible: cgroup v1 clamps shares (runc's read-back then fails),
    // v2's weight goes out of 1..=10000.
    if r.cpu_shares != 0 && !CPU_SHARES_RANGE.contains(&r.cpu_shares) {
        return Err(Error::invalid(
            field("cpu_shares"),
            "must be 0 (unset) or in 2..=262144",
        ));
    }
    // impossible: runc takes -1 for unlimited, the kernel no other
    // negative limit.
    if r.memory_limit_in_bytes < -1 {
        return Err(Error::invalid(
            field("memory_limit_in_bytes"),
            "must be -1 (unlimited), 0 (unset) or positive",
        ));
    }
    // impossible: the kernel's range.
    if !(-1000..=1000).contains(&r.oom_score_adj) {
        return Err(Error::invalid(
            field("oom_score_adj"),
            "must be in -1000..=1000",
        ));
    }
    for (name, list) in [
        ("cpuset_cpus", &r.cpuset_cpus),
        ("cpuset_mems", &r.cpuset_mems),
    ] {
        check_cpu_list(list).map_err(|reason| Error::invalid(field(name), reason))?;
    }
    // impossible: runc refuses a name with a slash ("must be a file
    // name") and the kernel has no file by another name (ENOENT).
    if let Some(key) = r.unified.keys().find(|k| !is_cgroup_file_name(k)) {
        return Err(Error::invalid(
            field(&format!("unified[{key:?}]")),
            "is not a cgroup v2 file name (like memory.high)",
        ));
    }
    Ok(())
}

/// A cgroup v2 interface file name: `<controller>.<name>`, of letters,
/// digits, `.`, `_` and `-`.
fn is_cgroup_file_name(key: &str) -> bool {
    key.contains('.')
        && !key.starts_with('.')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A cpuset list as the kernel parses it (`bitmap_parselist`): ranges
/// `0-3,8`, with an optional stride `0-7:2/4` (2 of every 4), `N` for the
/// last CPU; empty means unset. impossible otherwise: the kernel refuses
/// the write.
fn check_cpu_list(list: &str) -> Result<(), String> {
    if list.is_empty() {
        return Ok(());
    }
    let num = |s: &str| -> Option<u32> {
        if s == "N" {
            return Some(u32::MAX);
        }
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    let bad = || format!("{list:?} is not a list like 0-3,8 or 0-7:2/4");
    for part in list.split(',') {
        let (range, stride) = match part.split_once(':') {
            Some((range, stride)) => (range, Some(stride)),
            None => (part, None),
        };
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        match (num(a), num(b)) {
            (Some(a), Some(b)) if a <= b => {}
            _ => return Err(bad()),
        }
        if let Some(stride) = stride {
            let (used, group) = stride.split_once('/').ok_or_else(bad)?;
            match (num(used), num(group)) {
                (Some(used), Some(group)) if group > 0 && used <= group && group != u32::MAX => {}
                _ => return Err(bad()),
            }
        }
    }
    Ok(())
}

/// A huge page size as kubelet writes it: digits and `KB`, `MB` or `GB`.
/// Checked only where hugepage limits are applied: impossible otherwise
/// (the kernel has `hugetlb.<size>.*` files for such sizes only), and the
/// size becomes part of a cgroup file name, so a `/` must never get there
/// (security).
pub(crate) fn check_page_size(size: &str) -> Result<(), String> {
    let digits = size
        .strip_suffix("KB")
        .or_else(|| size.strip_suffix("MB"))
        .or_else(|| size.strip_suffix("GB"));
    match digits {
        Some(d) if !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(format!("{size:?} is not a page size like 2MB or 1GB")),
    }
}

fn validate_security(sc: &SecurityContext) -> Result<()> {
    validate_user(sc)?;
    // Unknown capability names are not refused: runc ignores them with a
    // warning, and so does crius (see caps::unknown_capabilities).
    // Network and IPC modes are not checked: a container always shares its
    // pod's (containerd's WithPodNamespaces ignores them). A target_id with
    // a PID mode other than TARGET is ignored, as containerd does.
    let ns = &sc.namespace_options;
    // containerd refuses it too (validateTargetContainer("") finds no
    // container).
    if ns.pid == NamespaceMode::Target && ns.target_id.is_empty() {
        return Err(Error::invalid(
            security_field("namespace_options.target_id"),
            "must name the container whose PID namespace to join (the mode is TARGET)",
        ));
    }
    for (name, list) in [
        ("masked_paths", &sc.masked_paths),
        ("readonly_paths", &sc.readonly_paths),
    ] {
        for (i, path) in list.iter().flatten().enumerate() {
            // Empty ones are dropped (see normalized).
            check_no_nul(path)
                .map_err(|r| Error::invalid(security_field(&format!("{name}[{i}]")), r))?;
        }
    }
    // Its agreement with the pod's is checked where the pod is known.
    crate::userns::pod_maps(
        "config.linux.security_context.namespace_options",
        sc.user_namespace,
        &sc.userns_ids,
    )?;
    validate_profiles(sc)
}

fn security_field(f: &str) -> String {
    format!("config.linux.security_context.{f}")
}

/// A uid or gid as containerd takes it: 0..=2^31-1.
fn id_in_range(v: i64) -> bool {
    u32::try_from(v).is_ok_and(|v| v <= MAX_ID)
}

fn bad_id(v: i64) -> String {
    format!("{v} is not a valid id (0..={MAX_ID})")
}

/// The user, group and supplementary groups the request asks for.
fn validate_user(sc: &SecurityContext) -> Result<()> {
    // containerd refuses it too ("uid out of range", its fix of
    // CVE-2024-40635, where a larger uid wrapped around to root).
    if let Some(uid) = sc.run_as_user.filter(|v| !id_in_range(*v)) {
        return Err(Error::invalid(security_field("run_as_user"), bad_id(uid)));
    }
    // impossible: no /etc/passwd name holds these (`a:b` would be read as
    // user a, group b; a line break would match across entries).
    if let Some(c) = sc
        .run_as_username
        .chars()
        .find(|c| *c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(Error::invalid(
            security_field("run_as_username"),
            format!("character {c:?} is not allowed in a user name"),
        ));
    }
    if let Some(gid) = sc.run_as_group {
        // containerd refuses it too ("user group is specified without
        // user"); so does the validation suite expect.
        if sc.run_as_user.is_none() && sc.run_as_username.is_empty() {
            return Err(Error::invalid(
                security_field("run_as_group"),
                "is set without run_as_user or run_as_username",
            ));
        }
        // containerd refuses it too (as for the uid).
        if !id_in_range(gid) {
            return Err(Error::invalid(security_field("run_as_group"), bad_id(gid)));
        }
    }
    for (i, gid) in sc.supplemental_groups.iter().enumerate() {
        // security: containerd casts these to uint32 unchecked, so 2^32
        // would become gid 0 (root's group).
        if !id_in_range(*gid) {
            return Err(Error::invalid(
                security_field(&format!("supplemental_groups[{i}]")),
                bad_id(*gid),
            ));
        }
    }
    Ok(())
}

/// A `Localhost` seccomp profile names a path, a `Localhost` AppArmor
/// profile a name.
fn validate_profiles(sc: &SecurityContext) -> Result<()> {
    if let Some(SecurityProfile::Localhost(path)) = &sc.seccomp {
        // containerd refuses it too (seccomp.WithProfile("") cannot read
        // the file); relative: impossible, see check_path.
        if path.is_empty() {
            return Err(Error::invalid(
                security_field("seccomp.localhost_ref"),
                "a Localhost profile needs the profile's path",
            ));
        }
        check_path(path).map_err(|r| Error::invalid(security_field("seccomp.localhost_ref"), r))?;
    }
    if let Some(SecurityProfile::Localhost(name)) = &sc.apparmor {
        let name = name.strip_prefix("localhost/").unwrap_or(name);
        // containerd refuses it too: no loaded profile has such a name
        // ("apparmor profile not found").
        if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(Error::invalid(
                security_field("apparmor.localhost_ref"),
                format!("{name:?} is not an AppArmor profile name"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::container::{Device, Mount, Propagation};

    fn request() -> ContainerRequest {
        ContainerRequest {
            name: "app".into(),
            image: "busybox:1.36".into(),
            log_path: "app/0.log".into(),
            ..Default::default()
        }
    }

    fn refused_field(req: &ContainerRequest) -> String {
        match validate(req) {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    type Edit = fn(&mut ContainerRequest);

    fn check(cases: &[(&str, Edit)]) {
        for (field, edit) in cases {
            let mut req = request();
            edit(&mut req);
            assert_eq!(refused_field(&req), *field, "{req:?}");
        }
    }

    #[test]
    fn a_plain_container_is_valid() -> Result<()> {
        validate(&request())?;
        let mut req = request();
        req.name = "a".into();
        req.log_path.clear();
        req.envs = vec![("CERT".into(), "-----BEGIN\r\nxyz\n-----END".into())];
        req.args = vec!["line1\nline2".into()];
        validate(&req)?;
        req.name = "x".repeat(63);
        validate(&req)
    }

    #[test]
    fn names_images_and_process() {
        check(&[
            ("config.metadata.name", |r| r.name = "a/b".into()),
            ("config.metadata.name", |r| r.name = "a\nb".into()),
            ("config.metadata.name", |r| r.name = "a\0b".into()),
            ("config.metadata.name", |r| r.name = "x".repeat(4001)),
            ("config.image.image", |r| r.image.clear()),
            ("config.image.image", |r| r.image = "busybox\n".into()),
            ("config.command[1]", |r| {
                r.command = vec!["sh".into(), "a\0b".into()]
            }),
            ("config.args[0]", |r| r.args = vec!["\0".into()]),
            ("config.working_dir", |r| r.working_dir = "rel".into()),
            ("config.working_dir", |r| r.working_dir = "./a".into()),
            ("config.working_dir", |r| r.working_dir = "/a\0".into()),
            ("config.working_dir", |r| {
                r.working_dir = format!("/{}", "d".repeat(MAX_PATH_LEN))
            }),
            ("config.mounts[0].host_path", |r| {
                r.mounts = vec![Mount {
                    container_path: "/m".into(),
                    host_path: format!("/{}", "h".repeat(70_000)),
                    ..Default::default()
                }]
            }),
        ]);
        // An argument may be long (execve takes up to 128 KiB each).
        let mut req = request();
        req.command = vec!["echo".into(), "a".repeat(100_000)];
        req.working_dir = format!("/{}", "d".repeat(MAX_PATH_LEN - 1));
        assert!(validate(&req).is_ok());
        // `..` and control characters cannot leave the container's root:
        // cleaned, not refused.
        let mut req = request();
        req.working_dir = "/a/../b/./c\n".into();
        assert!(validate(&req).is_ok());
        assert_eq!(normalized(req).working_dir, "/b/c\n");
    }

    #[test]
    fn names_containerd_takes_are_taken() {
        // The validation suite's names are longer than a DNS label.
        for name in [
            "x".repeat(64),
            "x".repeat(300),
            "-a".into(),
            "a b".into(),
            "ü".into(),
            String::new(),
        ] {
            let req = ContainerRequest { name, ..request() };
            assert!(validate(&req).is_ok(), "{req:?}");
        }
    }

    #[test]
    fn features_crius_lacks_are_refused_not_ignored() {
        fn m(edit: fn(&mut Mount)) -> Mount {
            let mut m = Mount {
                container_path: "/data".into(),
                host_path: "/srv".into(),
                ..Default::default()
            };
            edit(&mut m);
            m
        }
        let cases: [(&str, Edit); 3] = [
            ("config.CDI_devices[0].name", |r| {
                r.cdi_devices = vec!["gpu0".into()]
            }),
            ("config.annotations[\"cdi.k8s.io/gpu\"]", |r| {
                r.annotations
                    .insert("cdi.k8s.io/gpu".into(), "vendor.com/gpu=0,bad name".into());
            }),
            (
                "config.linux.security_context.namespace_options.userns_options.uids",
                |r| r.linux.security.user_namespace = Some(NamespaceMode::Pod),
            ),
        ];
        check(&cases);
        // What asks for nothing passes: kubelet's `userns_options { mode: NODE }`.
        let mut req = request();
        req.linux.security.user_namespace = Some(NamespaceMode::Node);
        req.mounts = vec![m(|_| {})];
        assert!(validate(&req).is_ok());
    }

    #[test]
    fn recursive_read_only_mounts_are_read_only_and_private() {
        fn rro(edit: fn(&mut Mount)) -> ContainerRequest {
            let mut m = Mount {
                container_path: "/data".into(),
                host_path: "/srv".into(),
                readonly: true,
                recursive_read_only: true,
                ..Default::default()
            };
            edit(&mut m);
            ContainerRequest {
                mounts: vec![m],
                ..request()
            }
        }
        for (req, why) in [
            (rro(|m| m.readonly = false), "must be read-only"),
            (
                rro(|m| m.propagation = Propagation::HostToContainer),
                "private propagation",
            ),
            (
                rro(|m| m.propagation = Propagation::Bidirectional),
                "private propagation",
            ),
        ] {
            match validate(&req) {
                Err(Error::InvalidArgument { field, reason }) => {
                    assert_eq!(field, "config.mounts[0].recursive_read_only");
                    assert!(reason.contains(why), "{reason}");
                }
                other => panic!("{req:?}: {other:?}"),
            }
        }
        let ok = rro(|_| {});
        assert!(validate(&ok).is_ok());
        // Whether the pod's handler can do it is asked at create.
        let yes = crate::runtime::HandlerFeatures {
            recursive_read_only_mounts: true,
            ..Default::default()
        };
        assert!(check_handler_features(&ok, "runc", &yes).is_ok());
        match check_handler_features(&ok, "kata", &Default::default()) {
            Err(Error::InvalidArgument { field, reason }) => {
                assert_eq!(field, "config.mounts[0].recursive_read_only");
                assert!(reason.contains("\"kata\" does not support"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(check_handler_features(&request(), "kata", &Default::default()).is_ok());
    }

    #[test]
    fn image_volumes_are_read_only_with_a_sane_sub_path() {
        let image = |edit: fn(&mut Mount)| {
            let mut m = Mount {
                container_path: "/data".into(),
                image: "busybox".into(),
                readonly: true,
                ..Default::default()
            };
            edit(&mut m);
            ContainerRequest {
                mounts: vec![m],
                ..request()
            }
        };
        assert!(validate(&image(|_| {})).is_ok(), "no host path needed");
        assert!(validate(&image(|m| m.image_sub_path = "etc/ssl".into())).is_ok());
        for (req, field) in [
            (image(|m| m.readonly = false), "config.mounts[0].readonly"),
            (
                image(|m| m.image_sub_path = "a\0b".into()),
                "config.mounts[0].image_sub_path",
            ),
            (
                image(|m| m.image_sub_path = "x".repeat(MAX_PATH_LEN + 1)),
                "config.mounts[0].image_sub_path",
            ),
        ] {
            match validate(&req) {
                Err(Error::InvalidArgument { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{req:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn environment() {
        check(&[
            ("config.envs[1].key", |r| {
                r.envs = vec![("A".into(), "1".into()), (String::new(), "x".into())]
            }),
            ("config.envs[0].key", |r| {
                r.envs = vec![("A=B".into(), "1".into())]
            }),
            ("config.envs[0].key", |r| {
                r.envs = vec![("A\0".into(), "1".into())]
            }),
            ("config.envs[0].value", |r| {
                r.envs = vec![("A".into(), "1\0".into())]
            }),
        ]);
        // The kernel and runc take control characters in a name.
        let mut req = request();
        req.envs = vec![("A\nB".into(), "1".into()), ("\tC".into(), String::new())];
        assert!(validate(&req).is_ok());
    }

    #[test]
    fn mounts_devices_and_log_path() {
        fn mount(container: &str, host: &str) -> Mount {
            Mount {
                container_path: container.into(),
                host_path: host.into(),
                ..Default::default()
            }
        }
        fn device(container: &str, host: &str, perms: &str) -> Device {
            Device {
                container_path: container.into(),
                host_path: host.into(),
                permissions: perms.into(),
            }
        }
        check(&[
            ("config.mounts[0].container_path", |r| {
                r.mounts = vec![mount("", "/srv")]
            }),
            ("config.mounts[0].container_path", |r| {
                r.mounts = vec![mount("/data\0", "/srv")]
            }),
            ("config.mounts[0].host_path", |r| {
                r.mounts = vec![mount("/data", "srv")]
            }),
            ("config.mounts[0].host_path", |r| {
                r.mounts = vec![mount("/data", "./srv")]
            }),
            ("config.mounts[0].host_path", |r| {
                r.mounts = vec![mount("/data", "")]
            }),
            ("config.devices[0].permissions", |r| {
                r.devices = vec![device("/dev/fuse", "/dev/fuse", "rwx")]
            }),
            ("config.devices[1].permissions", |r| {
                r.devices = vec![
                    device("/dev/fuse", "/dev/fuse", "rw"),
                    device("/dev/null", "/dev/null", "R"),
                ]
            }),
            ("config.devices[0].container_path", |r| {
                r.devices = vec![device("", "/dev/fuse", "rw")]
            }),
            ("config.devices[0].host_path", |r| {
                r.devices = vec![device("/dev/fuse", "fuse", "rwm")]
            }),
            ("config.log_path", |r| r.log_path = "../x.log".into()),
            ("config.log_path", |r| r.log_path = "/../x.log".into()),
            ("config.log_path", |r| r.log_path = "app/../../x.log".into()),
            ("config.log_path", |r| r.log_path = "app/\0.log".into()),
            ("config.log_path", |r| r.log_path = "app/".into()),
            ("config.log_path", |r| {
                r.log_path = format!("{}/0.log", "d".repeat(256))
            }),
            ("config.log_path", |r| r.log_path = "app/.".into()),
            ("config.log_path", |r| r.log_path = "app/..".into()),
            ("config.log_path", |r| r.log_path = "/".into()),
            ("config.labels[\"\"]", |r| {
                r.labels.insert(String::new(), "x".into());
            }),
            ("config.labels[\"k\"]", |r| {
                r.labels.insert("k".into(), "x".repeat(4096));
            }),
            ("config.annotations", |r| {
                for i in 0..3 {
                    r.annotations.insert(format!("a{i}"), "x".repeat(400 << 10));
                }
            }),
        ]);
        // Annotations are crius' own to keep: any key; a label with an
        // empty key and value is dropped, as containerd drops it.
        let mut req = request();
        req.annotations.insert(String::new(), "x".into());
        req.annotations.insert("a\nb".into(), "x".repeat(5000));
        req.labels.insert(String::new(), String::new());
        req.labels.insert("k\u{1}".into(), "v".into());
        assert!(validate(&req).is_ok());
        assert_eq!(normalized(req).labels.len(), 1);
        let mut req = request();
        req.devices = vec![device("/dev/fuse", "/dev/fuse", "mrw")];
        req.mounts = vec![mount("/data", "/srv/data")];
        assert!(validate(&req).is_ok());
        // Relative targets are taken from `/`, `.`/`..` cleaned, control
        // characters kept, the same target twice accepted (the later wins).
        req.mounts = vec![
            mount("data", "/srv/../srv/data/"),
            mount("/data/", "/srv/b"),
            mount("/x/./y/../z", "/srv/a b\tc\n"),
        ];
        req.devices = vec![device("dev/../fuse", "/dev/./fuse", "rwm")];
        assert!(validate(&req).is_ok());
        let n = normalized(req);
        let targets: Vec<(&str, &str)> = n
            .mounts
            .iter()
            .map(|m| (m.container_path.as_str(), m.host_path.as_str()))
            .collect();
        assert_eq!(
            targets,
            [
                ("/data", "/srv/data"),
                ("/data", "/srv/b"),
                ("/x/z", "/srv/a b\tc\n")
            ]
        );
        assert_eq!(
            (
                n.devices[0].container_path.as_str(),
                n.devices[0].host_path.as_str()
            ),
            ("/fuse", "/dev/fuse")
        );
    }

    #[test]
    fn device_permissions_are_normalized() {
        fn device(container: &str, perms: &str) -> Device {
            Device {
                container_path: container.into(),
                host_path: "/dev/fuse".into(),
                permissions: perms.into(),
            }
        }
        let mut req = request();
        req.devices = vec![
            device("/dev/a", ""),
            device("/dev/b", "rr"),
            device("/dev/c", "mwr"),
            device("/dev/c", "m"),
        ];
        assert!(validate(&req).is_ok());
        let perms: Vec<String> = normalized(req)
            .devices
            .into_iter()
            .map(|d| d.permissions)
            .collect();
        assert_eq!(perms, ["", "r", "rwm", "m"]);
        assert_eq!(device_permissions("wmrwm"), "rwm");
    }

    #[test]
    fn log_paths_join_like_go() {
        for (path, rel) in [
            ("app/0.log", "app/0.log"),
            ("/abs.log", "abs.log"),
            ("//var/log/x.log", "var/log/x.log"),
            ("./app/./0.log", "app/0.log"),
            ("app//0.log", "app/0.log"),
            ("app/../0.log", "0.log"),
            ("a/b/../../0.log", "0.log"),
            ("app/a\nb.log", "app/a\nb.log"),
        ] {
            assert_eq!(log_path_beneath(path).as_deref(), Ok(rel), "{path:?}");
            let req = ContainerRequest {
                log_path: path.into(),
                ..request()
            };
            assert!(validate(&req).is_ok(), "{path:?}");
        }
    }

    #[test]
    fn masked_and_readonly_paths_are_normalized() -> Result<()> {
        let mut req = request();
        req.linux.security.masked_paths = Some(vec![
            "proc/kcore".into(),
            String::new(),
            "/sys/../sys/firmware/".into(),
        ]);
        req.linux.security.readonly_paths = Some(vec![]);
        req.linux.security.seccomp = Some(SecurityProfile::Localhost(
            "/var/lib/kubelet/seccomp/../seccomp/a.json".into(),
        ));
        validate(&req)?;
        let sc = normalized(req).linux.security;
        assert_eq!(
            sc.masked_paths,
            Some(vec!["/proc/kcore".to_string(), "/sys/firmware".to_string()])
        );
        assert_eq!(sc.readonly_paths, Some(vec![]));
        assert_eq!(
            sc.seccomp,
            Some(SecurityProfile::Localhost(
                "/var/lib/kubelet/seccomp/a.json".into()
            ))
        );
        Ok(())
    }

    #[test]
    fn users_and_groups() {
        check(&[
            ("config.linux.security_context.run_as_group", |r| {
                r.linux.security.run_as_group = Some(1000)
            }),
            ("config.linux.security_context.run_as_user", |r| {
                r.linux.security.run_as_user = Some(-1)
            }),
            ("config.linux.security_context.run_as_user", |r| {
                r.linux.security.run_as_user = Some(1 << 31)
            }),
            ("config.linux.security_context.run_as_group", |r| {
                r.linux.security.run_as_user = Some(0);
                r.linux.security.run_as_group = Some(1 << 31);
            }),
            (
                "config.linux.security_context.supplemental_groups[1]",
                |r| r.linux.security.supplemental_groups = vec![1, -2],
            ),
            ("config.linux.security_context.run_as_username", |r| {
                r.linux.security.run_as_username = "root:0".into()
            }),
            ("config.linux.security_context.run_as_username", |r| {
                r.linux.security.run_as_username = "evil\nroot".into()
            }),
        ]);
        let mut req = request();
        req.linux.security.run_as_username = "app".into();
        req.linux.security.run_as_group = Some(1000);
        req.linux.security.run_as_user = Some(i64::from(i32::MAX));
        assert!(validate(&req).is_ok());
    }

    #[test]
    fn capabilities_namespaces_and_profiles() {
        check(&[
            (
                "config.linux.security_context.namespace_options.target_id",
                |r| r.linux.security.namespace_options.pid = NamespaceMode::Target,
            ),
            ("config.linux.security_context.seccomp.localhost_ref", |r| {
                r.linux.security.seccomp = Some(SecurityProfile::Localhost(String::new()))
            }),
            ("config.linux.security_context.seccomp.localhost_ref", |r| {
                r.linux.security.seccomp =
                    Some(SecurityProfile::Localhost("profiles/a.json".into()))
            }),
            (
                "config.linux.security_context.apparmor.localhost_ref",
                |r| {
                    r.linux.security.apparmor =
                        Some(SecurityProfile::Localhost("localhost/".into()))
                },
            ),
            ("config.linux.security_context.masked_paths[0]", |r| {
                r.linux.security.masked_paths = Some(vec!["/proc/kcore\0".into()])
            }),
            ("config.linux.security_context.readonly_paths[1]", |r| {
                r.linux.security.readonly_paths = Some(vec!["/a".into(), "\0".into()])
            }),
            ("config.linux.security_context.seccomp.localhost_ref", |r| {
                r.linux.security.seccomp = Some(SecurityProfile::Localhost("./a.json".into()))
            }),
        ]);
        let mut req = request();
        req.linux.security.capabilities.add =
            vec!["net_admin".into(), "CAP_SYS_TIME".into(), "FLY".into()];
        req.linux.security.capabilities.drop = vec!["all".into()];
        req.linux.security.seccomp = Some(SecurityProfile::Localhost(
            "/var/lib/kubelet/seccomp/audit.json".into(),
        ));
        req.linux.security.apparmor =
            Some(SecurityProfile::Localhost("localhost/k8s-nginx".into()));
        assert!(validate(&req).is_ok());
        // Network and IPC follow the pod whatever the container says; a
        // stray target_id is ignored.
        for mode in [
            NamespaceMode::Container,
            NamespaceMode::Target,
            NamespaceMode::Node,
        ] {
            let mut req = request();
            let ns = &mut req.linux.security.namespace_options;
            ns.network = mode;
            ns.ipc = mode;
            ns.target_id = "abc".into();
            assert!(validate(&req).is_ok(), "{mode:?}");
        }
    }

    #[test]
    fn resources() {
        fn res(r: &mut ContainerRequest) -> &mut ContainerResources {
            r.linux.resources.get_or_insert_with(Default::default)
        }
        check(&[
            ("config.linux.resources.cpu_period", |r| {
                res(r).cpu_period = 999
            }),
            ("config.linux.resources.cpu_quota", |r| {
                res(r).cpu_quota = 500
            }),
            ("config.linux.resources.cpu_quota", |r| {
                res(r).cpu_quota = -2
            }),
            ("config.linux.resources.cpu_shares", |r| {
                res(r).cpu_shares = 1
            }),
            ("config.linux.resources.memory_limit_in_bytes", |r| {
                res(r).memory_limit_in_bytes = -2
            }),
            ("config.linux.resources.oom_score_adj", |r| {
                res(r).oom_score_adj = 1001
            }),
            ("config.linux.resources.cpuset_cpus", |r| {
                res(r).cpuset_cpus = "0-".into()
            }),
            ("config.linux.resources.cpuset_mems", |r| {
                res(r).cpuset_mems = "3-1".into()
            }),
            ("config.linux.resources.cpuset_cpus", |r| {
                res(r).cpuset_cpus = "0-7:2".into()
            }),
            ("config.linux.resources.cpuset_cpus", |r| {
                res(r).cpuset_cpus = "0-7:5/4".into()
            }),
            ("config.linux.resources.cpuset_cpus", |r| {
                res(r).cpuset_cpus = "0-7:1/0".into()
            }),
            ("config.linux.resources.unified[\"../memory.max\"]", |r| {
                res(r).unified.insert("../memory.max".into(), "1".into());
            }),
        ]);
        let mut req = request();
        *res(&mut req) = ContainerResources {
            cpu_period: 100_000,
            cpu_quota: -1,
            cpu_shares: 2,
            memory_limit_in_bytes: 1 << 30,
            memory_swap_limit_in_bytes: -1,
            oom_score_adj: -997,
            cpuset_cpus: "0-1,3,8-15:2/4,4-N".into(),
            cpuset_mems: "0".into(),
            hugepage_limits: vec![("2MB".into(), 1 << 30), ("1GB".into(), 0)],
            unified: BTreeMap::from([("memory.high".to_string(), "max".to_string())]),
        };
        assert!(validate(&req).is_ok());
        // What depends on the node is checked where it is applied
        // (linux_resources): unlimited memory, swap below memory, odd
        // page sizes and huge limits pass validation.
        *res(&mut req) = ContainerResources {
            memory_limit_in_bytes: -1,
            memory_swap_limit_in_bytes: -5,
            hugepage_limits: vec![("2M".into(), u64::MAX)],
            ..Default::default()
        };
        assert!(validate(&req).is_ok());
    }

    #[test]
    fn cleaning_paths() {
        assert_eq!(clean("/"), "/");
        assert_eq!(clean(""), "/");
        assert_eq!(clean("/a//b/"), "/a/b");
        assert_eq!(clean("/etc/hosts"), "/etc/hosts");
        assert_eq!(clean("etc/hosts"), "/etc/hosts");
        assert_eq!(clean("/a/../../etc/./hosts"), "/etc/hosts");
    }

    #[test]
    fn cgroup_file_names() {
        for ok in [
            "memory.high",
            "io.bfq.weight",
            "hugetlb.2MB.max",
            "cpu.uclamp_min",
        ] {
            assert!(is_cgroup_file_name(ok), "{ok}");
        }
        for bad in [
            "memory",
            ".high",
            "memory/high",
            "../memory.max",
            "memory.high\n",
            "",
        ] {
            assert!(!is_cgroup_file_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn exec_commands() {
        let field = |cmd: &[&str]| {
            let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
            match validate_exec_cmd(&cmd) {
                Err(Error::InvalidArgument { field, .. }) => field,
                other => panic!("{cmd:?}: {other:?}"),
            }
        };
        assert_eq!(field(&[]), "cmd");
        assert_eq!(field(&[""]), "cmd[0]");
        assert_eq!(field(&["echo", "a\0b"]), "cmd[1]");
        assert_eq!(field(&[&"n".repeat(70_000)]), "cmd[0]");
        let ok = |cmd: &[&str]| {
            let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
            validate_exec_cmd(&cmd).is_ok()
        };
        assert!(ok(&["sh", "-c", "exit 3"]));
        assert!(ok(&[&"n".repeat(300)]), "runc's to refuse: not found");
        assert!(ok(&["echo", &"a".repeat(100_000)]));
    }
}
