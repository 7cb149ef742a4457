//! The local terminal of `exec -t`, `attach` and `run -t`: raw mode while
//! a session runs, restored by a guard on every way out (return, error,
//! panic unwinding, and the signals the session turns into a return), and
//! the terminal's size.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use crius_stream::channel::TerminalSize;
use nix::sys::termios::{self, SetArg, Termios};

/// A terminal whose mode can be read and set (the real one, or a fake in
/// tests).
pub trait Mode {
    /// The saved settings.
    type State: Clone;
    /// The current settings.
    fn get(&self) -> io::Result<Self::State>;
    /// Applies `state`.
    fn set(&self, state: &Self::State) -> io::Result<()>;
    /// `state` made raw (no echo, no line editing, no signals from keys).
    fn raw(state: &Self::State) -> Self::State;
}

/// A terminal file descriptor (stdin).
pub struct Fd<'a>(pub BorrowedFd<'a>);

impl Mode for Fd<'_> {
    type State = Termios;

    fn get(&self) -> io::Result<Termios> {
        termios::tcgetattr(self.0).map_err(io::Error::from)
    }

    fn set(&self, state: &Termios) -> io::Result<()> {
        // TCSADRAIN: output already written keeps the mode it was
        // written in.
        termios::tcsetattr(self.0, SetArg::TCSADRAIN, state).map_err(io::Error::from)
    }

    fn raw(state: &Termios) -> Termios {
        let mut raw = state.clone();
        termios::cfmakeraw(&mut raw);
        raw
    }
}

/// Raw mode for as long as it lives; dropping it restores the settings
/// found at [`RawGuard::enter`].
pub struct RawGuard<M: Mode> {
    term: M,
    saved: M::State,
}

impl<M: Mode> RawGuard<M> {
    /// Saves the settings and makes the terminal raw. An error (not a
    /// terminal) leaves it as it was.
    pub fn enter(term: M) -> io::Result<Self> {
        let saved = term.get()?;
        term.set(&M::raw(&saved))?;
        Ok(Self { term, saved })
    }
}

impl<M: Mode> Drop for RawGuard<M> {
    fn drop(&mut self) {
        if let Err(e) = self.term.set(&self.saved) {
            eprintln!("crius: cannot restore the terminal: {e} (try `reset`)");
        }
    }
}

/// The size of the terminal at `fd`, if it is one and knows its size.
pub fn size(fd: impl AsFd) -> Option<TerminalSize> {
    let ws = rustix::termios::tcgetwinsize(fd).ok()?;
    (ws.ws_col > 0 && ws.ws_row > 0).then_some(TerminalSize {
        width: ws.ws_col,
        height: ws.ws_row,
    })
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    /// A terminal whose state is a word; raw is `state | RAW`.
    #[derive(Clone, Default)]
    struct Fake {
        state: Rc<RefCell<u32>>,
        sets: Rc<RefCell<Vec<u32>>>,
        fail_get: bool,
        fail_set: bool,
    }

    const RAW: u32 = 0x100;

    impl Mode for Fake {
        type State = u32;
        fn get(&self) -> io::Result<u32> {
            if self.fail_get {
                return Err(io::Error::from_raw_os_error(25)); // ENOTTY
            }
            Ok(*self.state.borrow())
        }
        fn set(&self, state: &u32) -> io::Result<()> {
            self.sets.borrow_mut().push(*state);
            if self.fail_set {
                return Err(io::Error::other("set failed"));
            }
            *self.state.borrow_mut() = *state;
            Ok(())
        }
        fn raw(state: &u32) -> u32 {
            state | RAW
        }
    }

    #[test]
    fn raw_while_held_restored_when_dropped() {
        let term = Fake {
            state: Rc::new(RefCell::new(0x7)),
            ..Default::default()
        };
        let guard = RawGuard::enter(term.clone()).expect("enter");
        assert_eq!(*term.state.borrow(), 0x7 | RAW);
        drop(guard);
        assert_eq!(*term.state.borrow(), 0x7);
        assert_eq!(*term.sets.borrow(), vec![0x7 | RAW, 0x7]);
    }

    #[test]
    fn restored_on_an_error_return_and_a_panic() {
        let term = Fake {
            state: Rc::new(RefCell::new(0x3)),
            ..Default::default()
        };
        let session = |t: Fake| -> io::Result<()> {
            let _raw = RawGuard::enter(t)?;
            Err(io::Error::other("the session failed"))
        };
        assert!(session(term.clone()).is_err());
        assert_eq!(*term.state.borrow(), 0x3);
        let t = term.clone();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _raw = RawGuard::enter(t);
            panic!("mid-session");
        }));
        assert!(panicked.is_err());
        assert_eq!(*term.state.borrow(), 0x3);
    }

    #[test]
    fn not_a_terminal_is_left_alone() {
        let term = Fake {
            fail_get: true,
            ..Default::default()
        };
        assert!(RawGuard::enter(term.clone()).is_err());
        assert!(term.sets.borrow().is_empty(), "nothing set");
        // Making it raw fails: nothing to restore, no guard.
        let term = Fake {
            fail_set: true,
            ..Default::default()
        };
        assert!(RawGuard::enter(term.clone()).is_err());
        assert_eq!(term.sets.borrow().len(), 1);
    }

    #[test]
    fn a_pipe_is_no_terminal() -> io::Result<()> {
        let (r, _w) = std::io::pipe()?;
        assert!(!std::io::IsTerminal::is_terminal(&r.as_fd()));
        assert!(RawGuard::enter(Fd(r.as_fd())).is_err());
        assert_eq!(size(&r), None);
        Ok(())
    }
}
