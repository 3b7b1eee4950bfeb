//! The fixed-seed pass (`cargo xtask test`) and the regression replay.

use super::*;

fn fixed_pass(target: Target) {
    for seed in target.regressions() {
        target.run_seed(seed);
    }
    let mut cases = 0;
    for seed in fixed_seeds() {
        target.run_seed(seed);
        cases += CASES_PER_SEED;
    }
    assert!(cases >= 100_000);
}

#[test]
fn devices_fixed_seeds() {
    fixed_pass(Target::Devices);
}

#[test]
fn exits_fixed_seeds() {
    fixed_pass(Target::Exits);
}

#[test]
fn config_fixed_seeds() {
    fixed_pass(Target::Config);
}

#[test]
fn xenstore_fixed_seeds() {
    fixed_pass(Target::Xenstore);
}

#[test]
fn xen_fixed_seeds() {
    fixed_pass(Target::Xen);
}

#[test]
fn seed_lists() {
    assert_eq!(
        parse_seed_list("# c\n0x10 # found\n\n42\n").unwrap(),
        vec![16, 42]
    );
    assert!(parse_seed_list("0xzz\n").unwrap_err().contains("line 1"));
    for t in Target::ALL {
        assert_eq!(Target::from_name(t.name()), Some(t));
        t.regressions();
    }
}
