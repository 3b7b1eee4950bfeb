//! The card against the VGA reference (IBM VGA Technical Reference,
//! FreeVGA) and the Bochs DISPI documentation.

use super::*;
use crate::pci::PciDevice;
use alloc::string::{String, ToString};

fn card() -> Vga {
    Vga::new(VgaConfig::unmapped(None))
}

fn gr(v: &mut Vga, i: u8, val: u8) {
    v.port_write(0x3CE, i);
    v.port_write(0x3CF, val);
}

fn sr(v: &mut Vga, i: u8, val: u8) {
    v.port_write(0x3C4, i);
    v.port_write(0x3C5, val);
}

/// Plane `p`'s byte at plane offset `o`.
fn plane(v: &Vga, p: u64, o: u64) -> u8 {
    v.vram().read_obj::<u8>(o * 4 + p).unwrap()
}

/// Planar mode (mode 12h's memory setup): no chain-4, no odd/even, window at
/// 0xA0000 (64 KiB), all planes enabled, bit mask all ones.
fn planar() -> Vga {
    let mut v = card();
    sr(&mut v, 4, 0x06);
    sr(&mut v, 2, 0x0F);
    gr(&mut v, 5, 0x00);
    gr(&mut v, 6, 0x05);
    gr(&mut v, 8, 0xFF);
    v
}

#[test]
fn index_registers_keep_their_bits_and_missing_registers_read_zero() {
    let mut v = card();
    v.port_write(0x3C4, 0xFF);
    assert_eq!(v.port_read(0x3C4), 0x07, "sequencer index: bits 2:0");
    v.port_write(0x3C5, 0x55);
    assert_eq!(v.port_read(0x3C5), 0, "SR07 does not exist");
    v.port_write(0x3CE, 0xFF);
    assert_eq!(v.port_read(0x3CE), 0x0F);
    v.port_write(0x3CF, 0x55);
    assert_eq!(v.port_read(0x3CF), 0, "GR0F does not exist");
    sr(&mut v, 2, 0x0A);
    assert_eq!(v.port_read(0x3C5), 0x0A);
}

#[test]
fn crtc_ports_follow_the_misc_output_io_select_and_the_protect_bit() {
    let mut v = card();
    // Misc output bit 0 clear: monochrome addresses.
    v.port_write(0x3B4, 0x0C);
    v.port_write(0x3B5, 0x12);
    v.port_write(0x3D4, 0x0C);
    assert_eq!(v.port_read(0x3D5), 0xFF, "color CRTC does not decode");
    v.port_write(0x3C2, 0x67);
    assert_eq!(v.port_read(0x3CC), 0x67, "misc output reads at 0x3CC");
    v.port_write(0x3D4, 0x0C);
    assert_eq!(v.port_read(0x3D5), 0x12);
    // CR11 bit 7: CR00-CR07 are read-only, except CR07 bit 4.
    v.port_write(0x3D4, 0x01);
    v.port_write(0x3D5, 0x4F);
    v.port_write(0x3D4, 0x11);
    v.port_write(0x3D5, 0x80);
    v.port_write(0x3D4, 0x01);
    v.port_write(0x3D5, 0x27);
    assert_eq!(v.port_read(0x3D5), 0x4F, "protected");
    v.port_write(0x3D4, 0x07);
    v.port_write(0x3D5, 0xFF);
    assert_eq!(v.port_read(0x3D5), 0x10, "only line compare bit 8 changes");
    v.port_write(0x3D4, 0x13);
    v.port_write(0x3D5, 0x28);
    assert_eq!(v.port_read(0x3D5), 0x28, "CR13 is not protected");
}

#[test]
fn the_attribute_flip_flop_alternates_and_input_status_1_resets_it() {
    let mut v = card();
    v.port_write(0x3C2, 0x01);
    v.port_write(0x3C0, 0x21); // index 1 with PAS
    v.port_write(0x3C0, 0x3F); // data
    assert_eq!(v.port_read(0x3C0), 0x21);
    assert_eq!(v.port_read(0x3C1), 0x3F);
    v.port_write(0x3C0, 0x02); // an index again
    let first = v.port_read(0x3DA);
    // Retrace is seen to come and go.
    assert_ne!(first & 0x08, v.port_read(0x3DA) & 0x08);
    v.port_write(0x3C0, 0x14); // reset to index state: an index
    v.port_write(0x3C0, 0x0C);
    assert_eq!(v.regs.ar[0x14], 0x0C);
    assert_eq!(v.regs.ar[0x02], 0, "0x14 was an index, not data for AR02");
    v.port_write(0x3C0, 0x1F); // no AR1F: the data write is dropped
    v.port_write(0x3C0, 0x77);
    assert_eq!(v.port_read(0x3C1), 0);
}

