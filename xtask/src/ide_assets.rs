//! The IDE guest images, built by xtask from Debian packages and cached under
//! `target/debian/ide/`; none of them is committed:
//!
//! - `debian-disk`: a raw disk image with an MBR (partition table written
//!   here; boot code from the `syslinux-common` package's `mbr.bin`), a FAT16
//!   partition made with `mformat`/`mcopy` (mtools, on the image file at an
//!   offset: no loop mounts) holding Debian's kernel, the IDE initramfs and a
//!   `syslinux.cfg`, with SYSLINUX installed by `syslinux --install
//!   --offset`; and a second partition of type 0xDA (non-filesystem data)
//!   whose first half holds a pattern the guest reads and whose second half
//!   the guest writes.
//! - `debian-vdisk`: a raw 2 MiB disk the VM sees as a virtio-blk disk,
//!   its first half xtask's pattern, its second half zeros the guest fills
//!   with random bytes through Debian's `virtio_blk`.
//! - `debian-cd`: an El Torito ISO made with `xorriso -as mkisofs` and
//!   ISOLINUX (`isolinux` package) booting the same kernel and initramfs,
//!   with a known file the guest reads.
//!
//! The initramfs holds busybox, the kernel modules of the IDE path (ata_piix,
//! sd_mod, sr_mod, isofs, vfat and what they depend on, from the kernel
//! package's `/lib/modules` tree; Debian builds them all as modules) and an
//! `/init` that checks the disk and the CD-ROM, the ACPI PCI interrupt links
//! and the interrupt controller, prints `N passed, M failed`
//! and powers off through ACPI. With `keel_test=bench keel_bench=D,P,R,W` on
//! the kernel command line (a copy of the disk from [`bench_disk`]) it runs no
//! checks but times reads of the disk with DMA and PIO, and reads and writes
//! of a virtio-blk scratch disk (`cargo xtask bench`); with
//! `keel_test=bench keel_bench_xen=R,W` (a VM with `xen_platform_pci = 1`)
//! it times xen-blkfront's reads of the booted disk and writes of a scratch
//! disk on the IDE primary slave instead.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::deps::{self, Tool};
use crate::guest_assets::{self, Debian};

pub const DEBIAN_DISK: &str = "debian-disk";
pub const DEBIAN_CD: &str = "debian-cd";
pub const DEBIAN_VDISK: &str = "debian-vdisk";
/// Sectors of `debian-vdisk`: [`PATTERN_SECTORS`] of xtask's pattern, as
/// many for the guest's random bytes.
pub const VDISK_SECTORS: u64 = 2 * PATTERN_SECTORS;

/// The host tools: mtools, SYSLINUX's installer and boot code, ISOLINUX,
/// xorriso, md5sum.
const TOOLS: &[Tool] = &[
    Tool {
        needs: "mformat",
        package: "mtools",
    },
    Tool {
        needs: "mcopy",
        package: "mtools",
    },
    Tool {
        needs: "syslinux",
        package: "syslinux",
    },
    Tool {
        needs: MBR_BIN,
        package: "syslinux-common",
    },
    Tool {
        needs: LDLINUX_C32,
        package: "syslinux-common",
    },
    Tool {
        needs: ISOLINUX_BIN,
        package: "isolinux",
    },
    Tool {
        needs: "xorriso",
        package: "xorriso",
    },
    Tool {
        needs: "md5sum",
        package: "coreutils",
    },
];

const MBR_BIN: &str = "/usr/lib/syslinux/mbr/mbr.bin";
const LDLINUX_C32: &str = "/usr/lib/syslinux/modules/bios/ldlinux.c32";
const ISOLINUX_BIN: &str = "/usr/lib/ISOLINUX/isolinux.bin";

/// Disk layout, in 512-byte sectors: 32 MiB in all, the FAT partition from
/// 1 MiB, the data partition after it.
pub const SECTOR: u64 = 512;
pub const DISK_SECTORS: u64 = 65536;
pub const FAT_START: u64 = 2048;
pub const FAT_SECTORS: u64 = 53248;
pub const DATA_START: u64 = FAT_START + FAT_SECTORS;
pub const DATA_SECTORS: u64 = 4096;
/// Sectors at the start of the data partition that xtask fills with
/// [`pattern`] `host`; the guest writes its own pattern into the next as many.
pub const PATTERN_SECTORS: u64 = 2048;
/// The geometry mformat and the MBR's CHS fields use.
const HEADS: u64 = 64;
const SECTORS_PER_TRACK: u64 = 32;

/// The string the guest writes to `KEEL.TXT` on the FAT partition.
pub const FAT_STRING: &str = "keel ide: written by the guest through ata_piix";
/// The file and string on the CD.
pub const CD_FILE: &str = "keel-cd.txt";
pub const CD_STRING: &str = "keel ide: read from the ATAPI CD-ROM";

/// The modules the IDE path needs, in load order; each is loaded after what
/// its `depends=` names. The CRC providers come first because crc-t10dif
/// and crc64-rocksoft ask the crypto API for them (their `softdep=`).
pub const MODULE_ROOTS: &[&str] = &[
    "crct10dif_generic",
    "crc64_rocksoft_generic",
    "ata_piix",
    "sd_mod",
    "sr_mod",
    "isofs",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "virtio_pci",
    "virtio_blk",
];

/// The modules of the Xen vbd path (xen-blkfront), loaded only in the
/// `xen` mode ([`XEN_MODE`]): on any other machine the module refuses to
/// load, which would stop `load_modules`.
pub const XEN_MODULE_ROOTS: &[&str] = &["xen_blkfront"];

/// The pattern xtask writes (`who` = `host`) and the one the guest writes
/// after it (`guest`): sector `i` is `keel WHO sector NNNNNN`, padded with
/// spaces to 511 bytes, then a newline. The guest makes both with awk.
pub fn pattern(who: &str, sectors: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity((sectors * SECTOR) as usize);
    for i in 0..sectors {
        out.extend_from_slice(format!("{:<511}\n", format!("keel {who} sector {i:06}")).as_bytes());
    }
    out
}

