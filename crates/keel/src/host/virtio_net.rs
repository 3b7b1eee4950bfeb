//! The machine's own virtio-net NICs (virtio 1.2, 5.1), driven with the
//! `virtio-drivers` crate's `VirtIONetRaw` over its PCI transport, each the
//! uplink of one Keel switch ([`Bridge`]) that the VMs' e1000s join
//! (`vif = [ 'bridge=virtio0' ]`).
//!
//! Found at boot by the scan of PCI bus 0 in `host::virtio` (vendor 0x1AF4,
//! device 0x1000 transitional or 0x1041 modern); `virtioN` is the N-th NIC
//! in scan order (disks are counted separately). Polled, no host
//! interrupts: the VM loop calls [`Bridge::pump`] before each entry and
//! while a vCPU halts. Frames are copied between the NIC's own receive
//! buffers (and its transmit buffer) and the switch's queues: a guest never
//! sees the host device's memory, nor the device a guest's.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use device_model::net::{MacAddress, NetBackend, Switch, SwitchFull, SwitchPort, MAX_FRAME_LEN};
use device_model::ClockHandle;
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::pci::bus::PciRoot;
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::Transport;
use vm_config::HOST_NIC_PREFIX;

use super::pci::PortCam;
use super::virtio::{Found, KeelHal};

/// Host NICs Keel drives at most.
pub(super) const MAX_NICS: usize = 4;
/// DMA pages per NIC: two 16-entry virtqueues need two or three pages each.
pub(super) const DMA_PAGES_PER_NIC: usize = 8;
/// Entries of each virtqueue, and receive buffers kept posted.
const QUEUE_SIZE: usize = 16;
/// A receive buffer: the virtio-net header (at most 12 bytes, virtio 1.2
/// 5.1.6) and the longest frame Keel carries, rounded up.
const RX_BUF_LEN: usize = 2048;
/// Frames moved each way per [`Bridge::pump`]: a bounded piece of work
/// before each VM entry.
pub const FRAMES_PER_PASS: usize = 16;
/// VIRTIO_NET_F_STATUS (virtio 1.2, 5.1.3): the config's `status` field is valid.
const VIRTIO_NET_F_STATUS: u64 = 1 << 16;
/// VIRTIO_NET_S_LINK_UP in the config's `status` (virtio 1.2, 5.1.4).
const VIRTIO_NET_S_LINK_UP: u16 = 1;
/// Offset of `status` in virtio-net's device configuration (after `mac`).
const CONFIG_STATUS: usize = 6;

type Device = VirtIONetRaw<KeelHal, PciTransport, QUEUE_SIZE>;

/// One of the machine's virtio-net NICs.
pub struct VirtioNic {
    /// Declared first so it is dropped first: dropping it takes the queues
    /// away from the device before the buffers below are freed.
    device: Device,
    name: String,
    mac: MacAddress,
    /// Buffers the device writes received frames into; `posted[token]` is
    /// the buffer the device holds under that virtqueue token.
    rx_bufs: Vec<Box<[u8]>>,
    posted: [Option<usize>; QUEUE_SIZE],
    /// The frame being sent, copied out of the switch.
    tx_buf: Box<[u8]>,
    /// Set when the device misbehaved: the NIC is no longer used.
    broken: bool,
    stats: Stats,
}

/// What a NIC carried, logged when the VM is torn down.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    received: u64,
    sent: u64,
    send_errors: u64,
}

impl VirtioNic {
    /// The NIC's name (`virtio0`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Moves at most [`FRAMES_PER_PASS`] received frames from the device
    /// into `uplink`, then at most as many frames from `uplink` to the device.
    fn pump(&mut self, uplink: &mut SwitchPort) {
        if self.broken {
            return;
        }
        for _ in 0..FRAMES_PER_PASS {
            let Some(token) = self.device.poll_receive() else {
                break;
            };
            let Some(slot) = self.posted.get_mut(token as usize).and_then(Option::take) else {
                return self.fail(format!(
                    "the device completed receive token {token}, never posted"
                ));
            };
            let buf = &mut self.rx_bufs[slot];
            // SAFETY: `buf` is the buffer passed to receive_begin when it
            // returned `token`; it lives in self and was not touched since.
            match unsafe { self.device.receive_complete(token, buf) } {
                Ok((header, len)) => {
                    if let Some(frame) = buf.get(header..header.saturating_add(len)) {
                        uplink.send(frame);
                        self.stats.received += 1;
                    }
                }
                Err(e) => return self.fail(format!("completing a receive failed: {e}")),
            }
            if let Err(e) = self.post(slot) {
                return self.fail(e);
            }
        }
        for _ in 0..FRAMES_PER_PASS {
            let Some(len) = uplink.receive(&mut self.tx_buf) else {
                break;
            };
            match self.device.send(&self.tx_buf[..len]) {
                Ok(()) => self.stats.sent += 1,
                Err(_) => self.stats.send_errors += 1,
            }
        }
    }

    /// Hands receive buffer `slot` to the device.
    fn post(&mut self, slot: usize) -> Result<(), String> {
        // SAFETY: the buffer lives in self, outlives the device's use of it
        // (the device is dropped first), and is not accessed until
        // poll_receive returns the token and receive_complete is called.
        let token = unsafe { self.device.receive_begin(&mut self.rx_bufs[slot]) }
            .map_err(|e| format!("posting a receive buffer failed: {e}"))?;
        match self.posted.get_mut(token as usize) {
            Some(p @ None) => {
                *p = Some(slot);
                Ok(())
            }
            _ => Err(format!(
                "the device's receive token {token} is already in use"
            )),
        }
    }