#[test]
fn the_dac_takes_three_6_bit_components_per_entry_and_moves_on() {
    let mut v = card();
    v.port_write(0x3C8, 0xFF);
    for c in [0x3F, 0xFF, 0x01, 0x10, 0x20, 0x30] {
        v.port_write(0x3C9, c);
    }
    assert_eq!(v.port_read(0x3C8), 0x01, "wrapped past 255 to 0, then 1");
    assert_eq!(v.port_read(0x3C7), 0, "write mode");
    v.port_write(0x3C7, 0xFF);
    assert_eq!(v.port_read(0x3C7), 3, "read mode");
    let got: [u8; 6] = core::array::from_fn(|_| v.port_read(0x3C9));
    assert_eq!(got, [0x3F, 0x3F, 0x01, 0x10, 0x20, 0x30], "6 bits kept");
    assert_eq!(v.regs.dac.rgb(0), 0x41_82_C3);
}

#[test]
fn write_mode_0_rotates_applies_set_reset_the_logical_operation_and_the_bit_mask() {
    let mut v = planar();
    // Latches: plane p holds 0x0F << p... loaded by a read.
    for p in 0..4 {
        v.vram().write_obj::<u8>(0x10 * 4 + p, 0xF0).unwrap();
    }
    let _ = v.window_read(0x10);
    assert_eq!(v.planar.latches, [0xF0; 4]);
    gr(&mut v, 3, 0x01 | 0x18); // rotate 1, XOR
    gr(&mut v, 1, 0x01); // set/reset for plane 0 only
    gr(&mut v, 0, 0x00); // ... to 0
    gr(&mut v, 8, 0x3C); // bit mask
    v.window_write(0x10, 0x81); // rotated right by 1: 0xC0
                                // plane 0: (0x00 ^ 0xF0) & 0x3C | 0xF0 & !0x3C = 0x30 | 0xC0
    assert_eq!(plane(&v, 0, 0x10), 0xF0);
    // planes 1-3: (0xC0 ^ 0xF0) = 0x30; & 0x3C = 0x30; | (0xF0 & 0xC3) = 0xC0
    assert_eq!(plane(&v, 1, 0x10), 0xF0);
    gr(&mut v, 8, 0xFF);
    v.window_write(0x10, 0x81);
    assert_eq!(plane(&v, 0, 0x10), 0xF0, "set/reset 0 XOR latch");
    assert_eq!(plane(&v, 3, 0x10), 0x30, "0xC0 XOR 0xF0");
    // AND and OR.
    gr(&mut v, 3, 0x08);
    gr(&mut v, 1, 0);
    v.window_write(0x10, 0x3C);
    assert_eq!(plane(&v, 2, 0x10), 0x30);
    gr(&mut v, 3, 0x10);
    v.window_write(0x10, 0x0F);
    assert_eq!(plane(&v, 2, 0x10), 0xFF);
}

#[test]
fn the_map_mask_selects_the_planes_a_write_reaches() {
    let mut v = planar();
    sr(&mut v, 2, 0b0101);
    v.window_write(0x20, 0xAA);
    let got: [u8; 4] = core::array::from_fn(|p| plane(&v, p as u64, 0x20));
    assert_eq!(got, [0xAA, 0, 0xAA, 0]);
}

#[test]
fn write_mode_1_copies_the_latches_across() {
    let mut v = planar();
    for (p, b) in [0x11u8, 0x22, 0x33, 0x44].iter().enumerate() {
        v.vram().write_obj::<u8>(0x30 * 4 + p as u64, *b).unwrap();
    }
    let _ = v.window_read(0x30);
    gr(&mut v, 5, 0x01);
    gr(&mut v, 8, 0x00); // the bit mask does not apply in write mode 1
    v.window_write(0x40, 0x99);
    let got: [u8; 4] = core::array::from_fn(|p| plane(&v, p as u64, 0x40));
    assert_eq!(got, [0x11, 0x22, 0x33, 0x44]);
}

#[test]
fn write_mode_2_expands_color_bits_under_the_bit_mask() {
    let mut v = planar();
    let _ = v.window_read(0x50); // latches 0
    gr(&mut v, 5, 0x02);
    gr(&mut v, 8, 0x81);
    v.window_write(0x50, 0b1010);
    let got: [u8; 4] = core::array::from_fn(|p| plane(&v, p as u64, 0x50));
    assert_eq!(got, [0x00, 0x81, 0x00, 0x81]);
}

#[test]
fn write_mode_3_masks_the_bit_mask_with_rotated_data_and_writes_set_reset() {
    let mut v = planar();
    let _ = v.window_read(0x60);
    gr(&mut v, 5, 0x03);
    gr(&mut v, 0, 0b0110);
    gr(&mut v, 8, 0xF0);
    gr(&mut v, 3, 0x04); // rotate right 4
    v.window_write(0x60, 0x3C); // rotated: 0xC3; & 0xF0 = 0xC0
    let got: [u8; 4] = core::array::from_fn(|p| plane(&v, p as u64, 0x60));
    assert_eq!(got, [0x00, 0xC0, 0xC0, 0x00]);
}