/// The initramfs's `/init` for the IDE images. The kernel command line
/// chooses what it checks: `keel_test=disk` (booted from the disk: the disk,
/// its partitions and the CD) or `keel_test=cd` (booted from the CD alone,
/// in PIC mode: [`CD_MODE`]); `keel_test=bench` measures instead ([`bench_mode`]).
pub const INIT_SCRIPT: &str = r#"#!/bin/sh
# Generated by cargo xtask (xtask/src/ide_assets.rs): Keel's IDE test.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mode=disk
grep -q "keel_test=cd" /proc/cmdline && mode=cd
grep -q "keel_test=bench" /proc/cmdline && mode=bench
grep -q "keel_test=virtio" /proc/cmdline && mode=virtio
grep -q "keel_test=xen" /proc/cmdline && mode=xen
# The disk SeaBIOS booted from: the IDE disk, or the virtio-blk one, or
# under Xen the same IDE disk as the vbd xen-blkfront finds after the
# kernel unplugged the emulated disks.
boot=/dev/sda
[ "$mode" = virtio ] && boot=/dev/vda
[ "$mode" = xen ] && boot=/dev/xvda
echo "PASS ide-init"
echo "ide-init: kernel $(uname -r), checking the $mode"
SHELL_CHECKS
# Waits up to 10 s for a block device.
wait_for() {
    i=0
    while [ ! -b "$1" ] && [ "$i" -lt 100 ]; do
        usleep 100000
        i=$((i + 1))
    done
    test -b "$1"
}
drop_caches() {
    sync
    echo 3 > /proc/sys/vm/drop_caches
}
pattern() {
    awk -v who="$1" -v n="$2" \
        'BEGIN { for (i = 0; i < n; i++) printf "%-511s\n", sprintf("keel %s sector %06d", who, i) }'
}
# The transfer mode libata set on each drive of port $1 (XFER_MW_DMA_2 on a
# PIIX3): a DMA mode means it reads and writes with bus-master DMA.
dma_mode() {
    found=0
    for d in /sys/class/ata_device/dev$1.*; do
        case "$(cat "$d/class")" in none | unknown) continue ;; esac
        xfer=$(cat "$d/xfer_mode")
        echo "ide-init: ${d##*/} ($(cat "$d/class")) transfers with $xfer" > /dev/console
        case "$xfer" in
        XFER_MW_DMA_* | XFER_UDMA_*) found=$((found + 1)) ;;
        *) return 1 ;;
        esac
    done
    test "$found" -gt 0
}
want_md5=$(cat /etc/keel/vmlinuz.md5)
kernel_md5() {
    test "$(md5sum "$1" | cut -d " " -f 1)" = "$want_md5"
}
read_host_pattern() {
    pattern host PATTERN_SECTORS > /tmp/host
    dd if=$1 of=/tmp/got bs=512 count=PATTERN_SECTORS && cmp /tmp/host /tmp/got
}
write_guest_pattern() {
    pattern guest PATTERN_SECTORS > /tmp/guest
    dd if=/tmp/guest of=${boot}2 bs=512 seek=PATTERN_SECTORS conv=fsync || return 1
    drop_caches
    dd if=${boot}2 of=/tmp/got bs=512 skip=PATTERN_SECTORS count=PATTERN_SECTORS &&
        cmp /tmp/guest /tmp/got
}
# Random bytes over the guest's half of the data partition, written and
# read back with O_DIRECT (multi-segment blkif requests).
xen_random() {
    head -c $((PATTERN_SECTORS * 512)) /dev/urandom > /tmp/random
    dd if=/tmp/random of=${boot}2 bs=64k seek=$((PATTERN_SECTORS / 128)) oflag=direct conv=fsync || return 1
    drop_caches
    dd if=${boot}2 of=/tmp/got bs=64k skip=$((PATTERN_SECTORS / 128)) count=$((PATTERN_SECTORS / 128)) iflag=direct &&
        cmp /tmp/random /tmp/got || return 1
    echo "ide-init: xen-random-md5 $(md5sum /tmp/random | cut -d " " -f 1)" > /dev/console
}
load_xen_modules() {
    for m in $(cat /etc/keel/xen-modules); do
        insmod "/lib/modules/$m" || return 1
    done
}
# Random bytes after xtask's pattern on the virtio disk, written and read
# back with O_DIRECT (multi-segment requests); their md5 goes to the
# console so the host test finds them in the image file.
virtio_random() {
    head -c $((PATTERN_SECTORS * 512)) /dev/urandom > /tmp/random
    dd if=/tmp/random of=/dev/vda bs=64k seek=$((PATTERN_SECTORS / 128)) oflag=direct conv=fsync || return 1
    drop_caches
    dd if=/dev/vda of=/tmp/got bs=64k skip=$((PATTERN_SECTORS / 128)) count=$((PATTERN_SECTORS / 128)) iflag=direct &&
        cmp /tmp/random /tmp/got || return 1
    echo "ide-init: virtio-random-md5 $(md5sum /tmp/random | cut -d " " -f 1)" > /dev/console
}
fat_kernel() {
    mount -t vfat -o ro "${boot}1" /mnt || return 1
    kernel_md5 /mnt/vmlinuz
    r=$?
    umount /mnt
    return $r
}
fat_write() {
    mount -t vfat /dev/sda1 /mnt || return 1
    echo "FAT_STRING" > /mnt/KEEL.TXT
    r=$?
    umount /mnt || return 1
    return $r
}
fat_read_back() {
    drop_caches
    mount -t vfat -o ro /dev/sda1 /mnt || return 1
    test "$(cat /mnt/KEEL.TXT)" = "FAT_STRING"
    r=$?
    umount /mnt
    return $r
}
cd_file() {
    mount -t iso9660 -o ro /dev/sr0 /cdrom || return 1
    test "$(cat /cdrom/CD_FILE)" = "CD_STRING"
    r=$?
    umount /cdrom
    return $r
}
cd_kernel() {
    mount -t iso9660 -o ro /dev/sr0 /cdrom || return 1
    kernel_md5 /cdrom/vmlinuz
    r=$?
    umount /cdrom
    return $r
}
# Reads the kernel from the disk and from the CD at the same time: both
# channels (IRQ 14 and 15) busy with DMA at once.
both_channels() {
    mount -t vfat -o ro /dev/sda1 /mnt || return 1
    if ! mount -t iso9660 -o ro /dev/sr0 /cdrom; then
        umount /mnt
        return 1
    fi
    drop_caches
    md5sum /mnt/vmlinuz > /tmp/md5.disk &
    md5sum /cdrom/vmlinuz > /tmp/md5.cd
    wait
    test "$(cut -d " " -f 1 /tmp/md5.disk)" = "$want_md5" &&
        test "$(cut -d " " -f 1 /tmp/md5.cd)" = "$want_md5"
    r=$?
    umount /mnt
    umount /cdrom
    return $r
}
# cargo xtask bench (keel_test=bench keel_bench=D,P,R,W): reads D MiB from
# the start of /dev/sda with O_DIRECT and bus-master DMA, reads R MiB from
# and writes W MiB to the virtio-blk scratch disk /dev/vda with O_DIRECT,
# reloads libata with dma=0, reads P MiB with PIO, prints
# "BENCH dma|pio|virtio-read|virtio-write N MiB T us MODE" per transfer (T
# from the guest's clock; MODE libata's xfer_mode, or virtio_blk) and powers
# off; no checks run.
now_us() {
    if [ -r /proc/timer_list ]; then
        awk '/^now at/ { printf "%d\n", $3 / 1000; exit }' /proc/timer_list
    else
        awk '{ printf "%d\n", $1 * 1000000 }' /proc/uptime
    fi
}
disk_xfer() {
    case "$1" in
    /dev/vd*)
        echo virtio_blk
        return
        ;;
    /dev/xvd*)
        # xenbus names its drivers by device type: vbd is xen-blkfront.
        if [ "$(basename "$(readlink "/sys/block/${1#/dev/}/device/driver")")" = vbd ]; then
            echo xen-blkfront
        else
            echo none
        fi
        return
        ;;
    esac
    for d in /sys/class/ata_device/dev*; do
        if [ "$(cat "$d/class")" = ata ]; then
            cat "$d/xfer_mode"
            return
        fi
    done
    echo none
}
# bench_io KIND DEVICE MiB read|write: MiB 1 MiB O_DIRECT transfers from the
# start of DEVICE, wrapping at its end.
bench_io() {
    left=$3
    size=$(($(cat "/sys/block/${2#/dev/}/size") / 2048))
    [ "$size" -gt 0 ] || return 1
    t0=$(now_us)
    while [ "$left" -gt 0 ]; do
        n=$left
        [ "$n" -gt "$size" ] && n=$size
        if [ "$4" = write ]; then
            dd if=/dev/zero of="$2" bs=1M count=$n oflag=direct 2>/dev/null || return 1
        else
            dd if="$2" of=/dev/null bs=1M count=$n iflag=direct 2>/dev/null || return 1
        fi
        left=$((left - n))
    done
    t1=$(now_us)
    echo "BENCH $1 $3 MiB $((t1 - t0)) us $(disk_xfer "$2")"
}
bench_fail() {
    echo "BENCH-FAIL $1"
    dmesg | tail -20
    poweroff -f
}
# Xen's machine (keel_bench_xen=R,W, xen_platform_pci = 1): Linux has
# unplugged the IDE disks; xen-blkfront reads R MiB from /dev/xvda, the
# booted disk, and writes W MiB to /dev/xvdb, the all-zero scratch disk on
# the IDE primary slave (the booted disk stays intact), the same way;
# "BENCH xen-read|xen-write N MiB T us xen-blkfront".
run_xen_bench() {
    load_modules || bench_fail "modules do not load"
    load_xen_modules || bench_fail "xen-blkfront does not load"
    wait_for /dev/xvda || bench_fail "no /dev/xvda"
    wait_for /dev/xvdb || bench_fail "no /dev/xvdb"
    [ -b /dev/sda ] && bench_fail "the IDE disk is still there"
    bench_io xen-read /dev/xvda "$1" read || bench_fail "xen-blkfront read"
    bench_io xen-write /dev/xvdb "$2" write || bench_fail "xen-blkfront write"
    echo "BENCH done"
    poweroff -f
}
run_bench() {
    set -- $(sed -n 's/.*keel_bench_xen=\([0-9]*\),\([0-9]*\).*/\1 \2/p' /proc/cmdline)
    [ -n "$2" ] && run_xen_bench "$1" "$2"
    set -- $(sed -n 's/.*keel_bench=\([0-9]*\),\([0-9]*\),\([0-9]*\),\([0-9]*\).*/\1 \2 \3 \4/p' /proc/cmdline)
    [ -n "$4" ] || bench_fail "no keel_bench=D,P,R,W on the command line"
    load_modules || bench_fail "modules do not load"
    wait_for /dev/sda || bench_fail "no /dev/sda"
    wait_for /dev/vda || bench_fail "no /dev/vda"
    bench_io dma /dev/sda "$1" read || bench_fail "DMA read"
    bench_io virtio-read /dev/vda "$3" read || bench_fail "virtio-blk read"
    bench_io virtio-write /dev/vda "$4" write || bench_fail "virtio-blk write"
    rmmod ata_piix && rmmod libata || bench_fail "cannot unload ata_piix and libata"
    i=0
    while [ -b /dev/sda ] && [ "$i" -lt 100 ]; do
        usleep 100000
        i=$((i + 1))
    done
    insmod "/lib/modules/$(grep '/libata.ko$' /etc/keel/modules)" dma=0 &&
        insmod "/lib/modules/$(grep '/ata_piix.ko$' /etc/keel/modules)" ||
        bench_fail "cannot load libata with dma=0"
    wait_for /dev/sda || bench_fail "no /dev/sda with dma=0"
    bench_io pio /dev/sda "$2" read || bench_fail "PIO read"
    echo "BENCH done"
    poweroff -f
}
# The ACPI PCI interrupt links LNKA-LNKD as the kernel found them: each
# configured for the IRQ SeaBIOS routed its PIRQ to (10 or 11), none
# disabled or on IRQ 0.
pci_links() {
    dmesg | grep "Interrupt link LNK[A-D]" > /tmp/links
    sed 's/^/ide-init: /' /tmp/links > /dev/console
    test "$(grep -c "Interrupt link" /tmp/links)" = 4 &&
        test "$(grep -Ec "Interrupt link LNK[A-D] configured for IRQ 1[01]$" /tmp/links)" = 4
}
# The controller the CD-ROM's IRQ 15 goes through: the IOAPIC, or with
# noapic on the command line the 8259A pair (XT-PIC).
irq_controller() {
    want=IO-APIC
    grep -q noapic /proc/cmdline && want=XT-PIC
    grep -E "^ *15:" /proc/interrupts > /tmp/irq15
    sed 's/^/ide-init: /' /tmp/irq15 > /dev/console
    grep -q "$want" /tmp/irq15
}
mkdir -p /mnt /cdrom
[ "$mode" = bench ] && run_bench
check modules load_modules
check ide-driver-ata-piix sh -c 'readlink /sys/bus/pci/devices/0000:00:01.1/driver | grep -q ata_piix'
if [ "$mode" = disk ]; then
    check disk-present wait_for /dev/sda
    check disk-partitions wait_for /dev/sda2
    check disk-capacity test "$(cat /sys/block/sda/size)" = DISK_SECTORS
    check disk-bus-master sh -c 'dmesg | grep -Eq "ata1: PATA max [A-Z]+[0-9/]+ cmd 0x1f0 ctl 0x3f6 bmdma 0x[0-9a-f]+ irq 14"'
    check disk-dma-mode dma_mode 1
    check disk-read-host-pattern read_host_pattern /dev/sda2
    check disk-write-guest-pattern write_guest_pattern
    check fat-kernel-md5 fat_kernel
    check virtio-present wait_for /dev/vda
    check virtio-driver sh -c 'readlink /sys/block/vda/device/driver | grep -q virtio_blk'
    check virtio-capacity test "$(cat /sys/block/vda/size)" = VDISK_SECTORS
    check virtio-msix sh -c 'grep -q "virtio0-req" /proc/interrupts'
    check virtio-read-host-pattern read_host_pattern /dev/vda
    check virtio-write-random virtio_random
    check fat-write fat_write
    check fat-read-back fat_read_back
