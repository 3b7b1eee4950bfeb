//! The boot: fw_cfg files in, a kernel started (`firmware/README.md`).

use keel_shim::acpi_blobs::{self, BLOB_HEADER_LEN, HEADER_LEN, RSDP_SIGNATURE};
use keel_shim::e820::{self, Map};
use keel_shim::fw_cfg::{files, FileEntry};
use keel_shim::layout::{self, BIOS_AREA, LOAD_FLOOR};
use keel_shim::linux::{self, SetupHeader};
use keel_shim::multiboot::{self, MAX_MODULES};
use keel_shim::report::{status, Error, Sink};
use keel_shim::{bios, gzip, pci};
use miniz_oxide::inflate::core::DecompressorOxide;

use crate::entry::{enter_linux, enter_relocation_stub, relocation_stub};
use crate::fw_cfg::{Files, FwCfg};
use crate::hw::{
    self, copy_to_phys, inb, inw, outb, outw, pci_read32, pci_write32, pci_write8, phys, Com1,
    PciMech1,
};

const I440FX: u32 = 0x1237_8086;
const PIIX4_PM: u32 = 0x7113_8086;

#[no_mangle]
extern "C" fn shim_main() -> ! {
    hw::serial_init();
    let mut out = Com1;
    out.str("keel-shim: starting\n");
    let mut ctx = Context::new();
    let e = match run(&mut out, &mut ctx) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    out.str("keel-shim: error: ");
    if let Some(name) = ctx.current() {
        out.bytes(name);
        out.str(": ");
    }
    e.describe(&mut out);
    out.str("\n");
    hw::exit(e.status())
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let mut out = Com1;
    out.str("keel-shim: error: internal: ");
    out.str(info.message().as_str().unwrap_or("panic"));
    if let Some(l) = info.location() {
        out.str(" at ");
        out.str(l.file());
        out.str(":");
        out.dec(u64::from(l.line()));
    }
    out.str("\n");
    hw::exit(status::INTERNAL)
}

enum Never {}

/// The kernel's name (from `opt/keel/kernel-name`) and the name of the file
/// being loaded, which an error message starts with.
struct Context {
    name: [u8; 256],
    name_len: usize,
    current: [u8; 256],
    current_len: usize,
}

impl Context {
    fn new() -> Self {
        let mut c = Context {
            name: [0; 256],
            name_len: 0,
            current: [0; 256],
            current_len: 0,
        };
        c.name[..6].copy_from_slice(b"kernel");
        c.name_len = 6;
        c
    }

    fn kernel_name(&self) -> &[u8] {
        &self.name[..self.name_len]
    }

    fn name_the_kernel(&mut self) {
        let (n, l) = (self.name, self.name_len);
        self.set(&n[..l]);
    }

    /// Names the file being loaded (cut at its first space: a module's
    /// string is its name and its arguments).
    fn set(&mut self, s: &[u8]) {
        let s = s.split(|&c| c == b' ').next().unwrap_or(s);
        let n = s.len().min(self.current.len());
        self.current[..n].copy_from_slice(&s[..n]);
        self.current_len = n;
    }

    fn current(&self) -> Option<&[u8]> {
        (self.current_len > 0).then_some(&self.current[..self.current_len])
    }
}

