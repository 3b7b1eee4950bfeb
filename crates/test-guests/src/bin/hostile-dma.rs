#![no_std]
#![no_main]
use test_guests as _;
core::arch::global_asm!(
    test_guests::asm_prelude!(),
    "MODE16\n.text\n.global guest_main16\nguest_main16:\n1: hlt\njmp 1b\n",
    options(att_syntax)
);
