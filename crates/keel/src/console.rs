//! Keel's interactive console: typed bytes go to the focused VM's COM1;
//! Ctrl-] opens Keel's own prompt (as `xl console` and telnet do).
//!
//! This is the pure part (host-tested): the escape key, the prompt's line
//! and its commands, which VM has the console, and the fixed buffer between
//! the host's UART and the guest's. The binary reads the host UART, prints
//! what this module produces, and carries out the [`Action`]s it returns
//! (docs/ARCHITECTURE.md, "Keel's console").
//!
//! Nothing here grows with what is typed: the prompt's line and the input
//! buffer are fixed arrays; what does not fit is dropped and counted.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// Ctrl-] (GS, 0x1D): opens Keel's prompt; typed twice, sends one to the guest.
pub const ESCAPE: u8 = 0x1D;
/// Typed bytes waiting for the focused guest's receive FIFO, at most.
pub const INPUT_BUFFER: usize = 256;
/// The longest command line the prompt takes.
pub const MAX_COMMAND: usize = 64;

/// Which VM, as Keel numbers them (from 0, in the order they were created).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmId(pub usize);

/// What the VM loop must do for a command typed at the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Print this VM's exit statistics so far.
    Stats(VmId),
    /// Write this VM's VGA text screen to the log (`[name:screen] ...`).
    Screen(VmId),
    /// End this VM now.
    End(VmId),
    /// End every VM, then Keel.
    Quit,
}

/// A VM as the console lists it.
struct Vm {
    name: String,
    running: bool,
    /// Commands for this VM that its loop has not carried out yet: with
    /// several VMs on several CPUs, whichever loop reads the typed bytes
    /// posts the command, and the VM's own loop takes it.
    pending: Requests,
}

/// The commands waiting for one VM's loop ([`Console::take_requests`]).
/// Flags, not a queue: `stats` typed twice before the loop looks prints once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requests {
    pub stats: bool,
    pub screen: bool,
    pub end: bool,
    /// `quit`: every VM ends, then Keel.
    pub quit: bool,
}

/// The console's state: the VMs, the focus, the prompt, the input buffer.
pub struct Console {
    vms: Vec<Vm>,
    focus: Option<VmId>,
    /// The prompt is open: typed bytes are a command line, not guest input.
    prompt: bool,
    /// The command line being typed at the prompt.
    line: [u8; MAX_COMMAND],
    line_len: usize,
    /// Ring buffer of bytes for the focused VM.
    input: [u8; INPUT_BUFFER],
    input_start: usize,
    input_len: usize,
    /// Bytes typed while the buffer was full, dropped.
    dropped: u64,
    /// `quit` was typed: every VM's loop ends its VM.
    quit: bool,
    /// Since when (Keel's clock, ns) the input buffer has been full with no
    /// byte taken by the guest ([`Console::holds_back`]).
    full_since: Option<u64>,
}

/// How long a full input buffer holds back reading the host UART while the
/// guest takes nothing: after that, bytes are read (and dropped) again, so
/// that Ctrl-] reaches Keel's prompt even when the guest never reads.
pub const STALL_NS: u64 = 1_000_000_000;

impl Default for Console {
    fn default() -> Self {
        Self::new()
    }
}

const HELP: &str =
    "keel commands: list | switch N|NAME | stats | screen | end [N|NAME] | quit | help; \
an empty line returns to the console; Ctrl-] twice sends one Ctrl-] to the guest\r\n";

impl Console {
    /// A console with no VMs yet.
    pub const fn new() -> Self {
        Console {
            vms: Vec::new(),
            focus: None,
            prompt: false,
            line: [0; MAX_COMMAND],
            line_len: 0,
            input: [0; INPUT_BUFFER],
            input_start: 0,
            input_len: 0,
            dropped: 0,
            quit: false,
            full_since: None,
        }
    }

    /// A new running VM; the first one gets the console.
    pub fn add_vm(&mut self, name: &str) -> VmId {
        let id = VmId(self.vms.len());
        self.vms.push(Vm {
            name: String::from(name),
            running: true,
            pending: Requests::default(),
        });
        if self.focus.is_none() {
            self.focus = Some(id);
        }
        id
    }

