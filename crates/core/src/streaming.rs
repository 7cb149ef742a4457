//! The rules of CRI's streaming RPCs (Exec, Attach, PortForward) before a
//! URL is handed out, as kubelet's streaming server and containerd check
//! them.

use crate::container::ContainerState;
use crate::{Error, Result};

/// The streams an Exec or Attach asks for. kubelet's server refuses the
/// same: a tty merges stderr into stdout, and a session without any
/// stream has nothing to carry.
pub fn check_streams(
    container_id: &str,
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> Result<()> {
    if container_id.is_empty() {
        return Err(Error::invalid("container_id", "missing"));
    }
    if tty && stderr {
        return Err(Error::invalid(
            "stderr",
            "tty and stderr cannot both be true (a terminal has one output stream)",
        ));
    }
    if !stdin && !stdout && !stderr {
        return Err(Error::invalid(
            "stdin",
            "one of stdin, stdout or stderr must be set",
        ));
    }
    Ok(())
}

/// An Exec needs a command (containerd's exec refuses an empty process
/// args the same way, only later, on the stream).
pub fn check_command(cmd: &[String]) -> Result<()> {
    match cmd.first() {
        None => Err(Error::invalid("cmd", "must name a command")),
        Some(program) if program.is_empty() => Err(Error::invalid(
            "cmd",
            "the program (cmd[0]) must not be empty",
        )),
        Some(_) => Ok(()),
    }
}

/// Exec and Attach reach a running container only, as in containerd.
pub fn require_running(container_id: &str, state: ContainerState) -> Result<()> {
    if state == ContainerState::Running {
        Ok(())
    } else {
        Err(Error::FailedPrecondition(format!(
            "container {container_id} is {state:?}, not running"
        )))
    }
}

/// The ports of a PortForward as TCP ports. kubelet passes them on as
/// int32; one outside 1..=65535 can never be connected to, so it is
/// refused here with the field named rather than on the stream.
pub fn tcp_ports(pod_sandbox_id: &str, ports: &[i32]) -> Result<Vec<u16>> {
    if pod_sandbox_id.is_empty() {
        return Err(Error::invalid("pod_sandbox_id", "missing"));
    }
    ports
        .iter()
        .map(|&p| match u16::try_from(p) {
            Ok(port) if port != 0 => Ok(port),
            _ => Err(Error::invalid("port", format!("{p} is not a TCP port"))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(r: Result<()>) -> String {
        match r {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn streams_as_kubelet_checks_them() {
        assert!(check_streams("c", true, true, true, false).is_ok());
        assert!(check_streams("c", false, false, false, true).is_ok());
        assert_eq!(
            field(check_streams("", false, true, true, true)),
            "container_id"
        );
        assert_eq!(field(check_streams("c", true, false, true, true)), "stderr");
        assert_eq!(
            field(check_streams("c", false, false, false, false)),
            "stdin"
        );
        assert_eq!(field(check_command(&[])), "cmd");
        assert_eq!(field(check_command(&[String::new()])), "cmd");
    }

    #[test]
    fn only_a_running_container_takes_a_session() {
        assert!(require_running("c", ContainerState::Running).is_ok());
        for s in [
            ContainerState::Created,
            ContainerState::Exited,
            ContainerState::Unknown,
        ] {
            assert!(matches!(
                require_running("c", s),
                Err(Error::FailedPrecondition(_))
            ));
        }
    }

    #[test]
    fn ports_are_tcp_ports() {
        assert_eq!(tcp_ports("p", &[80, 65535]).ok(), Some(vec![80, 65535]));
        assert_eq!(tcp_ports("p", &[]).ok(), Some(vec![]));
        for bad in [0, -1, 65536] {
            assert!(
                matches!(tcp_ports("p", &[bad]), Err(Error::InvalidArgument { field, .. }) if field == "port")
            );
        }
        assert!(
            matches!(tcp_ports("", &[80]), Err(Error::InvalidArgument { field, .. }) if field == "pod_sandbox_id")
        );
    }
}
