//! The VM loop's side of Keel's console (`keel::console` holds the logic):
//! reads what is typed from the host UART, a bounded number of bytes per
//! pass, feeds the guest's COM1 receive FIFO from the console's fixed
//! buffer as it has room, and carries out the prompt's commands.

use alloc::boxed::Box;

use device_model::CharSink;
use keel::console::{Console, VmId};
use keel::display::FramePacer;
use spin::Mutex;
use vmm_core::StopReason;

use super::machine::Machine;
use super::stats::VmExitStats;
use crate::host::display;
use crate::serial;

/// The console of every VM Keel runs.
static CONSOLE: Mutex<Console> = Mutex::new(Console::new());

/// How often the host UART is read while a VM runs (one LSR read per pass,
/// not per exit): a typed key reaches the guest within 10 ms.
const POLL_HZ: u64 = 100;
/// Bytes read from the host UART per pass at most: a flood of input costs
/// the VM loop a bounded time per pass (the host UART's own FIFO and, under
/// QEMU, its character device hold the rest).
const BYTES_PER_POLL: usize = 64;

/// How long the last frame of the focused VM stays on the machine's
/// display after the VM ends, so that `cargo xtask run --screenshot` can
/// take it (xtask pauses the machine when it reads the line Keel prints).
const LAST_FRAME_HOLD_NS: u64 = 1_000_000_000;

/// One VM's place on the console.
pub struct VmConsole {
    id: VmId,
    next_poll: u64,
    /// The machine has a display (`host::display`): while this VM has the
    /// console, its screen is drawn there at `display::REFRESH_HZ`.
    display: bool,
    frames: FramePacer,
    /// Whether typed input can arrive (a console port exists): then a halted
    /// vCPU wakes at each poll to look for it.
    interactive: bool,
}

impl VmConsole {
    /// Registers the VM named `name`; the first VM gets the console.
    pub fn new(name: &str) -> Self {
        VmConsole {
            id: CONSOLE.lock().add_vm(name),
            next_poll: 0,
            display: display::present(),
            frames: FramePacer::default(),
            interactive: serial::has_console_port(),
        }
    }

    /// The sink for the VM's COM1 output to the terminal, byte for byte,
    /// while the VM has the console (nothing without a console port).
    pub fn raw_output(&self) -> Box<dyn CharSink> {
        Box::new(RawOutput {
            id: self.id,
            port: self.interactive,
        })
    }

    /// The latest time a halted vCPU must look at the console again.
    pub fn wake_deadline_ns(&self) -> Option<u64> {
        let hz = if self.interactive {
            POLL_HZ
        } else if self.display {
            display::REFRESH_HZ
        } else {
            return None;
        };
        Some(crate::clock::now_ns().saturating_add(1_000_000_000 / hz))
    }

    /// Now and then (a `display::REFRESH_HZ` period after the last
    /// refresh ended, [`FramePacer`]), while this VM has the console,
    /// draws what changed on its screen on the machine's display.
    fn refresh_display(&mut self, machine: &mut Machine, now: u64) {
        if !self.display || !self.frames.due(now) {
            return;
        }
        let period = crate::clock::tsc_hz() / display::REFRESH_HZ;
        if !CONSOLE.lock().focused(self.id) {
            self.frames.done(now, period);
            return;
        }
        machine.take_display_writes();
        if let Some(vga) = machine.pc.vga() {
            display::refresh(self.id.0, &mut vga.lock(), false);
        }
        self.frames.done(crate::clock::rdtsc(), period);
    }

    /// The VM ended: if its screen is the one shown, draws it whole, says
    /// so (`keel: display: ...`, the line xtask's `--screenshot` waits
    /// for) and leaves it there for [`LAST_FRAME_HOLD_NS`].
    pub fn last_frame(&self, machine: &Machine, name: &str) {
        if !self.display || !CONSOLE.lock().focused(self.id) {
            return;
        }
        let Some(vga) = machine.pc.vga() else {
            return;
        };
        display::refresh(self.id.0, &mut vga.lock(), true);
        log::info!("display: VM '{name}' ended; its last frame is on the screen");
        let until = crate::clock::now_ns().saturating_add(LAST_FRAME_HOLD_NS);
        while crate::clock::now_ns() < until {
            core::hint::spin_loop();
        }
    }

    /// Feeds the guest what was typed; now and then (`POLL_HZ`) reads the
    /// host UART and carries out the prompt's commands. Returns why the VM must end, if a
    /// command ended it.
    pub fn poll(
        &mut self,
        machine: &mut Machine,
        stats: &VmExitStats,
        name: &str,
    ) -> Option<StopReason> {
        let now = crate::clock::rdtsc();
        self.refresh_display(machine, now);
        let mut console = CONSOLE.lock();
        // Bytes already typed go in as the guest's FIFO has room, on every
        // pass: a paste reaches the guest at the speed it reads.
        console.deliver(self.id, |bytes| machine.pc.com1_type(bytes));
        if now < self.next_poll {
            return None;
        }
        self.next_poll = now.wrapping_add(crate::clock::tsc_hz() / POLL_HZ);
        let mut stop = None;
        for _ in 0..BYTES_PER_POLL {
            if console.holds_back(crate::clock::now_ns()) {
                break;
            }
            let Some(byte) = serial::try_read_byte() else {
                break;
            };
            if let Some(action) = console.typed(byte, &mut |text: &str| serial::console_print(text))
            {
                // Whichever VM's loop read the command posts it; each VM's
                // loop carries out its own (VMs run on their own CPUs).
                console.post(action);
            }
        }
        let requests = console.take_requests(self.id);
        if requests.stats {
            stats.print(name, machine.pc.bus(), machine.ran_ahead(), "so far");
            serial::console_print("exit statistics: in the log (keel: exits: ...)\r\n");
        }
        if requests.screen {
            machine.dump_screen(name);
            serial::console_print("screen: in the log (keel: [name:screen] ...)\r\n");
        }
        if requests.quit {
            log::info!("VM '{name}': ending it as Keel's console asked (quit)");
            stop = Some(StopReason::EndedAtConsole);
        } else if requests.end {
            stop = Some(StopReason::EndedAtConsole);
        }
        console.deliver(self.id, |bytes| machine.pc.com1_type(bytes));
        if let Some(reason) = &stop {
            serial::console_print("\r\n");
            log::info!("VM '{name}': {reason}");
        }
        stop
    }

    /// The VM ended: its console closes.
    pub fn ended(&self) {
        CONSOLE.lock().vm_ended(self.id);
    }
}

/// COM1's second listener: the bytes go to the console port as they are
/// while the VM has the console and Keel's prompt is closed.
struct RawOutput {
    id: VmId,
    port: bool,
}

impl CharSink for RawOutput {
    fn write_byte(&mut self, byte: u8) {
        if self.port && CONSOLE.lock().shows(self.id) {
            serial::console_write_raw(&[byte]);
        }
    }
}