    fn fail(&mut self, why: String) {
        log::error!("host NIC {}: {why}; the NIC is no longer used", self.name);
        self.broken = true;
    }
}

impl Drop for VirtioNic {
    /// The VM is gone: say what the NIC carried.
    fn drop(&mut self) {
        let s = self.stats;
        log::info!(
            "host NIC {}: {} frames received, {} sent, {} send errors",
            self.name,
            s.received,
            s.sent,
            s.send_errors
        );
    }
}

/// A host NIC and the Keel switch it is the uplink of: VMs' NICs join the
/// switch, and [`Bridge::pump`] moves frames between the wire and it.
pub struct Bridge {
    nic: VirtioNic,
    switch: Switch,
    uplink: SwitchPort,
}

impl Bridge {
    /// A switch with `nic` on its first port; `clock` ages its address table.
    pub fn new(nic: VirtioNic, clock: ClockHandle) -> Result<Self, SwitchFull> {
        let switch = Switch::new(clock);
        let uplink = switch.add_port()?;
        Ok(Bridge {
            nic,
            switch,
            uplink,
        })
    }

    /// The host NIC's name (`virtio0`).
    pub fn name(&self) -> &str {
        self.nic.name()
    }

    /// A new port for a VM's NIC.
    pub fn add_port(&self) -> Result<SwitchPort, SwitchFull> {
        self.switch.add_port()
    }

    /// One bounded pass of frames each way between the host NIC and the switch.
    pub fn pump(&mut self) {
        self.nic.pump(&mut self.uplink);
    }
}

/// A virtio-net function found on the bus: started, or why it could not be.
enum Slot {
    Ready(Box<VirtioNic>),
    Failed(String),
    Taken,
}

/// The machine's virtio-net NICs, `virtio0` first.
pub struct HostNics {
    slots: Vec<Slot>,
}

impl HostNics {
    /// Starts the virtio-net functions the scan found (`host::virtio::probe`),
    /// in order, and logs each one's MAC and link. Problems are logged and
    /// kept, to be reported when a VM configuration names the NIC.
    pub(super) fn start(root: &mut PciRoot<PortCam>, found: &[Found]) -> Self {
        let mut slots = Vec::new();
        for (n, f) in found.iter().enumerate() {
            let name = format!("{HOST_NIC_PREFIX}{n}");
            match start(root, f, name.clone()) {
                Ok((nic, link)) => {
                    log::info!(
                        "host NIC {name}: virtio-net at {}, MAC {}, {link}",
                        f.describe(),
                        nic.mac
                    );
                    slots.push(Slot::Ready(Box::new(nic)));
                }
                Err(why) => {
                    log::error!(
                        "host NIC {name}: virtio-net at {} cannot be used: {why}",
                        f.function
                    );
                    slots.push(Slot::Failed(why));
                }
            }
        }
        HostNics { slots }
    }

    /// Hands over `virtio{index}` for good, or says why it cannot be had
    /// (`bridge=virtio1, but this machine has one virtio-net NIC (virtio0)`).
    pub fn take(&mut self, index: u32) -> Result<VirtioNic, String> {
        let name = format!("{HOST_NIC_PREFIX}{index}");
        let count = self.slots.len();
        let Some(slot) = self.slots.get_mut(index as usize) else {
            return Err(match count {
                0 => format!("bridge={name}, but this machine has no virtio-net NIC"),
                1 => format!("bridge={name}, but this machine has one virtio-net NIC (virtio0)"),
                n => format!(
                    "bridge={name}, but this machine has {n} virtio-net NICs (virtio0 to \
                     virtio{})",
                    n - 1
                ),
            });
        };
        match core::mem::replace(slot, Slot::Taken) {
            Slot::Ready(nic) => Ok(*nic),
            Slot::Failed(why) => {
                *slot = Slot::Failed(why.clone());
                Err(format!("host NIC {name} could not be started: {why}"))
            }
            Slot::Taken => Err(format!("host NIC {name} is already in use")),
        }
    }
}

/// Starts the crate's driver on the function and posts every receive
/// buffer. Returns the NIC and its link state as the boot log says it.
fn start(
    root: &mut PciRoot<PortCam>,
    found: &Found,
    name: String,
) -> Result<(VirtioNic, &'static str), String> {
    let (transport, offered) = super::virtio::transport(root, found.function)?;
    let link = if offered & VIRTIO_NET_F_STATUS == 0 {
        "link state not reported (taken as up)"
    } else {
        match transport.read_config_space::<u16>(CONFIG_STATUS) {
            Ok(s) if s & VIRTIO_NET_S_LINK_UP != 0 => "link up",
            Ok(_) => "link down",
            Err(_) => "link state unreadable",
        }
    };
    let device: Device =
        VirtIONetRaw::new(transport).map_err(|e| format!("the device did not start: {e}"))?;
    let mut nic = VirtioNic {
        mac: MacAddress(device.mac_address()),
        device,
        name,
        rx_bufs: (0..QUEUE_SIZE)
            .map(|_| vec![0u8; RX_BUF_LEN].into_boxed_slice())
            .collect(),
        posted: [None; QUEUE_SIZE],
        tx_buf: vec![0u8; MAX_FRAME_LEN].into_boxed_slice(),
        broken: false,
        stats: Stats::default(),
    };
    for slot in 0..QUEUE_SIZE {
        nic.post(slot)?;
    }
    Ok((nic, link))
}
