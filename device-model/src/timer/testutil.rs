//! Test doubles shared by the timer and input tests.

use crate::irq::{IrqChip, IrqChipHandle, IrqLine};
use alloc::sync::Arc;
use spin::Mutex;
use std::vec::Vec;

/// An interrupt controller that records every level change.
#[derive(Default)]
pub struct Recorder {
    pub events: Vec<(u32, bool)>,
    levels: [bool; 32],
}

impl IrqChip for Recorder {
    fn set_irq(&mut self, gsi: u32, level: bool) {
        self.events.push((gsi, level));
        if let Some(l) = self.levels.get_mut(gsi as usize) {
            *l = level;
        }
    }
}

impl Recorder {
    /// Rising edges seen on `gsi`.
    pub fn rising(&self, gsi: u32) -> u64 {
        let mut level = false;
        let mut n = 0;
        for &(g, l) in &self.events {
            if g == gsi {
                if l && !level {
                    n += 1;
                }
                level = l;
            }
        }
        n
    }

    /// The level `gsi` was last driven to.
    pub fn level(&self, gsi: u32) -> bool {
        self.levels.get(gsi as usize).copied().unwrap_or(false)
    }
}

/// A recorder and a line to `gsi` on it.
pub fn line(gsi: u32) -> (Arc<Mutex<Recorder>>, IrqLine) {
    let rec = Arc::new(Mutex::new(Recorder::default()));
    let chip: IrqChipHandle = rec.clone();
    (rec.clone(), IrqLine::new(chip, gsi))
}

/// Lines to each of `gsis` on one recorder.
pub fn lines(gsis: &[u32]) -> (Arc<Mutex<Recorder>>, Vec<IrqLine>) {
    let rec = Arc::new(Mutex::new(Recorder::default()));
    let chip: IrqChipHandle = rec.clone();
    let lines = gsis
        .iter()
        .map(|&g| IrqLine::new(chip.clone(), g))
        .collect();
    (rec, lines)
}