fn run(out: &mut Com1, ctx: &mut Context) -> Result<Never, Error> {
    let fw = FwCfg::probe()?;
    let f = fw.files();
    let kernel = f.kernel.ok_or(Error::MissingFile(files::KERNEL))?;
    if let Some(n) = &f.kernel_name {
        let len = read_small(&fw, n, &mut ctx.name)?.len();
        ctx.name_len = len;
    }
    ctx.name_the_kernel();
    let e820_file = f.e820.ok_or(Error::MissingFile(files::E820))?;

    let mut raw = [0u8; e820::MAX_ENTRIES * e820::ENTRY_LEN];
    let n = e820_file.size as usize;
    if n > raw.len() {
        return Err(Error::TooManyE820);
    }
    fw.open(&e820_file);
    fw.read(&mut raw[..n]);
    let fw_map = Map::from_fw_cfg(&raw[..n])?;

    shadow_bios_area();
    let acpi = match f.acpi {
        Some(a) => load_acpi(&fw, &a, &fw_map)?,
        None => {
            out.str("keel-shim: no opt/keel/acpi: the kernel gets no ACPI tables\n");
            Acpi::default()
        }
    };
    if acpi.pm_base != 0 {
        enable_pm(acpi.pm_base);
    }
    setup_pci(out, &fw_map)?;
    let map = e820::guest_map(&fw_map, &acpi.ranges[..acpi.count])?;
    bios_low_memory();

    let head_len = (kernel.size as usize).min(layout::KERNEL_HEAD_LEN);
    // SAFETY: the head buffer is the shim's (layout.rs).
    let head = unsafe { phys(layout::KERNEL_HEAD, head_len) };
    fw.open(&kernel);
    fw.read(head);
    if linux::is_linux(head) {
        if let Some(n) = f.modules.iter().position(Option::is_some) {
            return Err(Error::TooManyModules {
                count: n as u32 + 1,
            });
        }
        boot_linux(out, &fw, &f, &kernel, head, &map, acpi.rsdp)
    } else if gzip::is_gzip(head) {
        boot_multiboot(out, &fw, &f, &kernel, &map, ctx)
    } else if let Some(h) = multiboot::find_header(head) {
        h?;
        boot_multiboot(out, &fw, &f, &kernel, &map, ctx)
    } else {
        Err(Error::UnknownKernel)
    }
}

/// The IVT, the BIOS data area, the EBDA and the IVT's handlers, as a PC
/// BIOS leaves them (`keel_shim::bios`): serial ports found as SeaBIOS
/// finds them (the IER keeps what is written to it), the tick count from
/// the RTC.
fn bios_low_memory() {
    let mut com = [0u16; 4];
    let mut n = 0;
    for port in [0x3F8u16, 0x2F8, 0x3E8, 0x2E8] {
        let ier = port + 1;
        let old = inb(ier);
        outb(ier, 0x02);
        let seen = inb(ier);
        outb(ier, old);
        if seen == 0x02 {
            com[n] = port;
            n += 1;
        }
    }
    let rtc = |reg: u8| {
        outb(0x70, reg);
        inb(0x71)
    };
    let binary = rtc(0x0B) & 0x04 != 0;
    let conv = |v: u8| if binary { v } else { bios::from_bcd(v) };
    let ticks = bios::ticks_since_midnight(conv(rtc(4) & 0x7F), conv(rtc(2)), conv(rtc(0)));
    let m = bios::Machine {
        com_ports: &com[..n],
        lpt_ports: &[],
        ticks,
    };
    // SAFETY: 0-0x4FF, the EBDA's first KiB and the stub page are not the
    // shim's working memory (layout.rs); the stubs land in the BIOS area,
    // shadow RAM after shadow_bios_area (ROM, and the writes lost, on a
    // machine that is not an i440FX).
    let mut low = [0u8; bios::LOW_LEN];
    bios::build_low_memory(&mut low, &m);
    let mut ebda = [0u8; 1024];
    bios::build_ebda(&mut ebda);
    unsafe {
        copy_to_phys(0, &low);
        copy_to_phys(bios::EBDA, &ebda);
        copy_to_phys(bios::STUBS, &bios::STUB_CODE);
    }
}

#[derive(Default)]
struct Acpi {
    pm_base: u16,
    rsdp: Option<u64>,
    ranges: [(u64, u64); acpi_blobs::MAX_BLOBS as usize],
    count: usize,
}

/// Copies every blob of `opt/keel/acpi` to its address.
fn load_acpi(fw: &FwCfg, file: &FileEntry, fw_map: &Map) -> Result<Acpi, Error> {
    let mut a = Acpi::default();
    let size = u64::from(file.size);
    if size < HEADER_LEN as u64 {
        return Err(Error::BadAcpi("shorter than its header"));
    }
    fw.open(file);
    let mut hdr = [0u8; HEADER_LEN];
    fw.read(&mut hdr);
    let h = acpi_blobs::parse_header(&hdr)?;
    a.pm_base = h.pm_base;
    let mut at = HEADER_LEN as u64;
    for _ in 0..h.count {
        let mut bh = [0u8; BLOB_HEADER_LEN];
        if at + BLOB_HEADER_LEN as u64 > size {
            return Err(Error::BadAcpi("fewer blobs than its header says"));
        }
        fw.read(&mut bh);
        at += BLOB_HEADER_LEN as u64;
        let b = acpi_blobs::parse_blob(&bh, size - at)?;
        let in_bios = BIOS_AREA.start <= b.address && b.end() <= BIOS_AREA.end;
        if !in_bios && (b.address < LOAD_FLOOR || !fw_map.is_ram(b.address, b.end())) {
            return Err(Error::AcpiOutsideRam {
                address: b.address,
                len: b.len,
            });
        }
        // SAFETY: checked above: RAM above the shim's own, or the BIOS area.
        unsafe { fw.read_to(b.address, b.len) };
        let pad = b.stored_len() - b.len;
        let mut skip = [0u8; 8];
        fw.read(&mut skip[..pad as usize]);
        at += b.stored_len();
        // SAFETY: just written.
        let bytes = unsafe { phys(b.address, b.len.min(8) as usize) };
        if bytes == RSDP_SIGNATURE {
            a.rsdp = Some(b.address);
        }
        a.ranges[a.count] = (b.address, b.end());
        a.count += 1;
    }
    Ok(a)
}

