//! `crius exec -i/-t` and `crius attach`: the Exec and Attach RPCs, then a
//! [`session`] on the URL they answer.

use anyhow::Context;
use crius_cri_api::v1;
use crius_stream::client::{ExecOptions, Transport};

use crate::{client, session};

/// What an interactive exec asks for.
#[derive(Debug, Clone, Copy)]
pub struct Interactive {
    /// Forward our stdin (`-i`).
    pub stdin: bool,
    /// A tty (`-t`), if our stdin is a terminal.
    pub tty: bool,
    pub transport: Transport,
}

impl Interactive {
    /// `-i`/`-t` as asked, the tty dropped (with a warning) when stdin is
    /// not a terminal.
    pub fn new(stdin: bool, tty: bool, transport: Transport) -> Self {
        Self {
            stdin,
            tty: session::use_tty(tty),
            transport,
        }
    }

    /// The streams: stderr apart only without a tty (a tty merges it).
    fn options(self) -> ExecOptions {
        ExecOptions {
            stdin: self.stdin,
            stdout: true,
            stderr: !self.tty,
            tty: self.tty,
        }
    }
}

/// `crius exec -i/-t ID -- CMD...`: the command's exit code.
pub async fn exec(
    cri: &mut client::Cri,
    id: &str,
    cmd: &[String],
    how: Interactive,
) -> anyhow::Result<i32> {
    let options = how.options();
    let url = cri
        .runtime
        .exec(v1::ExecRequest {
            container_id: id.to_string(),
            cmd: cmd.to_vec(),
            tty: options.tty,
            stdin: options.stdin,
            stdout: options.stdout,
            stderr: options.stderr,
        })
        .await
        .context("Exec")?
        .into_inner()
        .url;
    session::run(&url, options, how.transport).await
}

/// `crius attach ID`: the container's exit code when it ends, 0 when
/// detached (our stdin ended). Stdin is forwarded when the container was
/// created with one (unless `no_stdin`), a tty used when it has one.
pub async fn attach(
    cri: &mut client::Cri,
    id: &str,
    no_stdin: bool,
    transport: Transport,
) -> anyhow::Result<i32> {
    let (stdin, tty) = streams_of(cri, id).await?;
    let how = Interactive::new(stdin && !no_stdin, tty, transport);
    attach_with(cri, id, how).await
}

/// Attaches to `id` with the streams of `how`; the exit code.
pub async fn attach_with(cri: &mut client::Cri, id: &str, how: Interactive) -> anyhow::Result<i32> {
    let options = how.options();
    let url = cri
        .runtime
        .attach(v1::AttachRequest {
            container_id: id.to_string(),
            tty: options.tty,
            stdin: options.stdin,
            stdout: options.stdout,
            stderr: options.stderr,
        })
        .await
        .context("Attach")?
        .into_inner()
        .url;
    session::run(&url, options, how.transport).await
}

/// Whether container `id` was created with a stdin and with a tty, as its
/// verbose status says (false where it says nothing).
async fn streams_of(cri: &mut client::Cri, id: &str) -> anyhow::Result<(bool, bool)> {
    let (_, info) = crate::containers::status(cri, id).await?;
    Ok(parse_streams(info.get("info").map(String::as_str)))
}

/// `stdin` and `tty` of a verbose container status' `info`.
fn parse_streams(info: Option<&str>) -> (bool, bool) {
    let v: serde_json::Value = info
        .and_then(|i| serde_json::from_str(i).ok())
        .unwrap_or_default();
    let flag = |k: &str| v[k].as_bool().unwrap_or(false);
    (flag("stdin"), flag("tty"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_from_the_status_info() {
        let info = r#"{"pid":1,"stdin":true,"tty":false}"#;
        assert_eq!(parse_streams(Some(info)), (true, false));
        assert_eq!(
            parse_streams(Some(r#"{"stdin":false,"tty":true}"#)),
            (false, true)
        );
        assert_eq!(parse_streams(Some(r#"{"pid":1}"#)), (false, false));
        assert_eq!(parse_streams(Some("not json")), (false, false));
        assert_eq!(parse_streams(None), (false, false));
    }

    #[test]
    fn a_tty_merges_stderr() {
        let how = Interactive {
            stdin: true,
            tty: true,
            transport: Transport::Spdy,
        };
        let o = how.options();
        assert!(o.stdin && o.stdout && o.tty && !o.stderr);
        let o = Interactive { tty: false, ..how }.options();
        assert!(o.stdin && o.stdout && o.stderr && !o.tty);
    }
}
