use super::*;
use crate::interrupt::message::MsiTarget;
use alloc::sync::Arc;
use spin::Mutex;

#[derive(Default)]
struct Recorder(Vec<(u64, u32)>);
impl MsiTarget for Recorder {
    fn send_msi(&mut self, address: u64, data: u32) {
        self.0.push((address, data));
    }
}

fn sender() -> (MsiSender, Arc<Mutex<Recorder>>) {
    let rec = Arc::new(Mutex::new(Recorder::default()));
    (MsiSender::new(rec.clone()), rec)
}

fn cs() -> ConfigSpace {
    ConfigSpace::new(0x1234, 0x5678, 0, 0x02_00_00, 0)
}

fn write(cs: &mut ConfigSpace, off: u8, bytes: &[u8]) {
    let mut ch = Vec::new();
    cs.write(off, bytes, &mut ch);
}

#[test]
fn msi_64_bit_is_sent_only_when_enabled() {
    let mut c = cs();
    let mut msi = MsiCap::add(&mut c, 1, true, false).unwrap();
    let (s, rec) = sender();
    msi.connect(s);
    let o = msi.offset();
    assert_eq!(c.capabilities(), vec![(o, CAP_ID_MSI)]);
    assert_eq!(c.u16(o + 2), msi_control::ADDR_64);
    assert!(!msi.notify(&mut c, 0), "disabled");
    write(&mut c, o + 4, &0xFEE0_1003u32.to_le_bytes());
    write(&mut c, o + 8, &0u32.to_le_bytes());
    write(&mut c, o + 12, &0x4041u16.to_le_bytes());
    write(&mut c, o + 2, &1u16.to_le_bytes());
    assert!(msi.notify(&mut c, 0));
    // Address bits 1:0 are reserved.
    assert_eq!(rec.lock().0, vec![(0xFEE0_1000, 0x4041)]);
    assert!(!msi.notify(&mut c, 1), "one vector only");
}

#[test]
fn msi_multiple_messages_put_the_vector_in_the_data() {
    let mut c = cs();
    let mut msi = MsiCap::add(&mut c, 4, false, false).unwrap();
    let (s, rec) = sender();
    msi.connect(s);
    let o = msi.offset();
    write(&mut c, o + 4, &0xFEE0_0000u32.to_le_bytes());
    write(&mut c, o + 8, &0x0053u16.to_le_bytes());
    // MME = 2 (four vectors granted), enabled.
    write(&mut c, o + 2, &(0x21u16).to_le_bytes());
    assert!(msi.notify(&mut c, 2));
    assert_eq!(rec.lock().0, vec![(0xFEE0_0000, 0x0052)]);
    assert!(!msi.notify(&mut c, 4));
}

#[test]
fn msi_masked_vector_pends_and_is_sent_on_unmask() {
    let mut c = cs();
    let mut msi = MsiCap::add(&mut c, 2, false, true).unwrap();
    let (s, rec) = sender();
    msi.connect(s);
    let o = msi.offset();
    write(&mut c, o + 4, &0xFEE0_0000u32.to_le_bytes());
    write(&mut c, o + 8, &0x0060u16.to_le_bytes());
    write(&mut c, o + 2, &(0x11u16).to_le_bytes());
    write(&mut c, o + 12, &0b10u32.to_le_bytes()); // mask vector 1
    assert!(msi.notify(&mut c, 1));
    assert!(rec.lock().0.is_empty());
    assert_eq!(c.u32(o + 16), 0b10, "pending bit");
    // The pending bits are read-only to software.
    write(&mut c, o + 16, &0u32.to_le_bytes());
    assert_eq!(c.u32(o + 16), 0b10);
    write(&mut c, o + 12, &0u32.to_le_bytes());
    msi.config_written(&mut c);
    assert_eq!(rec.lock().0, vec![(0xFEE0_0000, 0x0061)]);
    assert_eq!(c.u32(o + 16), 0);
}

fn msix_cs() -> (ConfigSpace, MsixCap, Arc<Mutex<Recorder>>) {
    let mut c = cs();
    c.add_bar(
        2,
        BarKind::Mem32 {
            prefetchable: false,
        },
        0x1000,
    )
    .unwrap();
    let mut m = MsixCap::add(&mut c, 4, 2, 0x800, 2, 0xC00).unwrap();
    let (s, rec) = sender();
    m.connect(s);
    (c, m, rec)
}

