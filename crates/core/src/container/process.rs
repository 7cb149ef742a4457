//! The container's process from the request and the image config, with
//! Kubernetes' rules for command and args.

use super::validate::{check_path, check_program};
use super::{ContainerRequest, ImageConfig};
use crate::{Error, Result};

/// `PATH` when neither the image nor the request sets one (containerd's
/// `oci.WithDefaultPathEnv`).
pub const DEFAULT_PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the container runs, before crius' own additions (`PATH` default,
/// `HOSTNAME`: see [`super::container_spec`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerProcess {
    pub args: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    /// Absolute.
    pub cwd: String,
}

/// The process of `req` on top of the image's config:
/// - args: `command` replaces the image's `Entrypoint` and then its `Cmd` is
///   ignored; `args` replaces `Cmd`. So: command + args, else Entrypoint +
///   args, else Entrypoint + Cmd. An `Entrypoint` of exactly `[""]` counts as
///   none (Docker's way to reset it). Nothing at all is an
///   [`Error::InvalidArgument`] on `config.command`.
/// - env: the image's entries, each overridden in place by a request entry
///   of the same name; the request's new names appended in order (a name
///   given twice in the request: the last value wins, at the first place).
/// - cwd: the request's, else the image's, else `/`; an image working
///   directory that is relative (or has `.`/`..` components) is an
///   [`Error::FailedPrecondition`].
pub fn image_process(config: &ImageConfig, req: &ContainerRequest) -> Result<ContainerProcess> {
    let entrypoint: &[String] = match config.entrypoint.as_slice() {
        [only] if only.is_empty() => &[],
        e => e,
    };
    let args: Vec<String> = if !req.command.is_empty() {
        req.command.iter().chain(&req.args).cloned().collect()
    } else if !req.args.is_empty() {
        entrypoint.iter().chain(&req.args).cloned().collect()
    } else {
        entrypoint.iter().chain(&config.cmd).cloned().collect()
    };
    // containerd refuses it too ("no command specified"): runc has nothing
    // to execute.
    if args.is_empty() {
        return Err(Error::invalid(
            "config.command",
            format!(
                "no command specified: neither the request nor the image {:?} says what to run",
                req.image
            ),
        ));
    }

    // impossible, and a hang of runc: see `validate::check_path_len`.
    // Checked here, where it is known which field names the program.
    if let Err(reason) = check_program(&args[0]) {
        return Err(if !req.command.is_empty() {
            Error::invalid("config.command[0]", reason)
        } else if entrypoint.is_empty() && !req.args.is_empty() {
            Error::invalid("config.args[0]", reason)
        } else {
            Error::FailedPrecondition(format!("the entrypoint of image {:?}: {reason}", req.image))
        });
    }

    let mut env = config.env.clone();
    for (key, value) in &req.envs {
        set_env(&mut env, key, value);
    }

    let cwd = if !req.working_dir.is_empty() {
        req.working_dir.clone()
    } else if config.working_dir.is_empty() {
        "/".to_string()
    } else {
        check_path(&config.working_dir).map_err(|reason| {
            Error::FailedPrecondition(format!(
                "the working directory of image {:?}: {reason}",
                req.image
            ))
        })?;
        config.working_dir.clone()
    };
    Ok(ContainerProcess { args, env, cwd })
}