fi
if [ "$mode" = xen ]; then
    check xen-unplug sh -c 'dmesg | grep -q "unplug emulated disks"'
    check xen-blkfront load_xen_modules
    check xen-disk-present wait_for /dev/xvda
    check xen-disk-partitions wait_for /dev/xvda2
    check xen-disk-capacity test "$(cat /sys/block/xvda/size)" = DISK_SECTORS
    check xen-read-host-pattern read_host_pattern /dev/xvda2
    check xen-write-guest-pattern write_guest_pattern
    check xen-write-random xen_random
    check fat-kernel-md5 fat_kernel
    check no-ide-disk test ! -b /dev/sda
fi
if [ "$mode" = virtio ]; then
    check virtio-present wait_for /dev/vda
    check virtio-driver sh -c 'readlink /sys/block/vda/device/driver | grep -q virtio_blk'
    check virtio-boot-partitions wait_for /dev/vda2
    check virtio-boot-capacity test "$(cat /sys/block/vda/size)" = DISK_SECTORS
    check virtio-read-host-pattern read_host_pattern /dev/vda2
    check fat-kernel-md5 fat_kernel
    check no-ide-disk test ! -b /dev/sda
else
    check cd-present wait_for /dev/sr0
    check cd-bus-master sh -c 'dmesg | grep -Eq "ata2: PATA max [A-Z]+[0-9/]+ cmd 0x170 ctl 0x376 bmdma 0x[0-9a-f]+ irq 15"'
    check cd-dma-mode dma_mode 2
    check cd-file cd_file
    check cd-kernel-md5 cd_kernel