#[test]
fn read_mode_0_returns_the_read_map_and_read_mode_1_compares_colors() {
    let mut v = planar();
    for (p, b) in [0b1100u8, 0b1010, 0b0000, 0b1111].iter().enumerate() {
        v.vram().write_obj::<u8>(0x70 * 4 + p as u64, *b).unwrap();
    }
    gr(&mut v, 4, 1);
    assert_eq!(v.window_read(0x70), 0b1010);
    gr(&mut v, 5, 0x08);
    // Color 0b1001 (planes 0 and 3 set): pixel by pixel (bits 3..0) the
    // colors are 0b1011, 0b1001, 0b1010, 0b1000.
    gr(&mut v, 2, 0b1001);
    gr(&mut v, 7, 0x0F);
    assert_eq!(v.window_read(0x70), 0b0100);
    gr(&mut v, 7, 0b1001); // planes 1 and 2 do not matter
    assert_eq!(v.window_read(0x70) & 0x0F, 0b1100);
}

#[test]
fn chain_4_reaches_plane_addr_and_3_and_shows_memory_linearly() {
    let mut v = card();
    sr(&mut v, 4, 0x0E);
    sr(&mut v, 2, 0x0F);
    gr(&mut v, 6, 0x05);
    for a in 0..8u64 {
        v.window_write(a, a as u8 + 1);
    }
    assert_eq!(plane(&v, 3, 1), 8, "byte 7: plane 3, offset 1");
    assert_eq!(v.vram().read_obj::<u8>(5).unwrap(), 6, "the LFB view");
    sr(&mut v, 2, 0x01);
    v.window_write(1, 0xEE);
    assert_eq!(v.window_read(1), 2, "plane 1 is masked off");
}

#[test]
fn odd_even_puts_characters_in_plane_0_and_attributes_in_plane_1() {
    let mut v = card();
    sr(&mut v, 4, 0x02); // odd/even on
    sr(&mut v, 2, 0x03);
    gr(&mut v, 5, 0x10);
    gr(&mut v, 6, 0x0E); // B8000, 32 KiB
    v.window_write(0x1_8000 + 4, b'K');
    v.window_write(0x1_8000 + 5, 0x1F);
    assert_eq!(plane(&v, 0, 4), b'K');
    assert_eq!(plane(&v, 1, 4), 0x1F);
    assert_eq!(v.window_read(0x1_8000 + 5), 0x1F);
    assert_eq!(v.window_read(0x1_8000 + 4), b'K');
    // Outside the selected window: nothing decodes.
    v.window_write(0, 0x55);
    assert_eq!(v.window_read(0), 0xFF);
    assert_eq!(plane(&v, 0, 0), 0);
}

/// The text screen as SeaBIOS's mode 3 sets it up (80x25, 16 lines per row).
fn text_mode(v: &mut Vga) {
    v.port_write(0x3C2, 0x67);
    sr(v, 4, 0x02);
    sr(v, 2, 0x03);
    gr(v, 5, 0x10);
    gr(v, 6, 0x0E);
    for (i, val) in [
        (0x01, 0x4F),
        (0x07, 0x1F),
        (0x09, 0x4F),
        (0x0A, 0x20), // the cursor off
        (0x12, 0x8F),
        (0x13, 0x28),
    ] {
        v.port_write(0x3D4, i);
        v.port_write(0x3D5, val);
    }
}

#[test]
fn the_text_dump_reads_rows_from_the_crtc_start_and_offset() {
    let mut v = card();
    text_mode(&mut v);
    assert_eq!(v.screen(), Screen::Text { cols: 80, rows: 25 });
    let put = |v: &mut Vga, row: u64, col: u64, s: &str| {
        for (i, c) in s.bytes().enumerate() {
            let a = 0x1_8000 + (row * 80 + col + i as u64) * 2;
            v.window_write(a, c);
            v.window_write(a + 1, 0x07);
        }
    };
    put(&mut v, 0, 0, "SeaBIOS (version x)");
    put(&mut v, 24, 75, "end\x01");
    let mut lines = alloc::vec::Vec::new();
    assert_eq!(v.text_screen(|l| lines.push(l.to_string())), Some(25));
    assert_eq!(lines[0], "SeaBIOS (version x)");
    assert_eq!(lines[1], "");
    assert_eq!(lines[24], String::from(" ").repeat(75) + "end.");
    // Start address 80 (one row on): row 24 is now row 23.
    v.port_write(0x3D4, 0x0D);
    v.port_write(0x3D5, 80);
    lines.clear();
    v.text_screen(|l| lines.push(l.to_string()));
    assert_eq!(lines[23].trim(), "end.");
    // In a graphics mode there is no text.
    gr(&mut v, 6, 0x05);
    assert_eq!(v.text_screen(|_| {}), None);
}

