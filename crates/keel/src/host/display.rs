//! The machine's own display adapter: QEMU's standard VGA (1234:1111),
//! found by the one PCI scan (`host::virtio::probe`), put into a
//! 1024x768x32 mode through its Bochs VBE DISPI registers (index port
//! 0x1CE, data port 0x1CF; Bochs `vbe.h`'s register list, as QEMU
//! documents it in `docs/specs/standard-vga.rst`), and drawn through its
//! linear framebuffer at BAR0.
//!
//! What is drawn is the focused VM's screen ([`refresh`], from the VM
//! loop at [`REFRESH_HZ`]): its card's render (`Vga::render_row`),
//! placed and scaled by [`keel::display::Fit`]. A refresh redraws the
//! display rows whose source rows changed, as the card's dirty record
//! says (`Vga::take_changes`: the legacy window's writes, the linear
//! framebuffer's pages from the nested page tables' dirty log, and the
//! registers and palette, which change everything), all of them when
//! another VM is shown or the picture moves, and now and then as a safety
//! net ([`keel::display::Refresh`]). Each refresh draws at most
//! [`ROWS_PER_TICK`] rows, the rest waiting for the next, and writes only
//! the pixels that differ from what the framebuffer already shows (it is
//! read back, so no shadow copy is kept): a refresh's work is bounded
//! whatever the guest does, and an unchanged screen costs nothing.

use alloc::vec;
use alloc::vec::Vec;

use device_model::display::vga::Vga;
use keel::display::{Fit, Refresh};
use spin::Mutex;
use virtio_drivers::transport::pci::bus::{BarInfo, Command, DeviceFunction, PciRoot};
use x86_64::instructions::port::Port;

use super::pci::PortCam;

/// The display mode Keel sets.
pub const WIDTH: u32 = 1024;
pub const HEIGHT: u32 = 768;
/// Refreshes per second while a VM runs.
pub const REFRESH_HZ: u64 = 20;
/// Display rows per refresh at most: the whole display in 3 refreshes (150 ms).
pub const ROWS_PER_TICK: u32 = 256;

/// The DISPI index and data ports.
const DISPI_INDEX: u16 = 0x1CE;
const DISPI_DATA: u16 = 0x1CF;
/// DISPI registers and values.
const ID: u16 = 0;
const XRES: u16 = 1;
const YRES: u16 = 2;
const BPP: u16 = 3;
const ENABLE: u16 = 4;
const ID0: u16 = 0xB0C0;
const ID5: u16 = 0xB0C5;
const ENABLED: u16 = 0x01;
const LFB_ENABLED: u16 = 0x40;

/// Memory BARs Keel's page tables identity-map (`memory::paging`).
const MAPPED_MMIO_END: u64 = 1 << 32;

/// The display, once found and set up.
static DISPLAY: Mutex<Option<HostDisplay>> = Mutex::new(None);

struct HostDisplay {
    /// The framebuffer's address (identity-mapped), `WIDTH * HEIGHT` pixels.
    fb: *mut u32,
    /// The rows waiting to be drawn.
    rows: Refresh,
    /// One display row of the VM's picture, drawn before it is compared.
    line: Vec<u32>,
}

// SAFETY: the framebuffer pointer is the adapter's BAR, which only this
// module touches, always under the DISPLAY lock.
unsafe impl Send for HostDisplay {}

fn dispi_write(index: u16, value: u16) {
    // SAFETY: the DISPI ports of the adapter found on the PCI bus; they
    // change only its display mode.
    unsafe {
        Port::<u16>::new(DISPI_INDEX).write(index);
        Port::<u16>::new(DISPI_DATA).write(value);
    }
}

fn dispi_read(index: u16) -> u16 {
    // SAFETY: as in dispi_write; reading a DISPI register has no effect.
    unsafe {
        Port::<u16>::new(DISPI_INDEX).write(index);
        Port::<u16>::new(DISPI_DATA).read()
    }
}