fi
[ "$mode" = disk ] && check both-channels-at-once both_channels
check pci-interrupt-links pci_links
check interrupt-controller irq_controller
echo "$passed passed, $failed failed"
if [ "$failed" != 0 ]; then
    dmesg | grep -i -E "ata|scsi|sd |sr |fat|isofs|error|i/o" | tail -40
fi
sync
poweroff -f
"#;

/// [`INIT_SCRIPT`] with its placeholders filled in.
pub fn init_script() -> String {
    crate::guest_assets::with_shell_checks(INIT_SCRIPT)
        .replace("PATTERN_SECTORS", &PATTERN_SECTORS.to_string())
        .replace("VDISK_SECTORS", &VDISK_SECTORS.to_string())
        .replace("DISK_SECTORS", &DISK_SECTORS.to_string())
        .replace("DISK_MIB", &(DISK_SECTORS * SECTOR / (1 << 20)).to_string())
        .replace("FAT_STRING", FAT_STRING)
        .replace("CD_FILE", CD_FILE)
        .replace("CD_STRING", CD_STRING)
}

/// The `syslinux_cfg` mode of the CD: its boot runs Linux in PIC mode
/// (`noapic`: IRQs through the 8259A pair, and the ACPI interrupt model
/// `_PIC(0)`), while the disk's boot runs it in APIC mode, so the one pair
/// of Debian boots checks the PCI interrupt links and the IDE IRQs in both.
pub const CD_MODE: &str = "cd noapic";

/// The `syslinux_cfg` mode of a disk SeaBIOS boots through virtio-blk
/// alone ([`disk_with_mode`]): `/init` checks that Linux reads the same
/// disk through `virtio_blk` and that no IDE disk is there.
pub const VIRTIO_MODE: &str = "virtio";

/// The `syslinux_cfg` mode of the disk a VM with `xen_platform_pci = 1`
/// boots from IDE: `/init` checks that Linux unplugged the IDE disk and
/// reads and writes the same disk through xen-blkfront as `/dev/xvda`.
pub const XEN_MODE: &str = "xen";

/// How many checks pass when all do: disk mode, CD mode and virtio mode.
pub const DISK_CHECKS: u32 = 27;
pub const CD_CHECKS: u32 = 10;
pub const VIRTIO_CHECKS: u32 = 12;
pub const XEN_CHECKS: u32 = 20;

/// The SYSLINUX/ISOLINUX configuration: at once, on COM1, with `console=ttyS0`.
pub fn syslinux_cfg(mode: &str) -> String {
    format!(
        "# Generated by cargo xtask (xtask/src/ide_assets.rs).\n\
         SERIAL 0 115200\n\
         PROMPT 0\n\
         TIMEOUT 0\n\
         DEFAULT keel\n\
         LABEL keel\n  \
           LINUX /vmlinuz\n  \
           INITRD /initrd.gz\n  \
           APPEND console=ttyS0 panic=-1 loglevel=4 keel_test={mode}\n"
    )
}

/// The MiB one bench boot moves each way: read from the IDE disk with DMA
/// and with PIO, read from and written to the virtio-blk scratch disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BenchMib {
    pub dma: u32,
    pub pio: u32,
    pub virtio_read: u32,
    pub virtio_write: u32,
}

