//! A backend that hands every sent frame back to the same NIC, as a
//! loopback plug does: for host tests, the fuzz harness and the
//! allocation check, which drive a NIC's transmit and receive paths with
//! no network. Its queue is allocated when it is created.

use alloc::boxed::Box;
use alloc::vec;

use super::{NetBackend, NetCounters, MAX_FRAME_LEN};

/// Frames the loopback holds before it drops.
pub const LOOPBACK_DEPTH: usize = 8;

pub struct Loopback {
    frames: Box<[[u8; MAX_FRAME_LEN]]>,
    lens: [usize; LOOPBACK_DEPTH],
    head: usize,
    queued: usize,
    counters: NetCounters,
}

impl Default for Loopback {
    fn default() -> Self {
        Self::new()
    }
}

impl Loopback {
    pub fn new() -> Loopback {
        Loopback {
            frames: vec![[0u8; MAX_FRAME_LEN]; LOOPBACK_DEPTH].into_boxed_slice(),
            lens: [0; LOOPBACK_DEPTH],
            head: 0,
            queued: 0,
            counters: NetCounters::default(),
        }
    }
}

impl NetBackend for Loopback {
    fn send(&mut self, frame: &[u8]) {
        if frame.len() > MAX_FRAME_LEN || frame.len() < 14 || self.queued == LOOPBACK_DEPTH {
            self.counters.dropped += 1;
            return;
        }
        let slot = (self.head + self.queued) % LOOPBACK_DEPTH;
        self.frames[slot][..frame.len()].copy_from_slice(frame);
        self.lens[slot] = frame.len();
        self.queued += 1;
        self.counters.frames_sent += 1;
    }

    fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        if self.queued == 0 {
            return None;
        }
        let (slot, len) = (self.head, self.lens[self.head]);
        self.head = (self.head + 1) % LOOPBACK_DEPTH;
        self.queued -= 1;
        let Some(dst) = buf.get_mut(..len) else {
            self.counters.dropped += 1;
            return None;
        };
        dst.copy_from_slice(&self.frames[slot][..len]);
        self.counters.frames_received += 1;
        Some(len)
    }

    fn frame_waiting(&mut self) -> bool {
        self.queued > 0
    }

    fn counters(&self) -> NetCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_back_in_order_and_a_full_queue_drops() {
        let mut l = Loopback::new();
        for i in 0..LOOPBACK_DEPTH as u8 + 1 {
            l.send(&[i; 60]);
        }
        assert_eq!(l.counters().dropped, 1);
        let mut buf = [0u8; MAX_FRAME_LEN];
        assert_eq!(l.receive(&mut buf), Some(60));
        assert_eq!(buf[0], 0);
        assert_eq!(
            l.receive(&mut buf[..10]),
            None,
            "longer than the buffer: dropped"
        );
        assert_eq!(l.counters().dropped, 2);
        assert_eq!(l.receive(&mut buf), Some(60));
        assert_eq!(buf[0], 2);
        l.send(&[0; 10]);
        assert_eq!(l.counters().dropped, 3, "shorter than a header");
    }
}
