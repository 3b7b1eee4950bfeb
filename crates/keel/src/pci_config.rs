//! PCI configuration mechanism #1, the legacy one every PC has (PCI Local Bus
//! Specification 3.0, 3.2.2.3.2): the address of a dword goes to
//! CONFIG_ADDRESS at port 0xCF8, the dword is read or written at
//! CONFIG_DATA, port 0xCFC. QEMU's pc machine has no ECAM, so this is how
//! Keel finds its host devices there.

/// CONFIG_ADDRESS.
pub const CONFIG_ADDRESS_PORT: u16 = 0xCF8;
/// CONFIG_DATA.
pub const CONFIG_DATA_PORT: u16 = 0xCFC;

/// The virtio vendor ID (virtio 1.2, 4.1.2).
pub const VIRTIO_VENDOR_ID: u16 = 0x1AF4;
/// A transitional virtio-blk device (virtio 1.2, 4.1.2.1).
pub const VIRTIO_BLK_TRANSITIONAL: u16 = 0x1001;
/// A modern (non-transitional) virtio-blk device: 0x1040 + device type 2.
pub const VIRTIO_BLK_MODERN: u16 = 0x1042;

/// A transitional virtio-net device (virtio 1.2, 4.1.2.1).
pub const VIRTIO_NET_TRANSITIONAL: u16 = 0x1000;
/// A modern (non-transitional) virtio-net device: 0x1040 + device type 1.
pub const VIRTIO_NET_MODERN: u16 = 0x1041;

/// QEMU's standard VGA (and Bochs'): a VGA with the Bochs VBE DISPI
/// interface and its linear framebuffer at BAR0.
pub const BOCHS_VGA_VENDOR_ID: u16 = 0x1234;
pub const BOCHS_VGA_DEVICE_ID: u16 = 0x1111;

/// Whether a vendor/device ID pair is a display adapter Keel can drive.
pub fn is_bochs_vga(vendor: u16, device: u16) -> bool {
    vendor == BOCHS_VGA_VENDOR_ID && device == BOCHS_VGA_DEVICE_ID
}

/// The CONFIG_ADDRESS value for the dword at `offset` of `bus:device.function`:
/// enable bit 31, bus in 23:16, device in 15:11, function in 10:8, the
/// dword-aligned register in 7:2.
pub fn config_address(bus: u8, device: u8, function: u8, offset: u8) -> u32 {
    (1 << 31)
        | (u32::from(bus) << 16)
        | (u32::from(device & 0x1F) << 11)
        | (u32::from(function & 0x7) << 8)
        | u32::from(offset & 0xFC)
}

/// Whether a vendor/device ID pair is a virtio-blk device Keel can drive.
pub fn is_virtio_blk(vendor: u16, device: u16) -> bool {
    vendor == VIRTIO_VENDOR_ID && matches!(device, VIRTIO_BLK_TRANSITIONAL | VIRTIO_BLK_MODERN)
}

/// Whether a vendor/device ID pair is a virtio-net device Keel can drive.
pub fn is_virtio_net(vendor: u16, device: u16) -> bool {
    vendor == VIRTIO_VENDOR_ID && matches!(device, VIRTIO_NET_TRANSITIONAL | VIRTIO_NET_MODERN)
}

/// Whether a transitional (rather than modern-only) virtio device ID
/// (virtio 1.2, 4.1.2.1: transitional IDs are 0x1000-0x103F).
pub fn is_transitional_virtio(device: u16) -> bool {
    (0x1000..0x1040).contains(&device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_follow_mechanism_one() {
        assert_eq!(config_address(0, 0, 0, 0), 0x8000_0000);
        assert_eq!(config_address(0, 4, 0, 0x10), 0x8000_2010);
        assert_eq!(config_address(1, 31, 7, 0xFF), 0x8001_FFFC);
        assert_eq!(config_address(0, 1, 1, 0x3E), 0x8000_093C, "dword-aligned");
    }

    #[test]
    fn virtio_blk_ids() {
        assert!(is_virtio_blk(0x1AF4, 0x1001));
        assert!(is_virtio_blk(0x1AF4, 0x1042));
        assert!(!is_virtio_blk(0x1AF4, 0x1000), "a network card");
        assert!(!is_virtio_blk(0x8086, 0x1001));
    }

    #[test]
    fn the_display_adapter_is_qemus_standard_vga() {
        assert!(is_bochs_vga(0x1234, 0x1111));
        assert!(!is_bochs_vga(0x1013, 0x00B8), "a Cirrus card");
        assert!(!is_bochs_vga(0x1AF4, 0x1050), "virtio-gpu");
    }

    #[test]
    fn virtio_net_ids() {
        assert!(is_virtio_net(0x1AF4, 0x1000));
        assert!(is_virtio_net(0x1AF4, 0x1041));
        assert!(!is_virtio_net(0x1AF4, 0x1001), "a block device");
        assert!(!is_virtio_net(0x1AF4, 0x1042), "a modern block device");
        assert!(!is_virtio_net(0x8086, 0x100E), "an e1000");
        assert!(is_transitional_virtio(0x1000) && is_transitional_virtio(0x1001));
        assert!(!is_transitional_virtio(0x1041));
    }
}