/// One bench boot: on the emulated machine (IDE and virtio-blk), or on a
/// VM with `xen_platform_pci = 1`, where Linux unplugs the IDE disks and
/// xen-blkfront reads `read` MiB of the booted disk (`/dev/xvda`) and
/// writes `write` MiB to the scratch disk on the IDE primary slave
/// (`/dev/xvdb`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchBoot {
    Emulated(BenchMib),
    Xen { read: u32, write: u32 },
}

/// The `syslinux_cfg` mode of a bench boot: `/init` moves what `boot`
/// names and prints a `BENCH` line per transfer.
pub fn bench_mode(boot: BenchBoot) -> String {
    match boot {
        BenchBoot::Emulated(mib) => format!(
            "bench keel_bench={},{},{},{}",
            mib.dma, mib.pio, mib.virtio_read, mib.virtio_write
        ),
        BenchBoot::Xen { read, write } => format!("bench keel_bench_xen={read},{write}"),
    }
}

/// A copy of `debian-disk` at `dest` whose `syslinux.cfg` boots the bench
/// mode of [`bench_mode`].
pub fn bench_disk(dest: &Path, boot: BenchBoot) -> Result<(), String> {
    disk_with_mode(dest, &bench_mode(boot))
}

/// A scratch disk of the bench at `dest` (virtio-blk, or the Xen boots'
/// IDE primary slave): as large as `debian-disk`, all zeros (no boot
/// signature, so SeaBIOS still boots the IDE disk); the bench reads it and
/// overwrites it.
pub fn bench_scratch_disk(dest: &Path) -> Result<(), String> {
    let f = fs::File::create(dest).map_err(|e| io("cannot create", dest, e))?;
    f.set_len(DISK_SECTORS * SECTOR)
        .map_err(|e| io("cannot size", dest, e))
}

/// A copy of `debian-disk` at `dest` whose `syslinux.cfg` boots `mode`
/// (see [`syslinux_cfg`]): the same MBR, SYSLINUX, kernel and initramfs, the
/// file replaced with mtools at the partition's offset.
pub fn disk_with_mode(dest: &Path, mode: &str) -> Result<(), String> {
    let disk = images()?.disk;
    fs::copy(&disk, dest).map_err(|e| io("cannot copy", &disk, e))?;
    let cfg = dest.with_extension("syslinux.cfg");
    fs::write(&cfg, syslinux_cfg(mode)).map_err(|e| io("cannot write", &cfg, e))?;
    let fs_at = format!("{}@@{}", dest.display(), FAT_START * SECTOR);
    let copied = run(Command::new("mcopy")
        .args(["-o", "-i", &fs_at])
        .arg(&cfg)
        .arg("::syslinux.cfg"));
    let _ = fs::remove_file(&cfg);
    copied
}

fn io(what: &str, p: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", p.display())
}

/// `target/debian/ide`.
fn ide_dir() -> Result<PathBuf, String> {
    Ok(guest_assets::debian_dir()?.join("ide"))
}

/// The file for `debian-disk` or `debian-cd`, built when missing or stale;
/// `None` for other names.
pub fn resolve(name: &str) -> Option<Result<PathBuf, String>> {
    match name {
        DEBIAN_DISK => Some(images().map(|i| i.disk)),
        DEBIAN_CD => Some(images().map(|i| i.cd)),
        DEBIAN_VDISK => Some(images().map(|i| i.vdisk)),
        _ => None,
    }
}

#[derive(Debug, Clone)]
struct Images {
    disk: PathBuf,
    cd: PathBuf,
    vdisk: PathBuf,
}

fn images() -> Result<Images, String> {
    static DONE: OnceLock<Result<Images, String>> = OnceLock::new();
    DONE.get_or_init(build_images).clone()
}

/// What the images are made from; they are rebuilt when it changes.
fn recipe(d: &Debian, modules: &[String]) -> String {
    format!(
        "layout {DISK_SECTORS} {FAT_START} {FAT_SECTORS} {DATA_START} {DATA_SECTORS} {VDISK_SECTORS}\n\
         kernel {}\nmodules {}\n{}\n{}\n{}",
        d.version,
        modules.join(" "),
        init_script(),
        syslinux_cfg("disk"),
        syslinux_cfg(CD_MODE)
    )
}