#[test]
fn the_text_render_draws_glyphs_from_plane_2_in_attribute_colors() {
    let mut v = card();
    text_mode(&mut v);
    // Glyph for 'A': row 0 is 0x81 (leftmost and rightmost dots).
    v.vram()
        .write_obj::<u8>((b'A' as u64 * 32) * 4 + 2, 0x81)
        .unwrap();
    v.window_write(0x1_8000, b'A');
    v.window_write(0x1_8001, 0x1E); // yellow (14) on blue (1)
    for i in 0..16u8 {
        v.port_write(0x3C0, i);
        v.port_write(0x3C0, i);
    }
    v.port_write(0x3C8, 1);
    for c in [0, 0, 0x2A] {
        v.port_write(0x3C9, c);
    }
    v.port_write(0x3C8, 14);
    for c in [0x3F, 0x3F, 0x15] {
        v.port_write(0x3C9, c);
    }
    let mut out = alloc::vec![0u32; 640 * 400];
    assert_eq!(v.render(&mut out), Some((640, 400)));
    assert_eq!(out[0], 0xFF_FF_55, "a dot: the foreground");
    assert_eq!(out[1], 0x00_00_AA, "no dot: the background");
    assert_eq!(out[7], 0xFF_FF_55);
    assert!(v.render(&mut out[..100]).is_none(), "too small a buffer");
}

fn dispi(v: &mut Vga, i: u16, val: u16) {
    v.write(u64::from(DISPI_PORTS.0), 0, &i.to_le_bytes());
    v.write(u64::from(DISPI_PORTS.0), 1, &val.to_le_bytes());
}

fn dispi_get(v: &mut Vga, i: u16) -> u16 {
    v.write(u64::from(DISPI_PORTS.0), 0, &i.to_le_bytes());
    let mut b = [0u8; 2];
    v.read(u64::from(DISPI_PORTS.0), 1, &mut b);
    u16::from_le_bytes(b)
}

#[test]
fn dispi_identifies_itself_and_reports_its_limits() {
    let mut v = card();
    assert_eq!(dispi_get(&mut v, vbe::ID), vbe::ID5);
    dispi(&mut v, vbe::ID, 0xB0C2);
    assert_eq!(dispi_get(&mut v, vbe::ID), 0xB0C2);
    dispi(&mut v, vbe::ID, 0x1234);
    assert_eq!(dispi_get(&mut v, vbe::ID), 0xB0C2, "not a DISPI version");
    assert_eq!(dispi_get(&mut v, vbe::VIDEO_MEMORY_64K), 256);
    dispi(&mut v, vbe::ENABLE, vbe::GETCAPS);
    assert_eq!(dispi_get(&mut v, vbe::XRES), vbe::MAX_XRES);
    assert_eq!(dispi_get(&mut v, vbe::BPP), 32);
    dispi(&mut v, vbe::ENABLE, 0);
    dispi(&mut v, vbe::XRES, 1001);
    assert_eq!(dispi_get(&mut v, vbe::XRES), 640, "not a multiple of 8");
    dispi(&mut v, vbe::BPP, 12);
    assert_eq!(dispi_get(&mut v, vbe::BPP), 8, "no 12 bpp");
}

#[test]
fn a_vbe_mode_shows_the_lfb_and_the_banked_window_aliases_it() {
    let mut v = card();
    dispi(&mut v, vbe::XRES, 1024);
    dispi(&mut v, vbe::YRES, 768);
    dispi(&mut v, vbe::BPP, 32);
    v.vram().fill(0, 0x1000, 0xAB).unwrap();
    dispi(&mut v, vbe::ENABLE, vbe::ENABLED | vbe::LFB_ENABLED);
    assert_eq!(v.vram().read_obj::<u32>(0).unwrap(), 0, "cleared");
    assert_eq!(dispi_get(&mut v, vbe::VIRT_WIDTH), 1024);
    // Pixel (x=3, y=70) through the LFB: byte 70 * 4096 + 12, in bank 4.
    let at = 70 * 4096 + 12;
    v.bar_write(LFB_BAR, at, &0x0012_3456u32.to_le_bytes());
    dispi(&mut v, vbe::BANK, 4);
    let mut b = [0u8; 4];
    v.read(LEGACY_WINDOW.0, at - 4 * 0x1_0000, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0x0012_3456);
    v.write(
        LEGACY_WINDOW.0,
        at - 4 * 0x1_0000 + 4,
        &0x00AB_CDEFu32.to_le_bytes(),
    );
    let mut out = alloc::vec![0u32; 1024 * 768];
    assert_eq!(v.render(&mut out), Some((1024, 768)));
    assert_eq!(out[70 * 1024 + 3], 0x12_3456);
    assert_eq!(out[70 * 1024 + 4], 0xAB_CDEF);
    // NOCLEARMEM on the next enable keeps the picture.
    dispi(&mut v, vbe::ENABLE, 0);
    dispi(&mut v, vbe::ENABLE, vbe::ENABLED | vbe::NOCLEARMEM);
    assert_eq!(v.vram().read_obj::<u32>(at).unwrap(), 0x0012_3456);
}