fn entry(m: &mut MsixCap, n: u64, addr: u32, data: u32, ctrl: u32) {
    let base = 0x800 + 16 * n;
    for (off, v) in [(0, addr), (4, 0), (8, data), (12, ctrl)] {
        assert!(m.bar_write(2, base + off, &v.to_le_bytes()));
    }
}

fn pba(m: &MsixCap) -> u64 {
    let mut b = [0u8; 8];
    assert!(m.bar_read(2, 0xC00, &mut b));
    u64::from_le_bytes(b)
}

#[test]
fn msix_capability_describes_table_and_pba() {
    let (c, m, _) = msix_cs();
    let o = m.offset();
    assert_eq!(c.u16(o + 2), 3, "table size N-1");
    assert_eq!(c.u32(o + 4), 0x802);
    assert_eq!(c.u32(o + 8), 0xC02);
    // Entries start masked.
    let mut b = [0u8; 4];
    assert!(m.bar_read(2, 0x800 + 12, &mut b));
    assert_eq!(u32::from_le_bytes(b), 1);
    assert!(!m.bar_read(2, 0x7FC, &mut b), "outside the table");
    assert!(!m.bar_read(1, 0x800, &mut b), "other BAR");
}

#[test]
fn msix_masked_entry_pends_and_is_delivered_on_unmask() {
    let (mut c, mut m, rec) = msix_cs();
    let o = m.offset();
    write(&mut c, o + 2, &0x8000u16.to_le_bytes());
    m.config_written(&c);
    entry(&mut m, 1, 0xFEE0_0000, 0x41, 1);
    assert!(m.notify(1));
    assert!(rec.lock().0.is_empty());
    assert_eq!(pba(&m), 0b10);
    // The PBA is read-only.
    assert!(m.bar_write(2, 0xC00, &0u64.to_le_bytes()));
    assert_eq!(pba(&m), 0b10);
    assert!(m.bar_write(2, 0x800 + 16 + 12, &0u32.to_le_bytes()));
    assert_eq!(rec.lock().0, vec![(0xFEE0_0000, 0x41)]);
    assert_eq!(pba(&m), 0);
    assert!(m.notify(1));
    assert_eq!(rec.lock().0.len(), 2, "unmasked: sent at once");
}

#[test]
fn msix_function_mask_holds_every_entry() {
    let (mut c, mut m, rec) = msix_cs();
    let o = m.offset();
    assert!(!m.notify(0), "disabled");
    write(&mut c, o + 2, &0xC000u16.to_le_bytes());
    m.config_written(&c);
    entry(&mut m, 0, 0xFEE0_0000, 0x30, 0);
    entry(&mut m, 3, 0xFEE0_1000, 0x33, 0);
    assert!(m.notify(0) && m.notify(3));
    assert!(rec.lock().0.is_empty());
    assert_eq!(pba(&m), 0b1001);
    write(&mut c, o + 2, &0x8000u16.to_le_bytes());
    m.config_written(&c);
    assert_eq!(rec.lock().0, vec![(0xFEE0_0000, 0x30), (0xFEE0_1000, 0x33)]);
    assert!(!m.notify(4), "no entry 4");
    m.reset();
    assert!(!m.enabled());
}

#[test]
fn msix_table_must_fit_its_bar() {
    let mut c = cs();
    c.add_bar(0, BarKind::Io, 256).unwrap();
    c.add_bar(
        1,
        BarKind::Mem32 {
            prefetchable: false,
        },
        0x100,
    )
    .unwrap();
    assert!(matches!(
        MsixCap::add(&mut c, 4, 0, 0, 1, 0x80),
        Err(ConfigSpaceError::MsixPlacement { bar: 0, .. })
    ));
    assert!(matches!(
        MsixCap::add(&mut c, 17, 1, 0, 1, 0xF8),
        Err(ConfigSpaceError::MsixPlacement { .. })
    ));
    assert!(MsixCap::add(&mut c, 8, 1, 0, 1, 0x80).is_ok());
}