fn build_images() -> Result<Images, String> {
    let d = guest_assets::debian()?;
    let dir = ide_dir()?;
    let modules_dir = d.root.join("lib/modules").join(&d.version);
    let modules = module_load_order(&modules_dir, MODULE_ROOTS)?;
    let xen_modules: Vec<String> = module_load_order(&modules_dir, XEN_MODULE_ROOTS)?
        .into_iter()
        .filter(|m| !modules.contains(m))
        .collect();
    let all: Vec<String> = modules.iter().chain(&xen_modules).cloned().collect();
    let recipe = recipe(&d, &all);
    let disk = dir.join("disk.img");
    let cd = dir.join("cd.iso");
    let vdisk = dir.join("vdisk.img");
    let stamp = dir.join("recipe");
    if disk.is_file()
        && cd.is_file()
        && vdisk.is_file()
        && fs::read_to_string(&stamp).is_ok_and(|s| s == recipe)
    {
        return Ok(Images { disk, cd, vdisk });
    }
    deps::ensure(TOOLS)?;
    let step =
        crate::progress::Step::new("Debian IDE images (debian-disk, debian-cd, debian-vdisk)");
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| io("cannot clear", &dir, e))?;
    }
    fs::create_dir_all(&dir).map_err(|e| io("cannot create", &dir, e))?;

    // The initramfs: busybox, the modules, their load order, the kernel's md5.
    let md5 = md5sum(&d.kernel)?;
    let extra = vec![
        (
            "etc/keel/modules".to_string(),
            guest_assets::module_list(&modules),
        ),
        (
            "etc/keel/xen-modules".to_string(),
            guest_assets::module_list(&xen_modules),
        ),
        (
            "etc/keel/vmlinuz.md5".to_string(),
            format!("{md5}\n").into_bytes(),
        ),
    ];
    let initrd = dir.join("initrd.gz");
    let gz = guest_assets::modules_initramfs(&d, &init_script(), extra, &all)?;
    fs::write(&initrd, &gz).map_err(|e| io("cannot write", &initrd, e))?;

    build_disk(&disk, &d.kernel, &initrd, &dir)?;
    build_cd(&cd, &d.kernel, &initrd, &dir)?;
    let mut v = pattern("host", PATTERN_SECTORS);
    v.resize((VDISK_SECTORS * SECTOR) as usize, 0);
    fs::write(&vdisk, &v).map_err(|e| io("cannot write", &vdisk, e))?;
    fs::write(&stamp, &recipe).map_err(|e| io("cannot write", &stamp, e))?;
    step.done(&format!(
        "built {} and {} (kernel {}, {} modules)",
        disk.display(),
        cd.display(),
        d.version,
        modules.len()
    ));
    Ok(Images { disk, cd, vdisk })
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{shown} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn md5sum(file: &Path) -> Result<String, String> {
    let out = Command::new("md5sum")
        .arg(file)
        .output()
        .map_err(|e| format!("cannot run md5sum: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .filter(|h| out.status.success() && h.len() == 32)
        .map(str::to_string)
        .ok_or_else(|| format!("md5sum {} failed ({})", file.display(), out.status))
}

/// The raw disk: MBR, FAT16 partition with SYSLINUX, kernel, initramfs and
/// `syslinux.cfg`, and the data partition with [`pattern`] `host`.
fn build_disk(disk: &Path, kernel: &Path, initrd: &Path, dir: &Path) -> Result<(), String> {
    let boot_code = fs::read(MBR_BIN).map_err(|e| io("cannot read", Path::new(MBR_BIN), e))?;
    let mbr = mbr(
        &boot_code,
        0x4B45_454C,
        &[
            Partition {
                active: true,
                kind: 0x0E, // FAT16, LBA
                start: FAT_START,
                sectors: FAT_SECTORS,
            },
            Partition {
                active: false,
                kind: 0xDA, // non-filesystem data
                start: DATA_START,
                sectors: DATA_SECTORS,
            },
        ],
    )?;
    let mut image = vec![0u8; (DISK_SECTORS * SECTOR) as usize];
    image[..512].copy_from_slice(&mbr);
    let at = (DATA_START * SECTOR) as usize;
    let host = pattern("host", PATTERN_SECTORS);
    image[at..at + host.len()].copy_from_slice(&host);
    fs::write(disk, &image).map_err(|e| io("cannot write", disk, e))?;

    let offset = FAT_START * SECTOR;
    let fs_at = format!("{}@@{offset}", disk.display());
    run(Command::new("mformat")
        .args(["-i", &fs_at])
        .args(["-T", &FAT_SECTORS.to_string()])
        .args(["-H", &FAT_START.to_string()])
        .args(["-h", &HEADS.to_string()])
        .args(["-s", &SECTORS_PER_TRACK.to_string()])
        .args(["-N", "4b45454c", "-v", "KEEL", "::"]))?;
    let cfg = dir.join("syslinux.cfg");
    fs::write(&cfg, syslinux_cfg("disk")).map_err(|e| io("cannot write", &cfg, e))?;
    for (from, to) in [
        (kernel, "::vmlinuz"),
        (initrd, "::initrd.gz"),
        (&cfg, "::syslinux.cfg"),
    ] {
        run(Command::new("mcopy").args(["-i", &fs_at]).arg(from).arg(to))?;
    }
    run(Command::new("syslinux")
        .args(["--install", "--offset", &offset.to_string()])
        .arg(disk))?;
    Ok(())
}

/// The El Torito CD: ISOLINUX, kernel, initramfs and [`CD_FILE`].
fn build_cd(cd: &Path, kernel: &Path, initrd: &Path, dir: &Path) -> Result<(), String> {
    let staging = dir.join("cd.d");
    let isolinux = staging.join("isolinux");
    fs::create_dir_all(&isolinux).map_err(|e| io("cannot create", &isolinux, e))?;
    let copy = |from: &Path, to: &Path| {
        fs::copy(from, to)
            .map(drop)
            .map_err(|e| io("cannot copy", from, e))
    };
    copy(Path::new(ISOLINUX_BIN), &isolinux.join("isolinux.bin"))?;
    copy(Path::new(LDLINUX_C32), &isolinux.join("ldlinux.c32"))?;
    copy(kernel, &staging.join("vmlinuz"))?;
    copy(initrd, &staging.join("initrd.gz"))?;
    let write = |p: PathBuf, s: String| fs::write(&p, s).map_err(|e| io("cannot write", &p, e));
    write(isolinux.join("isolinux.cfg"), syslinux_cfg(CD_MODE))?;
    write(staging.join(CD_FILE), format!("{CD_STRING}\n"))?;
    run(Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-R", "-V", "KEELCD"])
        .args(["-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat"])
        .args(["-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"])
        .arg("-o")
        .arg(cd)
        .arg(&staging))?;
    fs::remove_dir_all(&staging).map_err(|e| io("cannot clear", &staging, e))
}

/// One primary partition.
#[derive(Debug, Clone, Copy)]
pub struct Partition {
    pub active: bool,
    pub kind: u8,
    pub start: u64,
    pub sectors: u64,
}

/// CHS of an LBA for the MBR (cylinder, head, sector packed as the three
/// bytes of a partition entry), or the 1023/254/63 marker past CHS reach.
fn chs(lba: u64) -> [u8; 3] {
    let c = lba / (HEADS * SECTORS_PER_TRACK);
    if c > 1023 {
        return [254, 0xFF, 0xFF];
    }
    let h = (lba / SECTORS_PER_TRACK) % HEADS;
    let s = lba % SECTORS_PER_TRACK + 1;
    [h as u8, (s as u8) | (((c >> 8) as u8 & 3) << 6), c as u8]
}

/// A master boot record: `boot_code` (at most 440 bytes), the disk
/// signature, four partition entries from offset 446, 0x55 0xAA.
pub fn mbr(boot_code: &[u8], signature: u32, parts: &[Partition]) -> Result<[u8; 512], String> {
    if boot_code.len() > 440 {
        return Err(format!(
            "MBR boot code is {} bytes; at most 440 fit",
            boot_code.len()
        ));
    }
    if parts.len() > 4 {
        return Err("an MBR holds at most four primary partitions".into());
    }
    let mut m = [0u8; 512];
    m[..boot_code.len()].copy_from_slice(boot_code);
    m[440..444].copy_from_slice(&signature.to_le_bytes());
    for (i, p) in parts.iter().enumerate() {
        let (Ok(start), Ok(count)) = (u32::try_from(p.start), u32::try_from(p.sectors)) else {
            return Err(format!("partition {} is past the MBR's 2 TiB", i + 1));
        };
        let e = &mut m[446 + 16 * i..462 + 16 * i];
        e[0] = if p.active { 0x80 } else { 0 };
        e[1..4].copy_from_slice(&chs(p.start));
        e[4] = p.kind;
        e[5..8].copy_from_slice(&chs(p.start + p.sectors - 1));
        e[8..12].copy_from_slice(&start.to_le_bytes());
        e[12..16].copy_from_slice(&count.to_le_bytes());
    }
    m[510] = 0x55;
    m[511] = 0xAA;
    Ok(m)
}

/// A module name as the kernel compares them: `-` and `_` are the same.
fn module_key(name: &str) -> String {
    name.replace('-', "_")
}

/// The `.ko` files under `dir/kernel`, by module name, as paths relative to `dir`.
fn module_index(dir: &Path) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.join("kernel")];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).map_err(|e| io("cannot list", &d, e))? {
            let p = e.map_err(|e| io("cannot list", &d, e))?.path();
            if p.is_dir() {
                todo.push(p);
            } else if let Some(stem) = p.file_name().and_then(|n| n.to_str()) {
                if let Some(name) = stem.strip_suffix(".ko") {
                    let rel = p.strip_prefix(dir).expect("under dir");
                    out.insert(module_key(name), rel.to_string_lossy().to_string());
                }
            }
        }
    }
    Ok(out)
}