#[test]
fn vbe_modes_banks_and_offsets_beyond_video_memory_are_refused() {
    let mut v = card();
    dispi(&mut v, vbe::XRES, 16000);
    dispi(&mut v, vbe::YRES, 12000);
    dispi(&mut v, vbe::BPP, 32);
    dispi(&mut v, vbe::ENABLE, vbe::ENABLED);
    assert_eq!(
        dispi_get(&mut v, vbe::ENABLE) & vbe::ENABLED,
        0,
        "768 MB > 16 MiB"
    );
    dispi(&mut v, vbe::XRES, 1024);
    dispi(&mut v, vbe::YRES, 768);
    dispi(&mut v, vbe::ENABLE, vbe::ENABLED);
    assert!(v.dispi.enabled());
    dispi(&mut v, vbe::BANK, 256);
    assert_eq!(dispi_get(&mut v, vbe::BANK), 0, "bank 256 is past 16 MiB");
    dispi(&mut v, vbe::BANK, 255);
    assert_eq!(dispi_get(&mut v, vbe::BANK), 255);
    assert_eq!(dispi_get(&mut v, vbe::VIRT_HEIGHT), 768);
    dispi(&mut v, vbe::VIRT_HEIGHT, 0xFFFF);
    assert_eq!(
        dispi_get(&mut v, vbe::VIRT_HEIGHT),
        4096,
        "16 MiB / 4 KiB lines"
    );
    dispi(&mut v, vbe::Y_OFFSET, 4096);
    assert_eq!(dispi_get(&mut v, vbe::Y_OFFSET), 0, "past the end");
    dispi(&mut v, vbe::Y_OFFSET, 4095);
    assert_eq!(dispi_get(&mut v, vbe::Y_OFFSET), 4095);
    dispi(&mut v, vbe::VIRT_WIDTH, 0xFFFF);
    assert_eq!(
        dispi_get(&mut v, vbe::VIRT_WIDTH),
        1024,
        "256 KiB lines x 768 do not fit"
    );
    dispi(&mut v, vbe::VIRT_WIDTH, 4096);
    assert_eq!(
        dispi_get(&mut v, vbe::VIRT_WIDTH),
        4096,
        "16 KiB lines x 768 fit"
    );
    assert_eq!(dispi_get(&mut v, vbe::VIRT_HEIGHT), 1024, "cut to 16 MiB");
    // The last bank's window, then past the end of video memory: dropped.
    v.write(LEGACY_WINDOW.0, 0xFFFF, &[1, 2]);
    assert_eq!(v.vram().read_obj::<u8>(VRAM_SIZE - 1).unwrap(), 1);
    let mut b = [0u8; 4];
    v.read(LEGACY_WINDOW.0, 0x1_FFFE, &mut b);
    assert_eq!(b, [0xFF; 4], "outside the 64 KiB window");
}

#[test]
fn the_mmio_bar_reaches_the_vga_ports_dispi_and_the_extended_registers() {
    let mut v = card();
    v.bar_write(MMIO_BAR, MMIO_VGA + 4, &[0x02, 0x0F]); // 0x3C4/0x3C5
    assert_eq!(v.regs.seq[2], 0x0F);
    v.bar_write(
        MMIO_BAR,
        MMIO_DISPI + 2 * u64::from(vbe::XRES),
        &800u16.to_le_bytes(),
    );
    assert_eq!(v.dispi_read(vbe::XRES), 800);
    let mut b = [0u8; 2];
    v.bar_read(MMIO_BAR, MMIO_DISPI, &mut b);
    assert_eq!(u16::from_le_bytes(b), vbe::ID5);
    let mut q = [0u8; 8];
    v.bar_read(MMIO_BAR, MMIO_QEXT, &mut q);
    assert_eq!(q, [8, 0, 0, 0, 0x1e, 0x1e, 0x1e, 0x1e]);
    let mut far = [0u8; 4];
    v.bar_read(MMIO_BAR, 0xFFC, &mut far);
    assert_eq!(far, [0; 4]);
    v.bar_write(LFB_BAR, VRAM_SIZE - 2, &[1, 2, 3, 4]); // crosses the end: dropped
    v.bar_read(LFB_BAR, VRAM_SIZE, &mut far);
    assert_eq!(far, [0xFF; 4]);
}

#[test]
fn the_rom_bar_serves_the_vga_bios_and_the_ids_are_qemus() {
    let image: Arc<[u8]> = Arc::from(&[0x55u8, 0xAA, 0x4C][..]);
    let mut v = Vga::new(VgaConfig::unmapped(Some(image.clone())));
    assert_eq!(v.rom_image().as_deref(), Some(&image[..]));
    let mut id = [0u8; 4];
    v.config_read(0, &mut id);
    assert_eq!(id, [0x34, 0x12, 0x11, 0x11]);
    let mut class = [0u8; 4];
    v.config_read(8, &mut class);
    assert_eq!(&class[1..], &[0x00, 0x00, 0x03]);
}