    /// The VM ended; its console closes and what was typed for it is dropped.
    pub fn vm_ended(&mut self, id: VmId) {
        if let Some(vm) = self.vms.get_mut(id.0) {
            vm.running = false;
        }
        if self.focus == Some(id) {
            self.input_len = 0;
        }
    }

    /// Records `action` for the loop of the VM it names (for `quit`: of
    /// every VM), whichever CPU's loop read the command.
    pub fn post(&mut self, action: Action) {
        let (id, set): (VmId, fn(&mut Requests)) = match action {
            Action::Stats(id) => (id, |p| p.stats = true),
            Action::Screen(id) => (id, |p| p.screen = true),
            Action::End(id) => (id, |p| p.end = true),
            Action::Quit => {
                self.quit = true;
                return;
            }
        };
        if let Some(vm) = self.vms.get_mut(id.0) {
            set(&mut vm.pending);
        }
    }

    /// The commands posted for `id` since its loop last looked, cleared
    /// (`quit` stays set for the other VMs).
    pub fn take_requests(&mut self, id: VmId) -> Requests {
        let mut r = self
            .vms
            .get_mut(id.0)
            .map(|vm| core::mem::take(&mut vm.pending))
            .unwrap_or_default();
        r.quit = self.quit;
        r
    }

    /// Whether `id`'s output goes to the terminal now: it has the console
    /// and Keel's prompt is closed.
    pub fn shows(&self, id: VmId) -> bool {
        self.focus == Some(id) && !self.prompt
    }

    /// Whether `id` has the console, prompt open or not: its screen is the
    /// one on the machine's display.
    pub fn focused(&self, id: VmId) -> bool {
        self.focus == Some(id)
    }

    /// Bytes dropped so far because the guest did not take them in time.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// One typed byte. What the prompt prints goes to `out`; a command the
    /// VM loop must carry out is returned.
    pub fn typed(&mut self, byte: u8, out: &mut impl FnMut(&str)) -> Option<Action> {
        if self.prompt {
            return self.prompt_byte(byte, out);
        }
        if byte == ESCAPE {
            self.prompt = true;
            self.line_len = 0;
            out("\r\nkeel> ");
            return None;
        }
        self.queue(byte);
        None
    }

    fn queue(&mut self, byte: u8) {
        if self.input_len == INPUT_BUFFER {
            self.dropped += 1;
            return;
        }
        let at = (self.input_start + self.input_len) % INPUT_BUFFER;
        self.input[at] = byte;
        self.input_len += 1;
    }

    /// Offers the bytes waiting for `id` to `take`, which returns how many
    /// it took (the guest's receive FIFO room). Nothing if `id` does not
    /// have the console.
    pub fn deliver(&mut self, id: VmId, take: impl FnOnce(&[u8]) -> usize) {
        if self.focus != Some(id) || self.input_len == 0 {
            return;
        }
        let end = (self.input_start + self.input_len).min(INPUT_BUFFER);
        let n = take(&self.input[self.input_start..end]).min(end - self.input_start);
        self.input_start = (self.input_start + n) % INPUT_BUFFER;
        self.input_len -= n;
        if n > 0 {
            self.full_since = None;
        }
    }

    /// Whether Keel should leave typed bytes in the host UART for now (at
    /// `now_ns`): the focused guest's buffer is full and the guest took a
    /// byte less than [`STALL_NS`] ago. The host's flow control (a
    /// terminal's, or the emulator's character device) holds what follows,
    /// so a paste or a flood loses nothing while the guest reads; a guest
    /// that stops reading gets its bytes dropped again after [`STALL_NS`],
    /// and Ctrl-] still opens the prompt.
    pub fn holds_back(&mut self, now_ns: u64) -> bool {
        if self.prompt || self.input_len < INPUT_BUFFER {
            self.full_since = None;
            return false;
        }
        let since = *self.full_since.get_or_insert(now_ns);
        now_ns.saturating_sub(since) < STALL_NS
    }