/// The modules for `roots` and everything they depend on, as paths relative
/// to `dir` (`/lib/modules/<version>`), each after its dependencies. A root
/// built into the kernel (`modules.builtin`) is skipped.
pub fn module_load_order(dir: &Path, roots: &[&str]) -> Result<Vec<String>, String> {
    let index = module_index(dir)?;
    let builtin_file = dir.join("modules.builtin");
    let builtin: Vec<String> = fs::read_to_string(&builtin_file)
        .map_err(|e| io("cannot read", &builtin_file, e))?
        .lines()
        .filter_map(|l| l.rsplit('/').next()?.strip_suffix(".ko").map(module_key))
        .collect();
    let mut order = Vec::new();
    let mut done: Vec<String> = Vec::new();
    fn visit(
        name: &str,
        dir: &Path,
        index: &BTreeMap<String, String>,
        builtin: &[String],
        done: &mut Vec<String>,
        order: &mut Vec<String>,
        depth: usize,
    ) -> Result<(), String> {
        let key = module_key(name);
        if done.contains(&key) || builtin.contains(&key) {
            return Ok(());
        }
        if depth > 32 {
            return Err(format!("module dependencies loop through {name}"));
        }
        let rel = index.get(&key).ok_or_else(|| {
            format!(
                "the kernel has no module {name} in {} and does not build it in",
                dir.display()
            )
        })?;
        let p = dir.join(rel);
        let bytes = fs::read(&p).map_err(|e| io("cannot read", &p, e))?;
        let info = modinfo(&bytes).map_err(|e| format!("{}: {e}", p.display()))?;
        let deps = info
            .iter()
            .find_map(|(k, v)| (k == "depends").then_some(v.clone()))
            .unwrap_or_default();
        for dep in deps.split(',').filter(|d| !d.is_empty()) {
            visit(dep, dir, index, builtin, done, order, depth + 1)?;
        }
        done.push(key);
        order.push(rel.clone());
        Ok(())
    }
    for root in roots {
        visit(root, dir, &index, &builtin, &mut done, &mut order, 0)?;
    }
    Ok(order)
}