#[test]
fn a_reset_returns_the_registers_to_power_on_but_keeps_video_memory() {
    let mut v = card();
    sr(&mut v, 2, 0x0F);
    dispi(&mut v, vbe::XRES, 800);
    v.vram().write_obj::<u8>(0, 0x42).unwrap();
    v.reset(&mut alloc::vec::Vec::new());
    assert_eq!(v.regs.seq[2], 0);
    assert_eq!(v.dispi_read(vbe::XRES), 640);
    assert_eq!(v.vram().read_obj::<u8>(0).unwrap(), 0x42);
}

#[test]
fn every_planar_write_mode_latch_and_mask_combination_stays_in_its_plane_byte() {
    let mut v = planar();
    let mut n = 0u32;
    for mode in 0..4u8 {
        for rot in [0u8, 0x0B, 0x17] {
            for mask in [0u8, 0x5A, 0xFF] {
                for latch in [0u8, 0xA5] {
                    v.planar.latches = [latch; 4];
                    gr(&mut v, 5, mode);
                    gr(&mut v, 3, rot);
                    gr(&mut v, 8, mask);
                    gr(&mut v, 1, 0x05);
                    gr(&mut v, 0, 0x0A);
                    v.window_write(0xFFFF, 0x96);
                    n += 1;
                }
            }
        }
    }
    assert_eq!(n, 72);
    // Nothing past the planes' 256 KiB was touched.
    let mut rest = alloc::vec![0u8; 0x1000];
    v.vram().read(0x4_0000, &mut rest).unwrap();
    assert!(rest.iter().all(|&b| b == 0));
}

fn crtc_write(v: &mut Vga, i: u8, val: u8) {
    v.port_write(0x3D4, i);
    v.port_write(0x3D5, val);
}

/// Identity palette (AR00-AR0F = 0-15) and DAC entries 0, 4 and 12 (EGA
/// black, red, bright red) and 7 (light grey).
fn ega_colors(v: &mut Vga) {
    v.port_read(0x3DA); // the attribute flip-flop to the address
    for i in 0..16u8 {
        v.port_write(0x3C0, i);
        v.port_write(0x3C0, i);
    }
    for (i, rgb) in [
        (0u8, [0, 0, 0]),
        (4, [0x2A, 0, 0]),
        (7, [0x2A, 0x2A, 0x2A]),
        (12, [0x3F, 0x15, 0x15]),
    ] {
        v.port_write(0x3C8, i);
        for c in rgb {
            v.port_write(0x3C9, c);
        }
    }
}

fn ar_write(v: &mut Vga, i: u8, val: u8) {
    v.port_read(0x3DA);
    v.port_write(0x3C0, i | 0x20); // PAS on: the screen keeps showing
    v.port_write(0x3C0, val);
}

#[test]
fn the_text_cursor_shows_in_its_scan_lines_at_the_cursor_location() {
    let mut v = card();
    text_mode(&mut v);
    ega_colors(&mut v);
    // An empty glyph for ' ' (plane 2 is zero), grey on black, in cell
    // (row 1, col 2), and the cursor there on scan lines 14-15.
    let cell = 0x1_8000 + (80 + 2) * 2;
    v.window_write(cell, b' ');
    v.window_write(cell + 1, 0x07);
    crtc_write(&mut v, 0x0A, 14);
    crtc_write(&mut v, 0x0B, 15);
    crtc_write(&mut v, 0x0E, 0);
    crtc_write(&mut v, 0x0F, 82);
    let screen = v.screen();
    let mut row = [0u32; 640];
    let grey = 0xAA_AAAA;
    v.render_row(screen, 16 + 14, &mut row, |x| x).unwrap();
    assert_eq!(row[16..24], [grey; 8], "the cursor's first line: its cell");
    assert_eq!(row[24], 0, "the next cell has no cursor");
    v.render_row(screen, 16 + 13, &mut row, |x| x).unwrap();
    assert_eq!(row[16], 0, "above the cursor's start line");
    // CR0A bit 5 turns the cursor off.
    crtc_write(&mut v, 0x0A, 0x20 | 14);
    v.render_row(screen, 16 + 14, &mut row, |x| x).unwrap();
    assert_eq!(row[16], 0, "cursor off");
}

#[test]
fn attribute_bit_7_brightens_the_background_unless_it_blinks() {
    let mut v = card();
    text_mode(&mut v);
    ega_colors(&mut v);
    v.window_write(0x1_8000, b' ');
    v.window_write(0x1_8001, 0xC0); // background 12: bright red, or blinking red
    let screen = v.screen();
    let mut row = [0u32; 8];
    ar_write(&mut v, 0x10, 0x00);
    v.render_row(screen, 0, &mut row, |x| x).unwrap();
    assert_eq!(row[0], 0xFF_5555, "AR10 bit 3 clear: 16 background colors");
    ar_write(&mut v, 0x10, 0x08);
    v.render_row(screen, 0, &mut row, |x| x).unwrap();
    assert_eq!(
        row[0], 0xAA_0000,
        "AR10 bit 3 set: bit 7 blinks, background 4"
    );
}