    fn prompt_byte(&mut self, byte: u8, out: &mut impl FnMut(&str)) -> Option<Action> {
        match byte {
            ESCAPE if self.line_len == 0 => {
                self.prompt = false;
                out("\r\n");
                self.queue(ESCAPE);
                None
            }
            b'\r' | b'\n' => {
                out("\r\n");
                let len = self.line_len;
                self.line_len = 0;
                let line = self.line;
                let text = core::str::from_utf8(&line[..len]).unwrap_or("");
                self.command(text.trim(), out)
            }
            // Backspace and DEL.
            0x08 | 0x7F => {
                if self.line_len > 0 {
                    self.line_len -= 1;
                    out("\x08 \x08");
                }
                None
            }
            0x20..=0x7E if self.line_len < MAX_COMMAND => {
                self.line[self.line_len] = byte;
                self.line_len += 1;
                let echo = [byte];
                out(core::str::from_utf8(&echo).unwrap_or(""));
                None
            }
            // Other control bytes, and a line that is full: ignored.
            _ => None,
        }
    }

    fn command(&mut self, line: &str, out: &mut impl FnMut(&str)) -> Option<Action> {
        let mut words = line.split_whitespace();
        let verb = words.next().unwrap_or("");
        let arg = words.next();
        let mut text = String::new();
        let mut action = None;
        let mut stay = true;
        match verb {
            "" => stay = false,
            "help" | "?" => text.push_str(HELP),
            "list" | "l" => self.list(&mut text),
            "switch" | "s" => match arg.map(|a| self.find(a)) {
                None => text.push_str("switch: which VM? (list shows them)\r\n"),
                Some(Err(e)) => text.push_str(&e),
                Some(Ok(id)) if !self.vms[id.0].running => {
                    let _ = write!(
                        text,
                        "VM {} '{}' has ended: its console is closed; the console stays where it was\r\n",
                        id.0, self.vms[id.0].name
                    );
                }
                Some(Ok(id)) => {
                    self.focus = Some(id);
                    self.input_len = 0;
                    let _ = write!(
                        text,
                        "console: VM {} '{}' (Ctrl-] for Keel's prompt)\r\n",
                        id.0, self.vms[id.0].name
                    );
                    stay = false;
                }
            },
            "stats" => match self.focus {
                Some(id) => action = Some(Action::Stats(id)),
                None => text.push_str("no VM has the console\r\n"),
            },
            "screen" => match self.focus {
                Some(id) => action = Some(Action::Screen(id)),
                None => text.push_str("no VM has the console\r\n"),
            },
            "end" | "kill" => {
                let target = match arg {
                    Some(a) => self.find(a),
                    None => self
                        .focus
                        .ok_or_else(|| String::from("no VM has the console\r\n")),
                };
                match target {
                    Err(e) => text.push_str(&e),
                    Ok(id) if !self.vms[id.0].running => {
                        let _ = writeln!(
                            text,
                            "VM {} '{}' has already ended\r",
                            id.0, self.vms[id.0].name
                        );
                    }
                    Ok(id) => {
                        action = Some(Action::End(id));
                        stay = false;
                    }
                }
            }
            "quit" | "q" => {
                action = Some(Action::Quit);
                stay = false;
            }
            other => {
                let _ = write!(text, "unknown command '{other}'; ");
                text.push_str(HELP);
            }
        }
        out(&text);
        if stay {
            out("keel> ");
        } else {
            self.prompt = false;
        }
        action
    }

    /// The VM a prompt argument names: its number or its name.
    fn find(&self, arg: &str) -> Result<VmId, String> {
        let by_number = arg.parse::<usize>().ok().filter(|&n| n < self.vms.len());
        let by_name = self.vms.iter().position(|vm| vm.name == arg);
        by_number.or(by_name).map(VmId).ok_or_else(|| {
            let mut e = String::new();
            let _ = write!(e, "no VM '{arg}' (list shows them)\r\n");
            e
        })
    }