/// The `key=value` strings of a module's `.modinfo` section (an ELF64
/// relocatable object: ELF spec, section header table).
pub fn modinfo(ko: &[u8]) -> Result<Vec<(String, String)>, String> {
    let u16_at = |o: usize| ko.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        ko.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    let u64_at = |o: usize| {
        ko.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    if ko.get(..6) != Some(b"\x7fELF\x02\x01") {
        return Err("not a little-endian ELF64 file (a compressed module?)".into());
    }
    let bad = || "truncated ELF section headers".to_string();
    let shoff = u64_at(0x28).ok_or_else(bad)? as usize;
    let shentsize = u16_at(0x3A).ok_or_else(bad)? as usize;
    let shnum = u16_at(0x3C).ok_or_else(bad)? as usize;
    let shstrndx = u16_at(0x3E).ok_or_else(bad)? as usize;
    let section = |i: usize| -> Option<(u32, usize, usize)> {
        let h = shoff.checked_add(i.checked_mul(shentsize)?)?;
        Some((
            u32_at(h)?,
            u64_at(h + 0x18)? as usize,
            u64_at(h + 0x20)? as usize,
        ))
    };
    let (_, stroff, strsize) = section(shstrndx).ok_or_else(bad)?;
    let names = ko.get(stroff..stroff + strsize).ok_or_else(bad)?;
    for i in 0..shnum {
        let (name, off, size) = section(i).ok_or_else(bad)?;
        let name = names.get(name as usize..).unwrap_or_default();
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        if &name[..end] != b".modinfo" {
            continue;
        }
        let data = ko.get(off..off + size).ok_or_else(bad)?;
        return Ok(data
            .split(|&b| b == 0)
            .filter_map(|s| {
                let s = std::str::from_utf8(s).ok()?;
                let (k, v) = s.split_once('=')?;
                Some((k.to_string(), v.to_string()))
            })
            .collect());
    }
    Err("no .modinfo section".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 object with a `.shstrtab` and a `.modinfo` section.
    fn ko(modinfo: &[u8]) -> Vec<u8> {
        let shstrtab = b"\0.shstrtab\0.modinfo\0";
        let mut f = vec![0u8; 64];
        f[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let strtab_at = f.len();
        f.extend_from_slice(shstrtab);
        let info_at = f.len();
        f.extend_from_slice(modinfo);
        let shoff = f.len();
        f[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        f[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
        f[0x3C..0x3E].copy_from_slice(&3u16.to_le_bytes());
        f[0x3E..0x40].copy_from_slice(&1u16.to_le_bytes());
        let sh = |f: &mut Vec<u8>, name: u32, off: usize, size: usize| {
            let mut h = [0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            f.extend_from_slice(&h);
        };
        sh(&mut f, 0, 0, 0);
        sh(&mut f, 1, strtab_at, shstrtab.len());
        sh(&mut f, 11, info_at, modinfo.len());
        f
    }

    #[test]
    fn modinfo_reads_depends() {
        let info = modinfo(&ko(b"license=GPL\0depends=scsi_mod,t10-pi\0name=sd_mod\0")).unwrap();
        assert!(info.contains(&("depends".into(), "scsi_mod,t10-pi".into())));
        assert!(info.contains(&("name".into(), "sd_mod".into())));
        assert!(modinfo(b"\xfd7zXZ\0").unwrap_err().contains("compressed"));
    }

    #[test]
    fn modules_load_after_their_dependencies() {
        let dir = std::env::temp_dir().join(format!("xtask-modules-{}", std::process::id()));
        let k = dir.join("kernel/drivers");
        fs::create_dir_all(&k).unwrap();
        fs::write(k.join("ata_piix.ko"), ko(b"depends=libata\0")).unwrap();
        fs::write(k.join("libata.ko"), ko(b"depends=scsi_mod\0")).unwrap();
        fs::write(k.join("scsi_mod.ko"), ko(b"depends=scsi-common\0")).unwrap();
        fs::write(k.join("scsi_common.ko"), ko(b"depends=\0")).unwrap();
        fs::write(k.join("sd_mod.ko"), ko(b"depends=scsi_mod\0")).unwrap();
        fs::write(dir.join("modules.builtin"), "kernel/fs/isofs/isofs.ko\n").unwrap();
        let order = module_load_order(&dir, &["ata_piix", "sd_mod", "isofs"]).unwrap();
        assert_eq!(
            order,
            [
                "kernel/drivers/scsi_common.ko",
                "kernel/drivers/scsi_mod.ko",
                "kernel/drivers/libata.ko",
                "kernel/drivers/ata_piix.ko",
                "kernel/drivers/sd_mod.ko",
            ]
        );
        let e = module_load_order(&dir, &["sr_mod"]).unwrap_err();
        assert!(e.contains("no module sr_mod"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mbr_entries_and_signature() {
        let m = mbr(
            &[0xFA; 440],
            0x4B45_454C,
            &[
                Partition {
                    active: true,
                    kind: 0x0E,
                    start: 2048,
                    sectors: 53248,
                },
                Partition {
                    active: false,
                    kind: 0xDA,
                    start: 55296,
                    sectors: 4096,
                },
            ],
        )
        .unwrap();
        assert_eq!(&m[440..444], b"LEEK");
        assert_eq!(&m[510..], [0x55, 0xAA]);
        // 2048 = cylinder 1, head 0, sector 1 at 64 heads x 32 sectors.
        assert_eq!(&m[446..454], [0x80, 0, 1, 1, 0x0E, 63, 32, 26]);
        assert_eq!(&m[454..462], [0, 8, 0, 0, 0, 0xD0, 0, 0]);
        assert_eq!(m[462 + 4], 0xDA);
        assert_eq!(&m[462 + 8..462 + 12], 55296u32.to_le_bytes());
        assert_eq!(&m[478..510], [0; 32]);
        assert!(mbr(&[0; 441], 0, &[]).is_err());
        assert_eq!(chs(1024 * 64 * 32), [254, 0xFF, 0xFF]);
    }

    #[test]
    fn patterns_are_what_the_guest_makes() {
        let p = pattern("host", 3);
        assert_eq!(p.len(), 1536);
        assert!(p.starts_with(b"keel host sector 000000 "));
        assert_eq!(p[511], b'\n');
        assert!(p[512..].starts_with(b"keel host sector 000001 "));
        assert!(INIT_SCRIPT.contains(r#"sprintf("keel %s sector %06d", who, i)"#));
    }

    #[test]
    fn bench_modes_name_their_machine() {
        let mib = BenchMib {
            dma: 256,
            pio: 16,
            virtio_read: 0,
            virtio_write: 8,
        };
        assert_eq!(
            bench_mode(BenchBoot::Emulated(mib)),
            "bench keel_bench=256,16,0,8"
        );
        // A Xen boot that moves nothing still runs the Xen path.
        assert_eq!(
            bench_mode(BenchBoot::Xen { read: 0, write: 0 }),
            "bench keel_bench_xen=0,0"
        );
        assert!(syslinux_cfg(&bench_mode(BenchBoot::Xen {
            read: 256,
            write: 128
        }))
        .contains("keel_test=bench keel_bench_xen=256,128\n"));
        // /init reads keel_bench_xen= before keel_bench=, whose pattern
        // (`keel_bench=` then digits) does not match it.
        let s = init_script();
        let xen = s.find("keel_bench_xen=\\([0-9]*\\)").expect("xen sed");
        let emulated = s.find("keel_bench=\\([0-9]*\\)").expect("emulated sed");
        assert!(xen < emulated);
        assert!(s.contains("bench_io xen-read /dev/xvda"));
        assert!(s.contains("bench_io xen-write /dev/xvdb"));
    }

    #[test]
    fn init_script_placeholders_are_filled() {
        let s = init_script();
        for p in [
            "PATTERN_SECTORS",
            "DISK_SECTORS",
            "DISK_MIB",
            "FAT_STRING",
            "CD_FILE",
            "CD_STRING",
        ] {
            assert!(!s.contains(p), "{p}");
        }
        assert!(s.contains("poweroff -f"));
        // The checks of each mode: the lines between `if [ "$mode" = M ]`
        // (or its `else`) and the matching `fi` run in mode M only.
        let count = |mode: &str| {
            let mut section: Option<(&str, bool)> = None;
            let mut n = 1; // ide-init is counted without a check line.
            for l in s.lines() {
                if let Some(m) = l.strip_prefix("if [ \"$mode\" = ") {
                    section = Some((m.split(' ').next().unwrap(), true));
                } else if l == "else" {
                    section = section.map(|(m, _)| (m, false));
                } else if l == "fi" {
                    section = None;
                } else if l.trim().starts_with("check ") || l.contains("&& check ") {
                    let runs = match section {
                        None => true,
                        Some((m, then)) => (m == mode) == then,
                    };
                    let guarded = l.split("&& check").next().unwrap();
                    if runs && (!l.contains("&& check ") || guarded.contains(mode)) {
                        n += 1;
                    }
                }
            }
            n
        };
        assert_eq!(count("disk"), DISK_CHECKS);
        assert_eq!(count("cd"), CD_CHECKS);
        assert_eq!(count("virtio"), VIRTIO_CHECKS);
        assert_eq!(count("xen"), XEN_CHECKS);
        assert!(syslinux_cfg(CD_MODE).contains("console=ttyS0"));
        assert!(syslinux_cfg(CD_MODE).contains("keel_test=cd noapic\n"));
    }
}
