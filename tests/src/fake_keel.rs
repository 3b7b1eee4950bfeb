//! A stand-in for Keel: a tiny multiboot2 ELF that writes fixed text to COM1
//! and a status to the debug-exit port. It lets the tests check the ISO
//! layout, GRUB, QEMU and the runner end to end without the hypervisor.

/// Physical address the image is loaded at (1 MiB, above GRUB's low memory).
const LOAD: u32 = 0x10_0000;
/// ELF32 header (52 bytes) plus one program header (32), rounded up to 8.
const MB2_HEADER: usize = 0x58;
/// Multiboot2 header: 16 bytes of fields and an 8-byte end tag.
const MB2_LEN: usize = 24;
const CODE: usize = MB2_HEADER + MB2_LEN;

fn put(f: &mut [u8], at: usize, bytes: &[u8]) {
    f[at..at + bytes.len()].copy_from_slice(bytes);
}

/// The ELF image: prints `serial` (no NUL bytes) on COM1, writes `status` to
/// port 0xF4 and halts.
pub fn image(serial: &str, status: u8) -> Vec<u8> {
    // 32-bit protected mode, as GRUB enters a multiboot2 kernel.
    #[rustfmt::skip]
    let code = |msg: u32| -> Vec<u8> {
        let m = msg.to_le_bytes();
        vec![
            0xBE, m[0], m[1], m[2], m[3], // mov esi, msg
            0xAC,                         // 1: lodsb
            0x84, 0xC0,                   // test al, al
            0x74, 0x07,                   // jz 2f
            0x66, 0xBA, 0xF8, 0x03,       // mov dx, 0x3f8
            0xEE,                         // out dx, al
            0xEB, 0xF4,                   // jmp 1b
            0x66, 0xBA, 0xF4, 0x00,       // 2: mov dx, 0xf4
            0xB0, status,                 // mov al, status
            0xEE,                         // out dx, al
            0xF4,                         // 3: hlt
            0xEB, 0xFD,                   // jmp 3b
        ]
    };
    let code_len = code(0).len();
    let msg = CODE + code_len;
    let mut f = vec![0u8; msg];
    f.extend(serial.bytes().filter(|&b| b != 0));
    f.push(0);
    let len = f.len() as u32;

    // ELF header (System V ABI, ELF32, i386, executable).
    put(&mut f, 0, &[0x7F, b'E', b'L', b'F', 1, 1, 1]);
    put(&mut f, 16, &2u16.to_le_bytes()); // e_type: EXEC
    put(&mut f, 18, &3u16.to_le_bytes()); // e_machine: 386
    put(&mut f, 20, &1u32.to_le_bytes()); // e_version
    put(&mut f, 24, &(LOAD + CODE as u32).to_le_bytes()); // e_entry
    put(&mut f, 28, &52u32.to_le_bytes()); // e_phoff
    put(&mut f, 40, &52u16.to_le_bytes()); // e_ehsize
    put(&mut f, 42, &32u16.to_le_bytes()); // e_phentsize
    put(&mut f, 44, &1u16.to_le_bytes()); // e_phnum
                                          // One PT_LOAD segment: the whole file at LOAD, read/write/execute.
    for (i, v) in [1, 0, LOAD, LOAD, len, len, 7, 0x1000]
        .into_iter()
        .enumerate()
    {
        put(&mut f, 52 + 4 * i, &v.to_le_bytes());
    }
    // Multiboot2 header (spec 3.1.1): magic, architecture 0 (i386), length,
    // checksum, then the end tag.
    let magic: u32 = 0xE852_50D6;
    let sum = magic.wrapping_add(MB2_LEN as u32);
    for (i, v) in [magic, 0, MB2_LEN as u32, 0u32.wrapping_sub(sum), 0, 8]
        .into_iter()
        .enumerate()
    {
        put(&mut f, MB2_HEADER + 4 * i, &v.to_le_bytes());
    }
    put(&mut f, CODE, &code(LOAD + msg as u32));
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let f = image("hi\n", 7);
        assert_eq!(&f[..4], b"\x7fELF");
        assert_eq!(MB2_HEADER % 8, 0);
        let words: Vec<u32> = (0..4)
            .map(|i| {
                let at = MB2_HEADER + 4 * i;
                u32::from_le_bytes(f[at..at + 4].try_into().unwrap())
            })
            .collect();
        assert_eq!(words[0], 0xE852_50D6);
        assert_eq!(words.iter().fold(0u32, |a, w| a.wrapping_add(*w)), 0);
        assert!(f.ends_with(b"hi\n\0"));
        assert_eq!(f[CODE + 22], 7, "the status byte of `mov al, status`");
    }
}