/// Starts the display adapter at `function`: I/O and memory decoding on,
/// BAR0 checked (mapped, large enough), the mode set and the screen
/// cleared. Problems are logged; Keel then runs without a display.
pub fn start(root: &mut PciRoot<PortCam>, function: DeviceFunction) {
    let (_, command) = root.get_status_command(function);
    root.set_command(
        function,
        command | Command::IO_SPACE | Command::MEMORY_SPACE,
    );
    let bar0 = match root.bars(function) {
        Ok(bars) => bars[0].clone(),
        Err(e) => {
            log::warn!("display {function}: reading its BARs failed: {e}; no display");
            return;
        }
    };
    let need = u64::from(WIDTH) * u64::from(HEIGHT) * 4;
    let Some(BarInfo::Memory { address, size, .. }) = bar0 else {
        log::warn!("display {function}: BAR0 is not a memory BAR; no display");
        return;
    };
    if address == 0 || size < need || address.saturating_add(need) > MAPPED_MMIO_END {
        log::warn!(
            "display {function}: framebuffer at {address:#x} (size {size:#x}): Keel needs \
             {need:#x} bytes placed below 4 GiB; no display"
        );
        return;
    }
    let id = dispi_read(ID);
    if !(ID0..=ID5).contains(&id) {
        log::warn!("display {function}: no Bochs VBE interface (ID {id:#x}); no display");
        return;
    }
    dispi_write(ENABLE, 0);
    dispi_write(XRES, WIDTH as u16);
    dispi_write(YRES, HEIGHT as u16);
    dispi_write(BPP, 32);
    dispi_write(ENABLE, ENABLED | LFB_ENABLED);
    let fb = address as *mut u32;
    for i in 0..(WIDTH * HEIGHT) as usize {
        // SAFETY: the framebuffer BAR, identity-mapped and at least `need`
        // bytes long (checked above); nothing else uses it.
        unsafe { fb.add(i).write_volatile(0) };
    }
    log::info!(
        "display {function}: QEMU standard VGA, {WIDTH}x{HEIGHT}x32, framebuffer at {address:#x}; \
         it shows the focused VM's screen"
    );
    *DISPLAY.lock() = Some(HostDisplay {
        fb,
        rows: Refresh::new(HEIGHT),
        line: vec![0; WIDTH as usize],
    });
}

/// Whether the machine has a display Keel drives.
pub fn present() -> bool {
    DISPLAY.lock().is_some()
}

/// Draws what changed on `vga`'s screen, the screen of VM `owner`: at
/// most [`ROWS_PER_TICK`] display rows, or, with `all`, the whole display
/// now. Takes the card's record of what changed (`Vga::take_changes`).
pub fn refresh(owner: usize, vga: &mut Vga, all: bool) {
    let mut guard = DISPLAY.lock();
    let Some(d) = guard.as_mut() else {
        return;
    };
    let screen = vga.screen();
    let fit = Fit::new(vga.screen_size(screen), (WIDTH, HEIGHT));
    d.rows.begin(owner, fit);
    if vga.take_changes(|sy| d.rows.source_row_changed(sy)) || all {
        d.rows.mark_all();
    }
    let most = if all { HEIGHT } else { ROWS_PER_TICK };
    for _ in 0..most {
        let Some(y) = d.rows.next_row() else {
            break;
        };
        d.line.fill(0);
        if let Some(sy) = fit.src_y(y) {
            let picture = &mut d.line[fit.columns().start as usize..fit.columns().end as usize];
            if vga
                .render_row(screen, sy, picture, |i| fit.src_x(i))
                .is_none()
            {
                picture.fill(0);
            }
        }
        let row = (y * WIDTH) as usize;
        for (x, &px) in d.line.iter().enumerate() {
            // SAFETY: `row + x` < WIDTH * HEIGHT (`y` < HEIGHT, the rows
            // `Refresh::new(HEIGHT)` has), inside the framebuffer BAR
            // checked by `start`.
            unsafe {
                let p = d.fb.add(row + x);
                if p.read_volatile() != px {
                    p.write_volatile(px);
                }
            }
        }
    }
}