/// On an i440FX, makes 0xC0000-0xFFFFF RAM (PAM registers, datasheet
/// 3.2.18) with the ROM's contents in 0xE0000-0xFFFFF, so that the RSDP can
/// go there, as PC firmware shadows itself: RAM both ways first, then a copy
/// of the BIOS area from its alias at the top of 4 GiB (on a PC the last
/// 128 KiB of the ROM decode at both places). Both sides of the copy are
/// memory to the CPU, so under Keel it costs no exits; copying the area
/// onto itself with the segments write-only would take an exit per write.
fn shadow_bios_area() {
    if pci_read32(0, 0, 0) != I440FX {
        return;
    }
    const PAM0: u8 = 0x59;
    const PAM1_TO_6: core::ops::RangeInclusive<u8> = 0x5A..=0x5F;
    const FOUR_GIB: u64 = 1 << 32;
    pci_write8(0, 0, PAM0, 0x30);
    // 0xC0000-0xDFFFF (PAM1-PAM4) become RAM too, as SeaBIOS leaves them:
    // an OS scans them for option ROMs (Linux reads all 128 KiB), which
    // from the bus would cost an exit per read under Keel.
    for pam in PAM1_TO_6 {
        pci_write8(0, 0, pam, 0x33);
    }
    let len = BIOS_AREA.end - BIOS_AREA.start;
    let alias = FOUR_GIB - len;
    for i in 0..len / 8 {
        let from = (alias + i * 8) as *const u64;
        let to = (BIOS_AREA.start + i * 8) as *mut u64;
        // SAFETY: the shim runs identity-mapped over the low 4 GiB; `from`
        // is the ROM's alias below 4 GiB, `to` the BIOS area, which is the
        // shim's own RAM from here on.
        unsafe { to.write_volatile(from.read_volatile()) };
    }
}

/// BARs, decode, interrupt lines and PIRQ routes as SeaBIOS leaves them
/// (`keel_shim::pci`), then the ELCR: the PIRQ IRQs are level-triggered
/// (PCI interrupts are shared and level, 82371AB datasheet 4.1.10).
fn setup_pci(out: &mut Com1, fw_map: &Map) -> Result<(), Error> {
    const FOUR_GIB: u64 = 1 << 32;
    let ram_below_4g = fw_map
        .entries()
        .iter()
        .filter(|e| e.kind == e820::RAM && e.addr < FOUR_GIB)
        .map(|e| e.end().min(FOUR_GIB))
        .max()
        .unwrap_or(0);
    let s = pci::setup(&mut PciMech1, ram_below_4g)?;
    if s.isa_bridge {
        outb(0x4D0, pci::ELCR[0]);
        outb(0x4D1, pci::ELCR[1]);
    }
    out.str("keel-shim: PCI: ");
    out.dec(u64::from(s.functions));
    out.str(" functions, ");
    out.dec(u64::from(s.bars));
    out.str(" BARs placed\n");
    Ok(())
}

/// Puts the PIIX4's PM block at `base` (PMBA, PMREGMISC.PMIOSE) and sets
/// PM1a_CNT.SCI_EN, as the FADT (SMI_CMD = 0) promises ACPI mode.
fn enable_pm(base: u16) {
    if pci_read32(1, 3, 0) != PIIX4_PM {
        return;
    }
    pci_write32(1, 3, 0x40, u32::from(base) | 1);
    pci_write8(1, 3, 0x80, 0x01);
    let cnt = base + 4;
    outw(cnt, inw(cnt) | 1);
}

