//! The data a CD/DVD-ROM returns for the SCSI commands it answers: sense
//! data (SPC-4 4.5.3, fixed format), INQUIRY (SPC-4 6.4.2), READ CAPACITY
//! (MMC-6 6.23), READ TOC/PMA/ATIP formats 0000b and 0001b (MMC-6 6.26.3),
//! mode pages 01h and 2Ah (MMC-6 7.3, 7.10 of MMC-3), GET CONFIGURATION
//! (MMC-6 6.6, features 5.3) and GET EVENT STATUS NOTIFICATION's media class
//! (MMC-6 6.7). Pure functions of the device state, so each layout is tested
//! byte for byte.

use alloc::vec;
use alloc::vec::Vec;

/// A CD-ROM block (MMC-6 4.2.3.2: mode 1 user data).
pub const BLOCK_SIZE: u64 = 2048;
/// Above this many blocks a disc cannot be a CD (80 minutes at 75 blocks
/// a second); the drive reports it as a DVD-ROM.
pub const CD_MAX_BLOCKS: u64 = 80 * 60 * 75;

/// SCSI operation codes (SPC-4, MMC-6).
pub mod op {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const INQUIRY: u8 = 0x12;
    pub const START_STOP_UNIT: u8 = 0x1B;
    pub const PREVENT_ALLOW_MEDIUM_REMOVAL: u8 = 0x1E;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const READ_TOC_PMA_ATIP: u8 = 0x43;
    pub const GET_CONFIGURATION: u8 = 0x46;
    pub const GET_EVENT_STATUS_NOTIFICATION: u8 = 0x4A;
    pub const MODE_SENSE_10: u8 = 0x5A;
    pub const READ_12: u8 = 0xA8;
}

/// Sense key, additional sense code and qualifier (SPC-4 4.5.6, annex D).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
}

impl Sense {
    const fn new(key: u8, asc: u8, ascq: u8) -> Sense {
        Sense { key, asc, ascq }
    }
    pub const NO_SENSE: Sense = Sense::new(0x0, 0x00, 0x00);
    pub const MEDIUM_NOT_PRESENT: Sense = Sense::new(0x2, 0x3A, 0x00);
    pub const UNRECOVERED_READ_ERROR: Sense = Sense::new(0x3, 0x11, 0x00);
    pub const INVALID_COMMAND_OPERATION_CODE: Sense = Sense::new(0x5, 0x20, 0x00);
    pub const LBA_OUT_OF_RANGE: Sense = Sense::new(0x5, 0x21, 0x00);
    pub const INVALID_FIELD_IN_CDB: Sense = Sense::new(0x5, 0x24, 0x00);
    pub const SAVING_PARAMETERS_NOT_SUPPORTED: Sense = Sense::new(0x5, 0x39, 0x00);
    pub const MEDIUM_REMOVAL_PREVENTED: Sense = Sense::new(0x5, 0x53, 0x02);
    /// NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED.
    pub const MEDIUM_MAY_HAVE_CHANGED: Sense = Sense::new(0x6, 0x28, 0x00);
    pub const ABORTED_COMMAND: Sense = Sense::new(0xB, 0x00, 0x00);
}

/// Media event codes (MMC-6 table 133).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    NoChange = 0,
    NewMedia = 2,
    MediaRemoval = 3,
}

/// Big-endian u16 at `b[i..i+2]`.
pub fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

/// Big-endian u32 at `b[i..i+4]`.
pub fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Fixed-format sense data, 18 bytes (SPC-4 4.5.3).
pub fn request_sense(s: Sense) -> Vec<u8> {
    let mut b = vec![0u8; 18];
    b[0] = 0x70;
    b[2] = s.key;
    b[7] = 10;
    b[12] = s.asc;
    b[13] = s.ascq;
    b
}

