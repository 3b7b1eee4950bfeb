//! The config target: the VM configuration parser with random and mutated text.

use std::sync::OnceLock;

use x86_emul::rng::Rng;

use crate::{set_case, HeapWatch, CASES_PER_SEED};

/// The repository's VM configurations, read once: the mutations start from them.
fn corpus() -> &'static [Vec<u8>] {
    static CORPUS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/vms");
        let mut files: Vec<Vec<u8>> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot list {dir}: {e}"))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "cfg"))
            .map(|p| std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
            .collect();
        assert!(!files.is_empty(), "no VM configs in {dir}");
        files.sort();
        files.push(EVERY_KEY.to_vec());
        files
    })
}

/// Every key and value form, so mutations reach every branch of the parser.
const EVERY_KEY: &[u8] = b"name = 'vm'\nmemory = 0x40 # MiB\nvcpus = 1; keel_testdev = 1\n\
firmware = \"seabios\"\nkernel = 'vmlinuz'\nramdisk = 'initrd'\ncmdline = 'a\\tb\\x41\\101'\n\
modules = [ 'm.bin a=1 b', 'initrd', 'n.bin' ]\ndisk = [ 'a.img,raw,hda,rw', 'phy:virtio0,hdb,w',\n  'target=c.iso,vdev=hdc,devtype=cdrom,access=r', \
'file:d.img,hdd,r', ]\nvif = [ 'model=e1000,mac=00:16:3e:0a:bc:ff,bridge=virtio1', 'type=ioemu,ip=10.0.0.2' ]\non_crash = 'destroy'\n";

/// Pieces of the syntax, inserted whole.
const TOKENS: &[&[u8]] = &[
    b"name",
    b"memory",
    b"vcpus",
    b"firmware",
    b"kernel",
    b"ramdisk",
    b"cmdline",
    b"modules",
    b"disk",
    b"vif",
    b"keel_testdev",
    b" ",
    b"\t",
    b"\n",
    b"\r\n",
    b"=",
    b"'",
    b"\"",
    b"[",
    b"]",
    b",",
    b";",
    b"#",
    b"\\",
    b"\\x",
    b"\\7",
    b"0x",
    b"0",
    b"9",
    b"18446744073709551616",
    b"4294967296",
    b"1048576",
    b"'sel'",
    b"\"a\"",
    b"\xc3\xa9",
    b"\xff",
    b"\xe2\x82",
    b"\0",
    b"hda",
    b"hdc:cdrom",
    b"hdz",
    b"xvda",
    b",raw,",
    b",qcow2,",
    b"phy:",
    b"file:",
    b"virtio0",
    b"virtio99999999999",
    b"target=",
    b"vdev=",
    b"access=",
    b"devtype=cdrom",
    b"backendtype=phy",
    b",rw",
    b",r",
    b":",
    b"=,=,",
    b"model=e1000",
    b"model=virtio-net",
    b"mac=",
    b"00:16:3e:01:02:03",
    b"01:00:5e:00:00:01",
    b"bridge=",
    b"virtio1",
    b"type=ioemu",
    b"vifname=",
];

pub(crate) fn run(rng: &mut Rng) {
    let corpus = corpus();
    let mut input: Vec<u8> = Vec::new();
    for case in 0..CASES_PER_SEED {
        set_case(case);
        let heap = HeapWatch::start();
        input.clear();
        match rng.below(8) {
            // Tokens in random order.
            0 => {
                for _ in 0..rng.below(40) {
                    input.extend_from_slice(pick(rng, TOKENS));
                }
            }
            // Random bytes.
            1 => {
                for _ in 0..rng.below(80) {
                    input.push(rng.next() as u8);
                }
            }
            // A real configuration, mutated.
            _ => {
                input.extend_from_slice(pick(rng, corpus));
                for _ in 0..1 + rng.below(4) {
                    mutate(rng, &mut input, corpus);
                }
            }
        }
        check(&input);
        heap.check("config");
    }
}

fn pick<'a, T: AsRef<[u8]>>(rng: &mut Rng, from: &'a [T]) -> &'a [u8] {
    from[rng.below(from.len() as u64) as usize].as_ref()
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let at = rng.below(input.len() as u64 + 1) as usize;
    match rng.below(6) {
        0 => {
            let token = pick(rng, TOKENS);
            input.splice(at..at, token.iter().copied());
        }
        1 if at < input.len() => {
            let end = (at + 1 + rng.below(8) as usize).min(input.len());
            input.drain(at..end);
        }
        2 if at < input.len() => input[at] = rng.next() as u8,
        // A line of another configuration (a duplicate key, often).
        3 => {
            let other = pick(rng, corpus);
            let lines: Vec<&[u8]> = other.split(|&b| b == b'\n').collect();
            let line = lines[rng.below(lines.len() as u64) as usize];
            input.splice(at..at, line.iter().copied().chain([b'\n']));
        }
        4 => input.truncate(at),
        _ => input.insert(at, pick(rng, TOKENS)[0]),
    }
}

/// The parser's promises: no panic, every error on a line of the input
/// except the one about the file as a whole (no `name`), and an accepted
/// configuration's disks are all attachable (finding #9) and its vifs all parse.
fn check(input: &[u8]) {
    let lines = 1 + input.iter().filter(|&&b| b == b'\n').count() as u32;
    match vm_config::parse_bytes(input) {
        Ok(parsed) => {
            let c = &parsed.config;
            let specs = c
                .disk_specs()
                .unwrap_or_else(|e| panic!("accepted {input:?} with a bad disk: {e}"));
            for (i, s) in specs.iter().enumerate() {
                assert!(
                    specs[..i].iter().all(|o| !o.slot.same_device(s.slot)),
                    "accepted {input:?} with two disks on {}",
                    s.slot.vdev()
                );
            }
            for w in &parsed.warnings {
                assert!((1..=lines).contains(&w.line), "{w} in {input:?}");
                let _ = w.in_file("fuzz.cfg").to_string();
            }
            let vifs = c
                .vif_specs()
                .unwrap_or_else(|e| panic!("accepted {input:?} with a bad vif: {e}"));
            for v in &vifs {
                assert_eq!(v.mac[0] & 1, 0, "accepted {input:?} with a multicast MAC");
            }
            let _ = c.images();
        }
        Err(e) => {
            match e.line {
                Some(l) => assert!((1..=lines).contains(&l), "{e} in {input:?}"),
                None => assert!(
                    e.message.contains("has no name"),
                    "an error without a line: {e} in {input:?}"
                ),
            }
            assert!(!e.message.is_empty());
            let _ = e.in_file("fuzz.cfg").to_string();
        }
    }
}