/// Reads a small file whole into `buf`; returns its length.
fn read_small<'a>(fw: &FwCfg, file: &FileEntry, buf: &'a mut [u8]) -> Result<&'a [u8], Error> {
    let n = file.size as usize;
    if n > buf.len() {
        return Err(Error::CmdlineTooLong {
            len: n as u64,
            max: buf.len() as u64,
        });
    }
    fw.open(file);
    fw.read(&mut buf[..n]);
    let mut s = &buf[..n];
    while let [rest @ .., 0] = s {
        s = rest;
    }
    Ok(s)
}

fn boot_linux(
    out: &mut Com1,
    fw: &FwCfg,
    f: &Files,
    kernel: &FileEntry,
    head: &[u8],
    map: &Map,
    rsdp: Option<u64>,
) -> Result<Never, Error> {
    let h = SetupHeader::parse(head)?;
    let size = u64::from(kernel.size);
    let setup = h.setup_len() as u64;
    if setup >= size || setup > head.len() as u64 {
        return Err(Error::BadKernel(
            "the bzImage is shorter than its setup sectors",
        ));
    }
    let pm_len = size - setup;
    let initrd_len = f.initrd.map_or(0, |i| u64::from(i.size));
    let p = linux::place(&h, pm_len, initrd_len, map, &[])?;

    // The command line: its own buffer, NUL-terminated.
    let max = h.cmdline_limit(layout::CMDLINE_MAX);
    // SAFETY: the command line buffer is the shim's (layout.rs).
    let cmd_buf = unsafe { phys(layout::CMDLINE, layout::CMDLINE_MAX) };
    cmd_buf.fill(0);
    let cmd_len = match &f.cmdline {
        Some(c) => read_small(fw, c, &mut cmd_buf[..max])
            .map_err(|_| Error::CmdlineTooLong {
                len: u64::from(c.size),
                max: max as u64,
            })?
            .len(),
        None => 0,
    };

    // The protected-mode kernel: what the head already holds, then the rest.
    let have = head.len() as u64 - setup;
    // SAFETY: place() checked [p.kernel, p.kernel + span) is RAM above 1 MiB.
    unsafe { phys(p.kernel, have as usize) }.copy_from_slice(&head[setup as usize..]);
    fw.open(kernel);
    let mut skip = [0u8; 512];
    let mut to_skip = head.len();
    while to_skip > 0 {
        let n = to_skip.min(skip.len());
        fw.read(&mut skip[..n]);
        to_skip -= n;
    }
    // SAFETY: as above.
    unsafe { fw.read_to(p.kernel + have, pm_len - have) };
    if let Some(i) = &f.initrd {
        fw.open(i);
        // SAFETY: place() put the initrd in RAM clear of the kernel.
        unsafe { fw.read_to(p.initrd, initrd_len) };
    }

    let e820 = map.entries();
    // SAFETY: the zero page is the shim's (layout.rs).
    let bp: &mut [u8; linux::BOOT_PARAMS_LEN] =
        unsafe { phys(layout::BOOT_PARAMS, linux::BOOT_PARAMS_LEN) }
            .try_into()
            .expect("a page");
    let info = linux::BootInfo {
        cmdline: layout::CMDLINE,
        initrd: p.initrd,
        initrd_len,
        rsdp,
        e820,
    };
    linux::build_boot_params(bp, head, &h, &info)?;

    out.str("keel-shim: Linux boot protocol ");
    out.dec(u64::from(h.version >> 8));
    out.str(if h.version & 0xFF < 10 { ".0" } else { "." });
    out.dec(u64::from(h.version & 0xFF));
    out.str(", kernel ");
    out.dec(size);
    out.str(" bytes at ");
    out.hex(p.kernel);
    if initrd_len > 0 {
        out.str(", initrd ");
        out.dec(initrd_len);
        out.str(" bytes at ");
        out.hex(p.initrd);
    }
    out.str(", command line ");
    out.dec(cmd_len as u64);
    out.str(" bytes, ");
    out.dec(e820.len() as u64);
    out.str(" e820 entries, RSDP ");
    out.hex(rsdp.unwrap_or(0));
    out.str(if fw.has_dma() {
        " (fw_cfg DMA)\n"
    } else {
        " (fw_cfg PIO)\n"
    });
    // SAFETY: everything the protocol asks for is in place.
    unsafe { enter_linux(p.kernel + linux::ENTRY_64_OFFSET, layout::BOOT_PARAMS) }
}