/// Standard INQUIRY data, 36 bytes: a removable CD/DVD device.
pub fn inquiry() -> Vec<u8> {
    let mut b = vec![0u8; 36];
    b[0] = 0x05; // peripheral device type: CD/DVD
    b[1] = 0x80; // RMB: removable
    b[2] = 0x05; // SPC-3
    b[3] = 0x02; // response data format 2
    b[4] = 31; // additional length
    b[8..16].copy_from_slice(b"KEEL    ");
    b[16..32].copy_from_slice(b"Keel DVD-ROM    ");
    b[32..36].copy_from_slice(b"0.1 ");
    b
}

/// READ CAPACITY (10): last LBA and block length.
pub fn read_capacity(blocks: u64) -> Vec<u8> {
    let last = blocks.saturating_sub(1).min(u64::from(u32::MAX)) as u32;
    let mut b = Vec::with_capacity(8);
    b.extend_from_slice(&last.to_be_bytes());
    b.extend_from_slice(&(BLOCK_SIZE as u32).to_be_bytes());
    b
}

/// An address field of the TOC: LBA, or `00 M S F` (MMC-6 6.26.3.1: MSF
/// counts from 00:02:00, 150 frames before LBA 0).
fn toc_address(lba: u64, msf: bool) -> [u8; 4] {
    if !msf {
        return (lba.min(u64::from(u32::MAX)) as u32).to_be_bytes();
    }
    let f = lba + 150;
    let m = (f / (60 * 75)).min(255) as u8;
    [0, m, (f / 75 % 60) as u8, (f % 75) as u8]
}

/// READ TOC/PMA/ATIP for a single-session disc with one data track.
/// `None` for a format or starting track the disc cannot answer.
pub fn read_toc(blocks: u64, msf: bool, format: u8, track: u8) -> Option<Vec<u8>> {
    // Track descriptor: reserved, ADR 1 / control 4 (data track), track, reserved, address.
    let desc = |t: u8, lba: u64| {
        let mut d = vec![0, 0x14, t, 0];
        d.extend_from_slice(&toc_address(lba, msf));
        d
    };
    let mut b = vec![0, 0, 1, 1];
    match format {
        0 => {
            match track {
                0 | 1 => b.extend(desc(1, 0)),
                0xAA => {}
                _ => return None,
            }
            b.extend(desc(0xAA, blocks));
        }
        // Multi-session information: the first track of the last session.
        1 => b.extend(desc(1, 0)),
        _ => return None,
    }
    let len = (b.len() - 2) as u16;
    b[..2].copy_from_slice(&len.to_be_bytes());
    Some(b)
}

/// MODE SENSE (10) for `page` (3Fh: all) with page control `pc` (0
/// current, 1 changeable, 2 default); `None` for a page the drive lacks.
pub fn mode_sense(page: u8, pc: u8, locked: bool) -> Option<Vec<u8>> {
    let changeable = pc == 1;
    // Read-write error recovery parameters (page 01h): read retry count 5.
    let recovery = || {
        let mut p = vec![0u8; 12];
        p[0] = 0x01;
        p[1] = 0x0A;
        if !changeable {
            p[3] = 5;
        }
        p
    };
    // CD/DVD capabilities and mechanical status (page 2Ah, MMC-3 5.5.10).
    let capabilities = || {
        let mut p = vec![0u8; 22];
        p[0] = 0x2A;
        p[1] = 0x14;
        if !changeable {
            p[2] = 0x3B; // reads CD-R, CD-RW, DVD-ROM, DVD-R, DVD-RAM
            p[4] = 0x71; // audio play, mode 2 form 1 and 2, multi-session
                         // tray loading mechanism, eject, lock, lock state
            p[6] = 0x20 | 0x08 | 0x01 | if locked { 0x02 } else { 0 };
            p[8..10].copy_from_slice(&706u16.to_be_bytes()); // max speed, KB/s
            p[10..12].copy_from_slice(&256u16.to_be_bytes()); // volume levels
            p[12..14].copy_from_slice(&512u16.to_be_bytes()); // buffer, KiB
            p[14..16].copy_from_slice(&706u16.to_be_bytes()); // current speed
        }
        p
    };
    let mut b = vec![0u8; 8];
    match page {
        0x01 => b.extend(recovery()),
        0x2A => b.extend(capabilities()),
        0x3F => {
            b.extend(recovery());
            b.extend(capabilities());
        }
        _ => return None,
    }
    let len = (b.len() - 2) as u16;
    b[..2].copy_from_slice(&len.to_be_bytes());
    Some(b)
}

