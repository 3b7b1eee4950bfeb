//! The xenbus handshake of a split device, seen from the backend
//! (public/io/xenbus.h states; blkif.h and netif.h name the keys), kept
//! apart from the store that carries it.
//!
//! # Wiring a backend to a store
//!
//! A backend reaches the store only through [`XenbusKeys`], which the
//! integration implements over Keel's xenstore for one device:
//! - `read_frontend(key)` reads `<frontend>/<key>`, where `<frontend>` is the
//!   guest's device directory (`/local/domain/<guest>/device/vbd/<id>` or
//!   `.../device/vif/<n>`); `None` when the key is absent.
//! - `write_backend(key, value)` writes `<backend>/<key>`, where `<backend>`
//!   is `/local/domain/0/backend/vbd/<guest>/<id>` (or `vif`).
//!
//! The toolstack part (creating both directories, writing the frontend's
//! `backend`, `backend-id`, `state`=1, `virtual-device`, `device-type`,
//! `handle`, `mac` and the backend's `frontend`, `frontend-id`) stays with
//! the integration. Then:
//! 1. call the backend's `publish(keys)` once: it writes its `feature-*`
//!    keys and `state` = InitWait (2);
//! 2. watch `<frontend>/state` and call `frontend_changed(keys)` each time
//!    the watch fires (spurious calls are harmless); the backend reads the
//!    frontend's ring references, event channel and protocol when the
//!    frontend is Initialised (3) or Connected (4), and writes its own
//!    `state` (Connected, Closing or Closed) as the handshake goes;
//! 3. after a call, ask the backend for its `event_channel()` to route the
//!    frontend's port to it.
//!
//! Values are decimal strings as xenstore carries them.

use alloc::string::String;

/// Device states (public/io/xenbus.h `enum xenbus_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XenbusState {
    Unknown = 0,
    Initialising = 1,
    InitWait = 2,
    Initialised = 3,
    Connected = 4,
    Closing = 5,
    Closed = 6,
    Reconfiguring = 7,
    Reconfigured = 8,
}

impl XenbusState {
    /// The state a `state` key's value names (decimal, as xenstore carries
    /// it; a trailing NUL or whitespace is ignored), `None` if it names none.
    pub fn from_value(value: &[u8]) -> Option<XenbusState> {
        use XenbusState::*;
        let s = core::str::from_utf8(value).ok()?;
        Some(
            match s
                .trim_matches(|c: char| c == '\0' || c.is_whitespace())
                .parse::<u32>()
                .ok()?
            {
                0 => Unknown,
                1 => Initialising,
                2 => InitWait,
                3 => Initialised,
                4 => Connected,
                5 => Closing,
                6 => Closed,
                7 => Reconfiguring,
                8 => Reconfigured,
                _ => return None,
            },
        )
    }

    /// The state of a frontend's `state` key; absent or malformed is
    /// Unknown (xenbus.h: the state of a device that is not there).
    pub fn parse(value: Option<&str>) -> XenbusState {
        value
            .and_then(|v| XenbusState::from_value(v.as_bytes()))
            .unwrap_or(XenbusState::Unknown)
    }

    /// The key's value: the state's number.
    pub fn value(self) -> &'static str {
        ["0", "1", "2", "3", "4", "5", "6", "7", "8"][self as usize]
    }
}

/// One device's view of the store (see the module documentation for the
/// paths): the integration's adapter over Keel's xenstore.
pub trait XenbusKeys {
    /// The value of `<frontend>/<key>`, or `None` when it is absent.
    fn read_frontend(&self, key: &str) -> Option<String>;
    /// Sets `<backend>/<key>` to `value` (creating it).
    fn write_backend(&mut self, key: &str, value: &str);
}

/// What a backend does when the frontend's state changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do.
    Stay,
    /// Read the frontend's keys, connect the rings, go Connected (or Closed
    /// when the keys are wrong).
    Connect,
    /// Drop the rings and go to this state (Closing or Closed).
    Disconnect(XenbusState),
    /// The frontend starts over after a close: publish InitWait again.
    Restart,
}

/// The backend's move for its state `ours` and the frontend's `front`
/// (xenbus.h's handshake; Linux's and Xen's backends act the same way):
/// connect when the frontend has published its rings (Initialised, or
/// Connected for netfront, which skips Initialised); follow it to Closing
/// and Closed; a vanished frontend (Unknown) closes the device.
pub fn step(ours: XenbusState, front: XenbusState) -> Step {
    use XenbusState::*;
    match front {
        Initialised | Connected if ours == InitWait => Step::Connect,
        Initialising | InitWait if ours == Closed => Step::Restart,
        Closing if ours != Closing && ours != Closed => Step::Disconnect(Closing),
        Closed | Unknown if ours != Closed => Step::Disconnect(Closed),
        _ => Step::Stay,
    }
}

/// A frontend key as a number, or `None` (absent or not a decimal `u32`).
pub fn read_u32(keys: &dyn XenbusKeys, key: &str) -> Option<u32> {
    keys.read_frontend(key)?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::XenbusState::*;
    use super::*;

    #[test]
    fn state_values_are_xenbus_h_numbers() {
        assert_eq!(XenbusState::parse(Some("4")), Connected);
        assert_eq!(XenbusState::parse(Some("6\n")), Closed);
        assert_eq!(XenbusState::parse(Some("9")), Unknown);
        assert_eq!(XenbusState::parse(Some("x")), Unknown);
        assert_eq!(XenbusState::parse(None), Unknown);
        assert_eq!(InitWait.value(), "2");
        assert_eq!(Reconfigured.value(), "8");
    }

    #[test]
    fn the_backend_connects_once_the_frontend_published_its_rings() {
        assert_eq!(step(InitWait, Initialising), Step::Stay);
        assert_eq!(step(InitWait, Initialised), Step::Connect, "blkfront");
        assert_eq!(step(InitWait, Connected), Step::Connect, "netfront");
        assert_eq!(step(Connected, Connected), Step::Stay);
        assert_eq!(step(Connected, Initialised), Step::Stay);
    }

    #[test]
    fn the_backend_follows_the_frontend_to_closing_and_closed_and_back() {
        assert_eq!(step(Connected, Closing), Step::Disconnect(Closing));
        assert_eq!(step(Closing, Closing), Step::Stay);
        assert_eq!(step(Closing, Closed), Step::Disconnect(Closed));
        assert_eq!(step(Connected, Unknown), Step::Disconnect(Closed));
        assert_eq!(step(Closed, Closed), Step::Stay);
        assert_eq!(step(Closed, Initialising), Step::Restart);
        // A frontend that connects while we are closed waits for InitWait.
        assert_eq!(step(Closed, Initialised), Step::Stay);
    }
}