/// QEMU's standard VGA (PCI 1234:1111) on bus 0: its framebuffer, BAR0
/// as `setup_pci` placed it.
fn stdvga_framebuffer() -> Option<u64> {
    use keel_shim::pci::ConfigAccess;
    let dev = (0..32u8).find(|&d| PciMech1.read32(d, 0, 0) == 0x1111_1234)?;
    let bar0 = PciMech1.read32(dev, 0, 0x10) & !0xF;
    (bar0 != 0).then_some(u64::from(bar0))
}

/// Sets `mode` on the standard VGA, as a VBE BIOS's function 4F02h ends
/// up doing: through the Bochs VBE DISPI registers (index port 0x1CE,
/// data port 0x1CF; XRES 1, YRES 2, BPP 3, ENABLE 4 with ENABLED 0x01 and
/// LFB_ENABLED 0x40). EGA text is the mode the VGA is in after reset
/// (the DISPI interface off). `None` without the card: a multiboot
/// loader may leave the video fields out (Multiboot 0.6.96, 3.1.4).
fn set_video_mode(mode: multiboot::VideoMode) -> Option<(multiboot::VideoMode, u64)> {
    let lfb = stdvga_framebuffer()?;
    let dispi = |index: u16, v: u16| {
        outw(0x1CE, index);
        outw(0x1CF, v);
    };
    dispi(4, 0);
    if let multiboot::VideoMode::Linear { width, height, bpp } = mode {
        dispi(1, width);
        dispi(2, height);
        dispi(3, u16::from(bpp));
        dispi(4, 0x41);
    }
    Some((mode, lfb))
}

/// The decompressor's state, in .bss (about 11 KiB; the stack is small).
static mut INFLATE: core::mem::MaybeUninit<DecompressorOxide> = core::mem::MaybeUninit::uninit();