/// Profiles (MMC-6 table 89).
pub const PROFILE_CD_ROM: u16 = 0x0008;
pub const PROFILE_DVD_ROM: u16 = 0x0010;

/// The features of a read-only CD/DVD drive as (code, current, descriptor).
fn features(profile: u16) -> Vec<(u16, bool, Vec<u8>)> {
    let medium = profile != 0;
    let head = |code: u16, version: u8, current: bool, body: &[u8]| {
        let mut d = Vec::with_capacity(4 + body.len());
        d.extend_from_slice(&code.to_be_bytes());
        // Version, persistent (always present features), current.
        d.push(version << 2 | 0x02 | u8::from(current));
        d.push(body.len() as u8);
        d.extend_from_slice(body);
        d
    };
    let profile_entry = |p: u16| {
        let [hi, lo] = p.to_be_bytes();
        [hi, lo, u8::from(profile == p), 0]
    };
    let mut profiles = Vec::new();
    profiles.extend(profile_entry(PROFILE_DVD_ROM));
    profiles.extend(profile_entry(PROFILE_CD_ROM));
    let mut random = Vec::new();
    random.extend_from_slice(&(BLOCK_SIZE as u32).to_be_bytes());
    let blocking: u16 = if profile == PROFILE_DVD_ROM { 16 } else { 1 };
    random.extend_from_slice(&blocking.to_be_bytes());
    random.extend_from_slice(&[0, 0]);
    let mut remove_head = head(0x0003, 0, true, &[0x29, 0, 0, 0]);
    // Removable medium is current; not persistent (a drive may lose it).
    remove_head[2] &= !0x02;
    vec![
        (0x0000, true, head(0x0000, 0, true, &profiles)),
        // Core: physical interface 2 (ATAPI), DBE.
        (
            0x0001,
            true,
            head(0x0001, 2, true, &[0, 0, 0, 2, 1, 0, 0, 0]),
        ),
        (0x0003, true, remove_head),
        (0x0010, medium, head(0x0010, 0, medium, &random)),
        (
            0x001E,
            profile == PROFILE_CD_ROM,
            head(0x001E, 2, profile == PROFILE_CD_ROM, &[0, 0, 0, 0]),
        ),
        (
            0x001F,
            profile == PROFILE_DVD_ROM,
            head(0x001F, 0, profile == PROFILE_DVD_ROM, &[]),
        ),
    ]
}

/// GET CONFIGURATION with request type `rt` (0 all, 1 current, 2 one) from
/// feature `start`; `profile` 0 when there is no medium. `None` for RT 3.
pub fn get_configuration(rt: u8, start: u16, profile: u16) -> Option<Vec<u8>> {
    let mut b = vec![0u8; 8];
    b[6..8].copy_from_slice(&profile.to_be_bytes());
    for (code, current, desc) in features(profile) {
        let wanted = match rt {
            0 => code >= start,
            1 => code >= start && current,
            2 => code == start,
            _ => return None,
        };
        if wanted {
            b.extend(desc);
        }
    }
    let len = (b.len() - 4) as u32;
    b[..4].copy_from_slice(&len.to_be_bytes());
    Some(b)
}

/// GET EVENT STATUS NOTIFICATION (polled) for the requested `classes`
/// bitmap: the media class (bit 4) is the only one supported.
pub fn event_status(classes: u8, event: MediaEvent, present: bool) -> Vec<u8> {
    if classes & 0x10 == 0 {
        // No event available (NEA) for the requested classes.
        return vec![0, 2, 0x80, 0x10];
    }
    vec![
        0,
        6,
        0x04, // notification class: media
        0x10, // supported classes: media
        event as u8,
        if present { 0x02 } else { 0 },
        0,
        0,
    ]
}