#[test]
fn a_row_is_drawn_at_the_columns_a_scaler_picks() {
    let mut v = card();
    dispi(&mut v, vbe::XRES, 1024);
    dispi(&mut v, vbe::YRES, 768);
    dispi(&mut v, vbe::BPP, 32);
    dispi(&mut v, vbe::ENABLE, vbe::ENABLED | vbe::LFB_ENABLED);
    for x in 0..1024u64 {
        v.bar_write(LFB_BAR, 5 * 4096 + x * 4, &(x as u32).to_le_bytes());
    }
    let mut half = [0u32; 512];
    v.render_row(v.screen(), 5, &mut half, |i| i * 2).unwrap();
    assert_eq!((half[0], half[1], half[511]), (0, 2, 1022));
    // Columns past the mode's memory read as black, never out of bounds.
    dispi(&mut v, vbe::ENABLE, 0);
    v.render_row(v.screen(), 0, &mut half, |i| i + 0x7FFF_FFF0)
        .unwrap();
}

/// The scan lines [`Vga::take_changes`] reports, or `None` for "everything".
fn changes(v: &mut Vga) -> Option<alloc::vec::Vec<u32>> {
    let mut rows = alloc::vec::Vec::new();
    let all = v.take_changes(|y| rows.push(y));
    (!all).then_some(rows)
}

fn vbe_1024x768x32(v: &mut Vga) {
    dispi(v, vbe::XRES, 1024);
    dispi(v, vbe::YRES, 768);
    dispi(v, vbe::BPP, 32);
    dispi(v, vbe::ENABLE, vbe::ENABLED | vbe::LFB_ENABLED);
}

#[test]
fn a_framebuffer_write_marks_exactly_the_rows_it_reaches_and_taking_clears() {
    let mut v = card();
    assert_eq!(changes(&mut v), None, "a new card: everything");
    assert_eq!(changes(&mut v), Some(alloc::vec![]), "taken: nothing");
    vbe_1024x768x32(&mut v);
    assert_eq!(changes(&mut v), None, "a mode set: everything");
    // Pixel (3, 70), and the last pixel of row 99 with the first of row 100.
    v.bar_write(LFB_BAR, 70 * 4096 + 12, &[1; 4]);
    v.bar_write(LFB_BAR, 100 * 4096 - 4, &[1; 8]);
    assert_eq!(changes(&mut v), Some(alloc::vec![70, 99, 100]));
    assert_eq!(changes(&mut v), Some(alloc::vec![]));
    // Through VBE's banked window: bank 4, offset 0x100 is row 64.
    dispi(&mut v, vbe::BANK, 4);
    assert_eq!(
        changes(&mut v),
        Some(alloc::vec![]),
        "a bank switch shows nothing"
    );
    v.write(LEGACY_WINDOW.0, 0x100, &[7]);
    assert_eq!(changes(&mut v), Some(alloc::vec![64]));
    // Below the screen (video memory it does not show): no row.
    v.bar_write(LFB_BAR, 768 * 4096 + 8, &[1]);
    assert_eq!(changes(&mut v), Some(alloc::vec![]));
    // Panning by one row: everything moved, then row 70 is source row 69.
    dispi(&mut v, vbe::Y_OFFSET, 1);
    assert_eq!(changes(&mut v), None);
    v.bar_write(LFB_BAR, 70 * 4096, &[1]);
    assert_eq!(changes(&mut v), Some(alloc::vec![69]));
}

#[test]
fn registers_and_the_palette_mark_everything_cpu_access_settings_nothing() {
    let mut v = card();
    text_mode(&mut v);
    ega_colors(&mut v);
    changes(&mut v);
    // A DAC entry: everything once its third component came, and only if
    // it differs.
    v.port_write(0x3C8, 4);
    v.port_write(0x3C9, 0x2A);
    v.port_write(0x3C9, 0);
    assert_eq!(
        changes(&mut v),
        Some(alloc::vec![]),
        "two of three components"
    );
    v.port_write(0x3C9, 0x01);
    assert_eq!(changes(&mut v), None);
    v.port_write(0x3C8, 4);
    for c in [0x2A, 0, 0x01] {
        v.port_write(0x3C9, c);
    }
    assert_eq!(changes(&mut v), Some(alloc::vec![]), "the same color again");
    ar_write(&mut v, 4, 5);
    assert_eq!(changes(&mut v), None, "the attribute palette");
    crtc_write(&mut v, 0x0C, 0x01);
    assert_eq!(changes(&mut v), None, "the start address");
    gr(&mut v, 6, 0x0F);
    assert_eq!(changes(&mut v), None, "graphics mode");
    gr(&mut v, 6, 0x0E);
    changes(&mut v);
    // What steers CPU accesses only: the bit mask, the write mode, the map mask.
    gr(&mut v, 8, 0x0F);
    gr(&mut v, 5, 0x12);
    sr(&mut v, 2, 0x01);
    dispi(&mut v, vbe::BANK, 1);
    assert_eq!(changes(&mut v), Some(alloc::vec![]));
    // A VBE mode's resolution.
    dispi(&mut v, vbe::XRES, 800);
    assert_eq!(changes(&mut v), None);
}

