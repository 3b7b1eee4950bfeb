//! A fixed-capacity byte FIFO for device buffers that hardware sizes
//! (a PS/2 device's output buffer): the storage is part of the device, so
//! a guest that never drains it cannot grow anything, and a byte arriving
//! at a full FIFO is lost as on the hardware.

/// At most `N` bytes, oldest first.
#[derive(Debug, Clone)]
pub struct ByteFifo<const N: usize> {
    buf: [u8; N],
    head: usize,
    len: usize,
}

impl<const N: usize> Default for ByteFifo<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> ByteFifo<N> {
    pub const CAPACITY: usize = N;

    pub const fn new() -> Self {
        ByteFifo {
            buf: [0; N],
            head: 0,
            len: 0,
        }
    }

    /// Appends `b`; returns false (and drops it) when the FIFO is full.
    pub fn push(&mut self, b: u8) -> bool {
        if self.len == N {
            return false;
        }
        self.buf[(self.head + self.len) % N] = b;
        self.len += 1;
        true
    }

    pub fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let b = self.buf[self.head];
        self.head = (self.head + 1) % N;
        self.len -= 1;
        Some(b)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_drops_past_capacity() {
        let mut f = ByteFifo::<3>::new();
        for b in 1..=5 {
            f.push(b);
        }
        assert_eq!(f.len(), 3);
        assert_eq!(f.pop(), Some(1));
        assert!(f.push(6));
        assert_eq!(
            [f.pop(), f.pop(), f.pop(), f.pop()],
            [Some(2), Some(3), Some(6), None]
        );
        assert!(f.is_empty());
    }
}