/// The name of a `KEY=value` entry (the whole entry when there is no `=`).
pub(crate) fn env_name(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// Sets `key` in `env`: in place where it is, else appended.
pub(crate) fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    match env.iter_mut().find(|e| env_name(e) == key) {
        Some(existing) => *existing = entry,
        None => env.push(entry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: strings(&["/entry"]),
            cmd: strings(&["--default"]),
            env: strings(&["PATH=/bin", "LANG=C", "EMPTY="]),
            working_dir: "/app".into(),
            ..Default::default()
        }
    }

    fn request(command: &[&str], args: &[&str]) -> ContainerRequest {
        ContainerRequest {
            name: "c".into(),
            image: "busybox".into(),
            command: strings(command),
            args: strings(args),
            ..Default::default()
        }
    }

    fn args_of(config: &ImageConfig, command: &[&str], args: &[&str]) -> Result<Vec<String>> {
        Ok(image_process(config, &request(command, args))?.args)
    }

    #[test]
    fn kubernetes_command_and_args_rules() -> Result<()> {
        let img = image();
        assert_eq!(args_of(&img, &[], &[])?, ["/entry", "--default"]);
        assert_eq!(args_of(&img, &[], &["-x"])?, ["/entry", "-x"]);
        assert_eq!(args_of(&img, &["/bin/sh"], &[])?, ["/bin/sh"]);
        assert_eq!(
            args_of(&img, &["/bin/sh"], &["-c", "true"])?,
            ["/bin/sh", "-c", "true"]
        );

        let no_entry = ImageConfig {
            entrypoint: vec![],
            cmd: strings(&["sh"]),
            ..Default::default()
        };
        assert_eq!(args_of(&no_entry, &[], &[])?, ["sh"]);
        assert_eq!(args_of(&no_entry, &[], &["ls"])?, ["ls"]);
        // An entrypoint of [""] resets it.
        let reset = ImageConfig {
            entrypoint: strings(&[""]),
            cmd: strings(&["sh"]),
            ..Default::default()
        };
        assert_eq!(args_of(&reset, &[], &[])?, ["sh"]);

        let empty = ImageConfig::default();
        match image_process(&empty, &request(&[], &[])) {
            Err(Error::InvalidArgument { field, reason }) => {
                assert_eq!(field, "config.command");
                assert!(reason.contains("no command specified"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        Ok(())
    }

    #[test]
    fn env_overrides_in_place_and_appends() -> Result<()> {
        let mut req = request(&[], &[]);
        req.envs = vec![
            ("NEW".into(), "1".into()),
            ("LANG".into(), "en_US.UTF-8".into()),
            ("MULTI".into(), "line1\nline2".into()),
            ("NEW".into(), "2".into()),
            ("EQ".into(), "a=b".into()),
        ];
        let p = image_process(&image(), &req)?;
        assert_eq!(
            p.env,
            [
                "PATH=/bin",
                "LANG=en_US.UTF-8",
                "EMPTY=",
                "NEW=2",
                "MULTI=line1\nline2",
                "EQ=a=b",
            ]
        );
        Ok(())
    }

    #[test]
    fn working_directory() -> Result<()> {
        let mut req = request(&[], &[]);
        assert_eq!(image_process(&image(), &req)?.cwd, "/app");
        req.working_dir = "/work".into();
        assert_eq!(image_process(&image(), &req)?.cwd, "/work");
        req.working_dir.clear();
        let mut img = image();
        img.working_dir.clear();
        assert_eq!(image_process(&img, &req)?.cwd, "/");
        img.working_dir = "rel".into();
        assert!(matches!(
            image_process(&img, &req),
            Err(Error::FailedPrecondition(_))
        ));
        Ok(())
    }

    #[test]
    fn a_program_longer_than_a_path_is_refused_where_it_is_named() {
        let long = || "p".repeat(super::super::MAX_PATH_LEN + 1);
        let field = |req: &ContainerRequest, config: &ImageConfig| match image_process(config, req)
        {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let req = ContainerRequest {
            command: vec![long()],
            ..Default::default()
        };
        assert_eq!(field(&req, &image()), "config.command[0]");
        let req = ContainerRequest {
            args: vec![long()],
            ..Default::default()
        };
        assert_eq!(field(&req, &ImageConfig::default()), "config.args[0]");
        // After an entrypoint, args[0] is an argument: it may be long.
        assert!(image_process(&image(), &req).is_ok());
        let config = ImageConfig {
            entrypoint: vec![long()],
            ..Default::default()
        };
        assert!(matches!(
            image_process(&config, &ContainerRequest::default()),
            Err(Error::FailedPrecondition(_))
        ));
    }
}