#[test]
fn text_writes_and_the_cursor_mark_their_rows_the_font_everything() {
    let mut v = card();
    text_mode(&mut v);
    changes(&mut v);
    let lines = |row: u32| (row * 16..row * 16 + 16).collect::<alloc::vec::Vec<_>>();
    // A character and its attribute at row 3, column 5 (window 0xB8000).
    let a = 0x1_8000 + (3 * 80 + 5) * 2;
    v.window_write(a, b'K');
    v.window_write(a + 1, 0x07);
    assert_eq!(changes(&mut v), Some(lines(3)));
    // The last cell of row 24.
    v.window_write(0x1_8000 + (25 * 80 - 1) * 2, b'x');
    assert_eq!(changes(&mut v), Some(lines(24)));
    // The cursor on (CR0A) at row 0, then moved to row 2: the rows of
    // the cells it leaves and comes to.
    crtc_write(&mut v, 0x0A, 0x0E);
    assert_eq!(changes(&mut v), Some(lines(0)));
    crtc_write(&mut v, 0x0F, 160);
    assert_eq!(changes(&mut v), Some([lines(0), lines(2)].concat()));
    // A glyph loaded into plane 2 (planar access, map mask 4): every row.
    sr(&mut v, 4, 0x06);
    sr(&mut v, 2, 0x04);
    gr(&mut v, 5, 0x00);
    gr(&mut v, 6, 0x04);
    changes(&mut v);
    v.window_write(u64::from(b'K') * 32 + 3, 0x81);
    assert_eq!(changes(&mut v), None);
}

#[test]
fn a_mapped_framebuffer_asks_for_a_dirty_log_over_what_the_mode_shows() {
    use guest_memory::MemoryMapChange::DirtyLog;
    let queue = crate::MemoryMapQueue::new();
    let mut v = Vga::new(VgaConfig {
        vram: DeviceRam {
            region: Some(HostRegionId(0)),
            memory: GuestMemory::new(VRAM_SIZE as usize),
        },
        rom: None,
    });
    v.set_memory_map(queue.clone());
    let mut cfg = alloc::vec::Vec::new();
    v.config_write(0x10, &0xE000_0000u32.to_le_bytes(), &mut cfg);
    v.config_write(0x04, &2u16.to_le_bytes(), &mut cfg);
    assert!(queue.take().is_empty(), "no VBE mode: no log");
    vbe_1024x768x32(&mut v);
    let log = LfbLog {
        gpa: 0xE000_0000,
        len: 3 << 20,
        offset: 0,
    };
    assert_eq!(
        queue.take(),
        [DirtyLog {
            gpa: log.gpa,
            len: log.len,
            on: true
        }]
    );
    assert_eq!(v.lfb_log(), Some(log));
    changes(&mut v);
    // Logged pages 5 and 700 written: rows 5 and 700 (a row is a page).
    let mut pages = alloc::vec![0u64; 12];
    pages[0] = 1 << 5;
    pages[700 / 64] = 1 << (700 % 64);
    v.lfb_written(log, Some(&pages));
    assert_eq!(changes(&mut v), Some(alloc::vec![5, 700]));
    // A log that could not be read: all its rows.
    v.lfb_written(log, None);
    assert_eq!(changes(&mut v), Some((0..768).collect()));
    // Panned down 16 rows: the log follows what is shown.
    dispi(&mut v, vbe::Y_OFFSET, 16);
    let panned = LfbLog {
        gpa: 0xE001_0000,
        offset: 0x1_0000,
        ..log
    };
    assert_eq!(
        queue.take(),
        [
            DirtyLog {
                gpa: log.gpa,
                len: log.len,
                on: false
            },
            DirtyLog {
                gpa: panned.gpa,
                len: panned.len,
                on: true
            },
        ]
    );
    v.lfb_written(log, None);
    assert_eq!(changes(&mut v), None, "the pan; the old log is ignored");
    assert_eq!(changes(&mut v), Some(alloc::vec![]));
    // BAR0 moved: the log moves with it; the mode off: the log stops.
    v.config_write(0x10, &0xD000_0000u32.to_le_bytes(), &mut cfg);
    let moved = LfbLog {
        gpa: 0xD001_0000,
        ..panned
    };
    assert_eq!(
        queue.take(),
        [
            DirtyLog {
                gpa: panned.gpa,
                len: panned.len,
                on: false
            },
            DirtyLog {
                gpa: moved.gpa,
                len: moved.len,
                on: true
            },
        ]
    );
    dispi(&mut v, vbe::ENABLE, 0);
    assert_eq!(
        queue.take(),
        [DirtyLog {
            gpa: moved.gpa,
            len: moved.len,
            on: false
        }]
    );
    assert_eq!(v.lfb_log(), None);
}