    fn list(&self, text: &mut String) {
        for (i, vm) in self.vms.iter().enumerate() {
            let _ = write!(
                text,
                "{} {i} {} {}\r\n",
                if self.focus == Some(VmId(i)) {
                    '*'
                } else {
                    ' '
                },
                vm.name,
                if vm.running { "running" } else { "ended" }
            );
        }
        if self.dropped > 0 {
            let _ = write!(
                text,
                "{} typed bytes dropped: the guest did not read its serial port\r\n",
                self.dropped
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn type_str(c: &mut Console, s: &[u8]) -> (String, Vec<Action>) {
        let mut out = String::new();
        let mut actions = Vec::new();
        for &b in s {
            if let Some(a) = c.typed(b, &mut |t: &str| out.push_str(t)) {
                actions.push(a);
            }
        }
        (out, actions)
    }

    fn drain(c: &mut Console, id: VmId, room: usize) -> Vec<u8> {
        let mut got = Vec::new();
        c.deliver(id, |b| {
            let n = b.len().min(room);
            got.extend_from_slice(&b[..n]);
            n
        });
        got
    }

    #[test]
    fn typed_bytes_reach_the_focused_vm_as_its_fifo_takes_them() {
        let mut c = Console::new();
        let a = c.add_vm("a");
        let b = c.add_vm("b");
        type_str(&mut c, b"ls\r");
        assert!(
            drain(&mut c, b, 16).is_empty(),
            "b does not have the console"
        );
        assert_eq!(drain(&mut c, a, 2), b"ls");
        assert_eq!(drain(&mut c, a, 16), b"\r");
        assert!(drain(&mut c, a, 16).is_empty());
    }

    #[test]
    fn a_flood_is_held_in_the_fixed_buffer_and_the_rest_dropped() {
        let mut c = Console::new();
        let a = c.add_vm("a");
        let flood = vec![b'x'; INPUT_BUFFER + 100];
        type_str(&mut c, &flood);
        assert_eq!(c.dropped(), 100);
        let mut total = 0;
        loop {
            let n = drain(&mut c, a, 16).len();
            if n == 0 {
                break;
            }
            total += n;
        }
        assert_eq!(total, INPUT_BUFFER);
        // Across the ring's wrap: order kept.
        type_str(&mut c, b"0123456789");
        assert_eq!(drain(&mut c, a, 16), b"0123456789");
        // The escape key still works with the guest not reading.
        type_str(&mut c, &flood);
        let (out, _) = type_str(&mut c, &[ESCAPE]);
        assert!(out.contains("keel> "), "{out}");
        let (out, _) = type_str(&mut c, b"list\r");
        assert!(out.contains("typed bytes dropped"), "{out}");
    }

    #[test]
    fn ctrl_bracket_opens_the_prompt_and_hides_guest_output() {
        let mut c = Console::new();
        let a = c.add_vm("deb");
        assert!(c.shows(a));
        let (out, _) = type_str(&mut c, &[ESCAPE]);
        assert_eq!(out, "\r\nkeel> ");
        assert!(!c.shows(a));
        let (out, actions) = type_str(&mut c, b"list\r");
        assert!(actions.is_empty());
        assert!(out.contains("* 0 deb running\r\n"), "{out:?}");
        assert!(out.ends_with("keel> "));
        // An empty line returns to the guest; nothing typed reached it.
        type_str(&mut c, b"\r");
        assert!(c.shows(a));
        assert!(drain(&mut c, a, 16).is_empty());
    }

    #[test]
    fn escape_twice_sends_one_escape_to_the_guest() {
        let mut c = Console::new();
        let a = c.add_vm("a");
        type_str(&mut c, &[ESCAPE, ESCAPE]);
        assert!(c.shows(a));
        assert_eq!(drain(&mut c, a, 16), [ESCAPE]);
    }

    #[test]
    fn commands_give_actions() {
        let mut c = Console::new();
        let a = c.add_vm("a");
        let b = c.add_vm("b");
        let (_, act) = type_str(&mut c, b"\x1dstats\r");
        assert_eq!(act, [Action::Stats(a)]);
        let (_, act) = type_str(&mut c, b"screen\r");
        assert_eq!(act, [Action::Screen(a)], "the focused VM's screen");
        let (_, act) = type_str(&mut c, b"end b\r");
        assert_eq!(act, [Action::End(b)]);
        assert!(c.shows(a), "end leaves the prompt");
        let (_, act) = type_str(&mut c, b"\x1dend\r");
        assert_eq!(act, [Action::End(a)]);
        let (_, act) = type_str(&mut c, b"\x1dquit\r");
        assert_eq!(act, [Action::Quit]);
    }

    #[test]
    fn commands_wait_for_their_vms_loop_and_quit_reaches_every_vm() {
        let mut c = Console::new();
        let a = c.add_vm("a");
        let b = c.add_vm("b");
        // VM a's loop read these bytes; the commands are b's.
        for act in type_str(&mut c, b"\x1dend b\r\x1dswitch b\r\x1dstats\r").1 {
            c.post(act);
        }
        assert_eq!(c.take_requests(a), Requests::default());
        let r = c.take_requests(b);
        assert!(r.end && r.stats && !r.screen && !r.quit, "{r:?}");
        assert_eq!(c.take_requests(b), Requests::default(), "taken once");
        // The prompt stays open after `stats`.
        for act in type_str(&mut c, b"quit\r").1 {
            c.post(act);
        }
        assert!(c.take_requests(a).quit && c.take_requests(b).quit);
        assert!(c.take_requests(a).quit, "quit stays for every loop");
    }

    #[test]
    fn a_full_buffer_holds_back_reading_while_the_guest_takes_bytes() {
        let mut c = Console::new();
        let a = c.add_vm("a");
        assert!(!c.holds_back(0), "room: read");
        type_str(&mut c, &[b'x'; INPUT_BUFFER]);
        assert!(c.holds_back(10), "full: hold back");
        assert!(c.holds_back(10 + STALL_NS - 1));
        // The guest takes a byte: the stall starts again from then.
        assert_eq!(drain(&mut c, a, 1).len(), 1);
        assert!(!c.holds_back(2 * STALL_NS), "room again");
        type_str(&mut c, b"y");
        assert!(c.holds_back(2 * STALL_NS));
        // The guest takes nothing for STALL_NS: read (and drop) again, so
        // Ctrl-] gets through.
        assert!(!c.holds_back(3 * STALL_NS));
        type_str(&mut c, &[ESCAPE]);
        assert!(!c.holds_back(3 * STALL_NS), "the prompt reads");
    }

    #[test]
    fn switching_moves_the_console_and_an_ended_vm_is_refused() {
        let mut c = Console::new();
        let a = c.add_vm("a");
        let b = c.add_vm("b");
        let (out, _) = type_str(&mut c, b"\x1dswitch b\r");
        assert!(out.contains("console: VM 1 'b'"), "{out}");
        assert!(c.shows(b) && !c.shows(a));
        c.vm_ended(a);
        let (out, _) = type_str(&mut c, b"\x1dswitch 0\r");
        assert!(
            out.contains("VM 0 'a' has ended: its console is closed"),
            "{out}"
        );
        assert!(!c.shows(b), "still at the prompt");
        let (out, _) = type_str(&mut c, b"switch nosuch\r");
        assert!(out.contains("no VM 'nosuch'"), "{out}");
        let (out, act) = type_str(&mut c, b"end a\r");
        assert!(act.is_empty());
        assert!(out.contains("has already ended"), "{out}");
        type_str(&mut c, b"\r");
        assert!(c.shows(b));
    }

    #[test]
    fn the_command_line_is_bounded_and_edited() {
        let mut c = Console::new();
        c.add_vm("a");
        type_str(&mut c, &[ESCAPE]);
        let long = vec![b'z'; MAX_COMMAND * 4];
        let (out, _) = type_str(&mut c, &long);
        assert_eq!(out.len(), MAX_COMMAND, "echo stops at the limit");
        let (out, _) = type_str(&mut c, b"\r");
        assert!(out.contains("unknown command"), "{out}");
        let (out, act) = type_str(&mut c, b"stqx\x7f\x7fats\r");
        assert!(out.starts_with("stqx\x08 \x08"), "{out:?}");
        assert_eq!(act.len(), 1, "{out:?}");
    }
}