fn boot_multiboot(
    out: &mut Com1,
    fw: &FwCfg,
    f: &Files,
    kernel: &FileEntry,
    map: &Map,
    ctx: &mut Context,
) -> Result<Never, Error> {
    let size = u64::from(kernel.size);
    let stage = map
        .highest_fit(size, 0x1000, LOAD_FLOOR, 1 << 32, &[])
        .ok_or(Error::TooBig {
            what: "the multiboot kernel",
            len: size,
        })?;
    fw.open(kernel);
    // SAFETY: highest_fit found RAM above the shim's own.
    unsafe { fw.read_to(stage, size) };
    // SAFETY: just written; not written again until it is moved clear of
    // the segments and modules (place_relocation) or the stub reads it.
    let mut image: &[u8] = unsafe { phys(stage, size as usize) };
    let mut image_at = stage;
    let compressed = gzip::is_gzip(image);
    if compressed {
        let m = gzip::parse(image)?;
        let len = u64::from(m.isize);
        let at = map
            .highest_fit(len, 0x1000, LOAD_FLOOR, 1 << 32, &[(stage, stage + size)])
            .ok_or(Error::TooBig {
                what: "the decompressed multiboot kernel",
                len,
            })?;
        // SAFETY: highest_fit found RAM above the shim's own, clear of the
        // compressed copy.
        let dst = unsafe { phys(at, len as usize) };
        // SAFETY: the one user of the decompressor's state, once.
        let state = unsafe { (*core::ptr::addr_of_mut!(INFLATE)).write(DecompressorOxide::new()) };
        gzip::inflate(image, &m, dst, state)?;
        image = dst;
        image_at = at;
    }
    let h = multiboot::find_header(image).ok_or(Error::UnknownKernel)??;
    let (plan, format) = multiboot::load_plan(image, &h)?;
    multiboot::check_plan(&plan, map)?;
    // From here on the image holds the bytes the relocation stub copies to
    // the segments as the shim's last step: no segment is written before.
    let image_len = image.len() as u64;

    let mut cmd = [0u8; multiboot::area::CMDLINE_MAX];
    let cmdline: &[u8] = match &f.cmdline {
        Some(c) => read_small(fw, c, &mut cmd)?,
        None => b"",
    };
    // The module files in order: the initrd, then module1, module2, ...
    let mut files: [Option<(FileEntry, Option<FileEntry>)>; MAX_MODULES] = [None; MAX_MODULES];
    let mut count = 0;
    if let Some(i) = f.initrd {
        files[0] = Some((i, f.initrd_cmdline));
        count = 1;
    }
    for (n, slot) in files.iter_mut().enumerate().skip(1) {
        if let Some(m) = f.modules[n] {
            if count != n {
                return Err(Error::BadKernel(
                    "a module file without the one before it (opt/keel/initrd, module1, ...)",
                ));
            }
            *slot = Some((m, f.module_cmdlines[n]));
            count = n + 1;
        }
    }
    // Their strings, packed in one buffer as they will be in the info area.
    let mut strings = [0u8; multiboot::area::MODULE_STRINGS_MAX];
    let mut spans = [(0usize, 0usize); MAX_MODULES];
    let mut used = 0;
    for (n, file) in files[..count].iter().enumerate() {
        let Some((_, c)) = file else { continue };
        let len = match c {
            Some(c) => read_small(fw, c, &mut strings[used..])?.len(),
            None => {
                let d = b"initrd";
                strings[used..used + d.len()].copy_from_slice(d);
                d.len()
            }
        };
        spans[n] = (used, used + len);
        used = (used + len + 1).min(strings.len());
    }
    // Where each module goes: one after the other from the kernel's end.
    let mut ranges = [(0u64, 0u64); MAX_MODULES];
    let mut next = plan.end();
    for (n, file) in files[..count].iter().enumerate() {
        let Some((file, _)) = file else { continue };
        ctx.set(&strings[spans[n].0..spans[n].1]);
        let len = u64::from(file.size);
        let at = multiboot::place_module(next, len, map)?;
        ranges[n] = (at, at + len);
        next = at + len;
    }
    ctx.name_the_kernel();
    let place = multiboot::place_relocation(
        &plan,
        map,
        (image_at, image_at + image_len),
        &ranges[..count],
    )?;
    if place.image != image_at {
        // SAFETY: both ranges are RAM from 1 MiB (place_relocation); the
        // new one is clear of the segments and modules, and `copy` allows
        // the two to overlap.
        unsafe {
            core::ptr::copy(
                image_at as *const u8,
                place.image as *mut u8,
                image_len as usize,
            )
        };
    }
    let mut modules = [multiboot::Module {
        start: 0,
        end: 0,
        string: b"",
    }; MAX_MODULES];
    for (n, file) in files[..count].iter().enumerate() {
        let Some((file, _)) = file else { continue };
        let (at, end) = ranges[n];
        fw.open(file);
        // SAFETY: place_module found RAM from 1 MiB after the segments and
        // the modules before; place_relocation moved the image clear of it.
        unsafe { fw.read_to(at, end - at) };
        modules[n] = multiboot::Module {
            start: at as u32,
            end: end as u32,
            string: &strings[spans[n].0..spans[n].1],
        };
    }
    let input = multiboot::InfoInput {
        kernel_name: ctx.kernel_name(),
        cmdline,
        modules: &modules[..count],
        e820: map.entries(),
        loader_name: b"keel-shim",
        video: h.video.and_then(|req| set_video_mode(req.mode())),
    };
    // SAFETY: place_relocation put the info area in RAM clear of the
    // segments, the modules, the image and the shim's working memory (at
    // 0x8000, the shim's slot for it, or outside the shim's memory).
    let area: &mut [u8; multiboot::area::END] =
        unsafe { phys(place.info, layout::MULTIBOOT_INFO_LEN) }
            .try_into()
            .expect("the multiboot area");
    let base = place.info as u32;
    let info = multiboot::build_info(area, base, &input)?;
    let (stub, table) =
        multiboot::build_relocation(area, base, &plan, place.image, info, relocation_stub())?;

    out.str("keel-shim: multiboot kernel (");
    out.str(format.name());
    if compressed {
        out.str(", gzip");
    }
    out.str("), ");
    out.dec(plan.count as u64);
    out.str(" segments from ");
    out.hex(
        plan.segments()
            .iter()
            .map(|s| u64::from(s.paddr))
            .min()
            .unwrap_or(0),
    );
    out.str(" up to ");
    out.hex(plan.end());
    out.str(", entry ");
    out.hex(u64::from(plan.entry));
    out.str(", info at ");
    out.hex(u64::from(info));
    out.str(", ");
    out.dec(count as u64);
    out.str(" modules\n");
    // SAFETY: the modules are loaded, the info block, the copy table and
    // the stub written, each clear of every segment and of the image.
    unsafe { enter_relocation_stub(stub, table) }
}
