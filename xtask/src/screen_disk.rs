//! The `screendisk` boot disk's parameter block
//! (`crates/test-disks/src/bin/screendisk.rs`): which step the disk runs
//! (the VBE mode and its pattern, mode 13h, or the screen bench) and the
//! bench's counts. The image as built runs the VBE step
//! (tests/vms/screendisk.cfg); the mode-13h test and `cargo xtask bench`
//! boot copies with other parameters.

use std::path::Path;

/// The image's name: a built-in disk image (`iso::TEST_DISKS`).
pub const IMAGE: &str = "screendisk";

/// Where the parameter block lies in the image: the start of sector 1.
pub const PARAMS_AT: usize = 512;
/// What the block starts with.
pub const MAGIC: &[u8; 8] = b"KEELSCRN";

/// What the disk does once booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// 1024x768x32 through INT 10h AX=4F00h-4F03h, the VBE test pattern.
    Vbe,
    /// Mode 13h through INT 10h AH=00h, a pattern in the chain-4 window.
    Mode13h,
    /// The screen bench: scrolls of the 80x25 text screen, fills of the
    /// 1024x768x32 framebuffer, each timed.
    Bench,
}

impl Step {
    fn code(self) -> u16 {
        match self {
            Step::Vbe => 0,
            Step::Mode13h => 1,
            Step::Bench => 2,
        }
    }
}

/// The parameter block's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub step: Step,
    /// Fills of the framebuffer (the bench).
    pub fills: u16,
    /// Scrolls of the text screen (the bench).
    pub scrolls: u16,
}

impl Params {
    /// A step without bench counts.
    pub fn step(step: Step) -> Params {
        Params {
            step,
            fills: 0,
            scrolls: 0,
        }
    }
}

/// `image` with `params` in its parameter block; an image without the
/// block (not a screendisk image) is refused.
pub fn with_params(image: &[u8], params: Params) -> Result<Vec<u8>, String> {
    let end = PARAMS_AT + MAGIC.len() + 6;
    if image.get(PARAMS_AT..PARAMS_AT + MAGIC.len()) != Some(&MAGIC[..]) || image.len() < end {
        return Err(format!(
            "not a {IMAGE} image: no {} parameter block at byte {PARAMS_AT}",
            String::from_utf8_lossy(MAGIC)
        ));
    }
    let mut out = image.to_vec();
    let mut at = PARAMS_AT + MAGIC.len();
    for v in [params.step.code(), params.fills, params.scrolls] {
        out[at..at + 2].copy_from_slice(&v.to_le_bytes());
        at += 2;
    }
    Ok(out)
}

/// Writes to `to` a copy of the built image `built` with `params`.
pub fn write_copy(built: &Path, to: &Path, params: Params) -> Result<(), String> {
    let image = std::fs::read(built).map_err(|e| {
        format!(
            "cannot read {} ({e}); build it with cargo xtask build",
            built.display()
        )
    })?;
    let out = with_params(&image, params).map_err(|e| format!("{}: {e}", built.display()))?;
    std::fs::write(to, out).map_err(|e| format!("cannot write {}: {e}", to.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Vec<u8> {
        let mut v = vec![0u8; 1024];
        v[PARAMS_AT..PARAMS_AT + 8].copy_from_slice(MAGIC);
        v
    }

    #[test]
    fn the_parameters_land_after_the_magic_little_endian() {
        let out = with_params(
            &image(),
            Params {
                step: Step::Bench,
                fills: 0x0102,
                scrolls: 300,
            },
        )
        .unwrap();
        assert_eq!(&out[PARAMS_AT + 8..PARAMS_AT + 14], &[2, 0, 2, 1, 44, 1]);
        assert_eq!(out.len(), 1024);
        assert_eq!(&out[..PARAMS_AT], &image()[..PARAMS_AT]);
        let m = with_params(&image(), Params::step(Step::Mode13h)).unwrap();
        assert_eq!(&m[PARAMS_AT + 8..PARAMS_AT + 14], &[1, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn an_image_without_the_block_is_refused() {
        let mut other = image();
        other[PARAMS_AT] = b'X';
        let e = with_params(&other, Params::step(Step::Vbe)).unwrap_err();
        assert!(e.contains("no KEELSCRN parameter block at byte 512"), "{e}");
        assert!(with_params(&image()[..PARAMS_AT + 10], Params::step(Step::Vbe)).is_err());
        assert!(with_params(&[], Params::step(Step::Vbe)).is_err());
    }
}
