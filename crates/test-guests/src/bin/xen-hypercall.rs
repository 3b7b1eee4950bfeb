//! Xen's hypercall ABI seen from inside a VM with `xen_platform_pci = 1`
//! (issue 19; docs/XEN.md): what a PV-on-HVM guest depends on before any of
//! its drivers run, and Xen's error codes for what a hostile one tries.
//!
//! Sources of fact: Xen's public headers (xen.h, arch-x86/cpuid.h,
//! version.h, hvm/hvm_op.h, hvm/params.h, event_channel.h, grant_table.h,
//! memory.h, sched.h, errno.h) and the hypervisor's answers to the same
//! calls (hvm_hypercall, hvmop_get_param/set_param, evtchn_status,
//! gnttab_set_version, the p2m's address-width check).
//!
//! - Real mode: a VMCALL/VMMCALL hypercall runs with the 32-bit convention
//!   (Xen's hvm_hypercall lets mode 0 through).
//! - Protected mode, 32-bit convention: the leaves 0x40000000-0x40000004
//!   ("XenVMMXenVMM", 4.17, one hypercall page at MSR 0x40000000, domid),
//!   the hypercall page written through that MSR (stubs `mov eax, nr;
//!   vmcall|vmmcall; ret`, `ud2` for iret), xen_version through the page
//!   and hvm_op get_param through VMCALL/VMMCALL with a pointer in ECX.
//! - Long mode, 64-bit convention, through the page: xen_version (features,
//!   page size, extraversion), RAX's upper half is part of the number,
//!   hvm_op get/set_param (the callback vector, store and console; -EINVAL
//!   past HVM_NR_PARAMS, -EPERM for a parameter the guest may not touch,
//!   -ESRCH for another domain), shared info at a RAM page (the guest's RAM
//!   hidden while it is there), event channels (bind_ipi, send while masked
//!   and then unmask delivering the callback vector, send again, status,
//!   alloc_unbound, close, ports out of range, port 0), grant tables
//!   (query_size, set_version 1 / 2 / 3, get_version, a grant frame shown in
//!   the PCI hole, frame indexes past the table), frames and the hypercall
//!   page at addresses outside RAM or past the address width, unknown
//!   hypercalls and sub-ops (-ENOSYS), an argument at an unmapped address
//!   (-EFAULT), and hypercalls from CPL 3 (-EPERM) through the page and
//!   through VMCALL/VMMCALL.
//! - Then SCHEDOP_shutdown three times. RAM keeps its contents across a
//!   restart, so the phase and the counts so far live at `MARKER`: after
//!   SHUTDOWN_reboot (on_reboot = "restart") the guest checks that Xen's
//!   state started over (the callback parameter, the ports, the placements)
//!   and crashes with SHUTDOWN_crash (the config's on_crash = "restart");
//!   after that restart it prints the totals and powers off with
//!   SHUTDOWN_poweroff. A failure anywhere ends with the debug exit instead.

#![no_std]
#![no_main]

use core::arch::global_asm;
use test_guests as _;

global_asm!(
    test_guests::asm_prelude!(),
    r#"
/* State in RAM (the low 2 MiB, which ring 3 may use too). */
.set MARKER,        0x600   /* MAGIC once the first boot started */
.set PHASE,         0x604   /* 0 first boot, 1 after the reboot, 2 after the crash */
.set SAVED_PASS,    0x608   /* the counts across a restart */
.set SAVED_FAIL,    0x60C
.set AMD,           0x610   /* 1: VMMCALL, 0: VMCALL */
.set UPCALLS,       0x614   /* callback-vector deliveries */
.set SEL_SEEN,      0x618   /* u64: evtchn_pending_sel the handler took */
.set PEND_SEEN,     0x620   /* u64: pending & ~mask of word 0 the handler took */
.set IPI_PORT,      0x628
.set UNBOUND_PORT,  0x62C
.set SAVED_RSP,     0x630   /* u64: ring 0's stack while ring 3 runs */
.set USER_RESULT,   0x638   /* u64: RAX after ring 3's hypercall */
.set RM_UD,         0x640   /* real mode took #UD */
.set MAXPHYADDR,    0x644
.set R_EAX,         0x650   /* a CPUID result */
.set R_EBX,         0x654
.set R_ECX,         0x658
.set R_EDX,         0x65C
.set MAGIC,         0x4E455821  /* "!XEN" */

.set GDT_RAM,       0x10000 /* the GDT with ring 3's segments and a TSS */
.set TSS,           0x10100
.set IDT_RAM,       0x11000 /* 256 gates */
.set HC_PAGE,       0x12000 /* the hypercall page */
.set ARG,           0x13000 /* hypercall arguments */
.set SHINFO,        0x14000 /* where shared info is placed (gpfn 0x14) */
.set RING0_STACK,   0x16000 /* TSS.RSP0 */
.set USER_STACK,    0x18000
.set GRANT_GPA,     0xF0000000  /* grant frame 0, in the PCI hole */
.set RAM_MARK,      0x52414d21  /* what the guest keeps in SHINFO's RAM */

.set SEL_UCODE64,   0x20
.set SEL_UDATA,     0x28
.set SEL_TSS,       0x30
.set CB_VECTOR,     0xF3
.set RING0_VECTOR,  0x80    /* ring 3 comes back through this gate */

/* public/xen.h, errno.h and the sub-op headers. */
.set XEN_CPUID,     0x40000000
.set HC_MSR,        0x40000000
.set HC_MEMORY_OP,  12
.set HC_XEN_VERSION, 17
.set HC_GRANT_TABLE_OP, 20
.set HC_VCPU_OP,    24
.set HC_SCHED_OP,   29
.set HC_EVENT_CHANNEL_OP, 32
.set HC_HVM_OP,     34
.set DOMID_SELF,    0x7FF0
.set EPERM,         -1
.set ESRCH,         -3
.set EFAULT,        -14
.set EINVAL,        -22
.set ENOENT,        -2
.set ENOSYS,        -38
.set XEN_4_17,      0x00040011
.set SHARED_INFO_VCPU0_UPCALL_PENDING, 0
.set SHARED_INFO_VCPU0_PENDING_SEL, 8
.set SHARED_INFO_EVTCHN_PENDING, 2048
.set SHARED_INFO_EVTCHN_MASK, 2560
.set SHARED_INFO_WC_SEC, 3076
.set NO_FAULT,      0xFFFFFFFF
.set GP0,           (13 << 16)

/* VMCALL on Intel, VMMCALL on AMD: the hypercall instruction itself. */
.macro XEN_TRAP
    cmpl $0, AMD
    je .Lvmcall\@
    vmmcall
    jmp .Ldone\@
.Lvmcall\@:
    vmcall
.Ldone\@:
.endm

/* Long mode: hypercall `nr` through its stub in the hypercall page, 64-bit
   convention (arguments in %rdi, %rsi, %rdx, %r10, %r8); the result in %rcx. */
.macro HCALL nr
    mov $(HC_PAGE + 32 * (\nr)), %r11d
    call *%r11
    mov %rax, %rcx
.endm

/* Long mode: `op` of `nr` with the argument block at ARG. */
.macro HCALL_ARG nr, op
    mov $(\op), %edi
    mov $ARG, %esi
    HCALL \nr
.endm

/* The argument block of hvm_op get/set_param: (domid, pad, index, value). */
.macro HVM_PARAM domid, index, value
    movw $(\domid), ARG
    movw $0, ARG + 2
    movl $(\index), ARG + 4
    movabs $(\value), %rax
    mov %rax, ARG + 8
.endm

/* An event-channel argument of two dwords. */
.macro EVTCHN_ARG a, b=0
    movl $(\a), ARG
    movl $(\b), ARG + 4
    movq $0, ARG + 8
.endm

/* xen_add_to_physmap (domid, size, space, idx, gpfn) for DOMID_SELF. */
.macro PHYSMAP space, idx, gpfn
    movl $DOMID_SELF, ARG
    movl $(\space), ARG + 4
    movabs $(\idx), %rax
    mov %rax, ARG + 8
    movabs $(\gpfn), %rax
    mov %rax, ARG + 16
.endm

/* CPUID leaf -> R_EAX..R_EDX. */
.macro CPUID_TO_MEM leaf
    mov $(\leaf), %eax
    xor %ecx, %ecx
    cpuid
    mov %eax, R_EAX
    mov %ebx, R_EBX
    mov %ecx, R_ECX
    mov %edx, R_EDX
.endm

/* ------------------------------------------------------------------ */
MODE16
    .text
.global guest_main16
guest_main16:
    cmpl $MAGIC, MARKER
    je 1f
    PRINTLN "xen-hypercall: real mode"
    movl $0, AMD
    xor %eax, %eax
    cpuid
    cmp $0x68747541, %ebx               /* "Auth" */
    jne 2f
    movl $1, AMD
2:  /* A #UD would land in rm_ud, which skips the 3-byte instruction. */
    movw $(rm_ud - IMAGE_BASE), 6 * 4
    movw $IMAGE_SEGMENT, 6 * 4 + 2
    movl $0, RM_UD
    mov $HC_XEN_VERSION, %eax
    xor %ebx, %ebx                      /* XENVER_version */
    XEN_TRAP
    mov %eax, %ecx
    CHECK_EQ "real-mode-hypercall-xen-version", XEN_4_17
    mov RM_UD, %ecx
    CHECK_EQ "real-mode-hypercall-no-ud", 0
1:  GOTO_PROTECTED protected

rm_ud:
    push %bp
    mov %sp, %bp
    addw $3, 2(%bp)
    pop %bp
    movl $1, RM_UD
    iret

/* ------------------------------------------------------------------ */
MODE32
protected:
    cmpl $MAGIC, MARKER
    je 1f
    movl $MAGIC, MARKER
    movl $0, PHASE
    PRINTLN "xen-hypercall: protected mode, 32-bit convention"
    call cpuid_leaves
    call page_and_calls32
1:  GOTO_LONG long

/* public/arch-x86/cpuid.h: the leaves of an HVM guest. */
cpuid_leaves:
    CPUID_TO_MEM XEN_CPUID
    mov R_EBX, %ecx
    CHECK_EQ "cpuid-40000000-ebx-XenV", 0x566e6558
    mov R_ECX, %ecx
    CHECK_EQ "cpuid-40000000-ecx-MMXe", 0x65584d4d
    mov R_EDX, %ecx
    CHECK_EQ "cpuid-40000000-edx-nVMM", 0x4d4d566e
    mov R_EAX, %ecx
    CHECK_EQ "cpuid-40000000-max-leaf", XEN_CPUID + 4
    CPUID_TO_MEM XEN_CPUID + 1
    mov R_EAX, %ecx
    CHECK_EQ "cpuid-40000001-version-4.17", XEN_4_17
    CPUID_TO_MEM XEN_CPUID + 2
    mov R_EAX, %ecx
    CHECK_EQ "cpuid-40000002-one-hypercall-page", 1
    mov R_EBX, %ecx
    CHECK_EQ "cpuid-40000002-hypercall-msr", HC_MSR
    CPUID_TO_MEM XEN_CPUID + 4
    mov R_EAX, %ecx
    and $0x18, %ecx                     /* VCPU_ID_PRESENT | DOMID_PRESENT */
    CHECK_EQ "cpuid-40000004-vcpu-and-domid-present", 0x18
    mov R_ECX, %ecx
    CHECK_EQ "cpuid-40000004-domid", 1
    ret

page_and_calls32:
    /* The page: GPA in bits 63:12, page index 0 in bits 11:0. */
    mov $HC_MSR, %ecx
    mov $HC_PAGE, %eax
    xor %edx, %edx
    wrmsr
    movzbl HC_PAGE + 32 * HC_XEN_VERSION, %ecx
    CHECK_EQ "hypercall-page-stub-mov-eax", 0xb8
    mov HC_PAGE + 32 * HC_XEN_VERSION + 1, %ecx
    CHECK_EQ "hypercall-page-stub-number", HC_XEN_VERSION
    mov HC_PAGE + 32 * HC_XEN_VERSION + 5, %ecx
    and $0xffffff, %ecx
    cmpl $0, AMD
    je 1f
    CHECK_EQ "hypercall-page-stub-vmmcall", 0xd9010f
    jmp 2f
1:  CHECK_EQ "hypercall-page-stub-vmcall", 0xc1010f
2:  movzbl HC_PAGE + 32 * HC_XEN_VERSION + 8, %ecx
    CHECK_EQ "hypercall-page-stub-ret", 0xc3
    movzwl HC_PAGE + 32 * 23, %ecx
    CHECK_EQ "hypercall-page-iret-stub-ud2", 0x0b0f
    /* xen_version through the page: EBX is the first argument. */
    xor %ebx, %ebx
    mov $(HC_PAGE + 32 * HC_XEN_VERSION), %eax
    call *%eax
    mov %eax, %ecx
    CHECK_EQ "hypercall32-page-xen-version", XEN_4_17
    /* hvm_op(HVMOP_get_param, &(DOMID_SELF, HVM_PARAM_STORE_EVTCHN)) with
       VMCALL/VMMCALL: EBX, ECX are the arguments. */
    movl $DOMID_SELF, ARG
    movl $2, ARG + 4
    movl $0, ARG + 8
    movl $0, ARG + 12
    mov $HC_HVM_OP, %eax
    mov $1, %ebx
    mov $ARG, %ecx
    XEN_TRAP
    mov %eax, %ecx
    CHECK_EQ "hypercall32-vmcall-hvm-get-param", 0
    mov ARG + 8, %ecx
    CHECK_GE "hypercall32-store-evtchn-port", 1
    ret

/* ------------------------------------------------------------------ */
MODE64
long:
    call setup_cpu
    cmpl $1, PHASE
    je after_reboot
    cmpl $2, PHASE
    je after_crash
    PRINTLN "xen-hypercall: long mode, 64-bit convention"
    mov $0x80000008, %eax
    xor %ecx, %ecx
    cpuid
    and $0xff, %eax
    mov %eax, MAXPHYADDR
    call xen_version
    call hvm_params
    call shared_info
    call event_channels
    call grant_tables
    call outside_ram
    call unknown_calls
    call from_ring3
    xor %edi, %edi                      /* SCHEDOP_yield */
    HCALL HC_SCHED_OP
    CHECK_EQ64 "sched-op-yield", 0
    PRINTLN "xen-hypercall: SCHEDOP_shutdown(SHUTDOWN_reboot)"
    movl $1, PHASE
    mov $1, %eax
    jmp shutdown

/* After SHUTDOWN_reboot: Xen's state for the domain started over, and the
   guest's RAM shows through where shared info and the grant frame were. */
after_reboot:
    call restore_counts
    PRINTLN "xen-hypercall: restarted after SHUTDOWN_reboot"
    call write_hypercall_msr
    HVM_PARAM DOMID_SELF, 0, 0x1234
    HCALL_ARG HC_HVM_OP, 1
    CHECK_EQ64 "after-reboot-get-callback-irq", 0
    mov ARG + 8, %rcx
    CHECK_EQ64 "after-reboot-callback-irq-is-0", 0
    mov IPI_PORT, %eax
    EVTCHN_ARG DOMID_SELF
    mov %eax, ARG + 4
    HCALL_ARG HC_EVENT_CHANNEL_OP, 5
    CHECK_EQ64 "after-reboot-status-old-ipi-port", 0
    mov ARG + 8, %ecx
    CHECK_EQ "after-reboot-old-ipi-port-closed", 0
    mov SHINFO, %ecx
    CHECK_EQ "after-reboot-ram-back-under-shared-info", RAM_MARK
    mov $GRANT_GPA, %eax
    mov (%rax), %rcx
    CHECK_EQ64 "after-reboot-grant-frame-gone", -1
    PRINTLN "xen-hypercall: SCHEDOP_shutdown(SHUTDOWN_crash)"
    movl $2, PHASE
    mov $3, %eax
    jmp shutdown

/* After SHUTDOWN_crash with on_crash = "restart": hypercalls work again;
   then the totals and SHUTDOWN_poweroff, or the debug exit on a failure. */
after_crash:
    call restore_counts
    PRINTLN "xen-hypercall: restarted after SHUTDOWN_crash"
    call write_hypercall_msr
    xor %edi, %edi
    HCALL HC_XEN_VERSION
    CHECK_EQ64 "after-crash-xen-version", XEN_4_17
    cmpl $0, FAIL_COUNT
    jne finish
    call print_totals
    PRINTLN "xen-hypercall: SCHEDOP_shutdown(SHUTDOWN_poweroff)"
    xor %eax, %eax
    jmp shutdown

/* sched_op(SCHEDOP_shutdown, &(reason = %eax)): does not return. */
shutdown:
    mov %eax, ARG
    mov PASS_COUNT, %eax
    mov %eax, SAVED_PASS
    mov FAIL_COUNT, %eax
    mov %eax, SAVED_FAIL
    HCALL_ARG HC_SCHED_OP, 2
    incl FAIL_COUNT
    PUTS "FAIL sched-op-shutdown-returned: "
    mov %rcx, %rax
    call puthex64_lm
    mov $10, %al
    call putc_lm
    jmp finish

restore_counts:
    mov SAVED_PASS, %eax
    add %eax, PASS_COUNT
    mov SAVED_FAIL, %eax
    add %eax, FAIL_COUNT
    ret

write_hypercall_msr:
    mov $HC_MSR, %ecx
    mov $HC_PAGE, %eax
    xor %edx, %edx
    EXPECT_FAULT 2
    wrmsr
    FAULT_RESULT
    CHECK_EQ "hypercall-msr-write", NO_FAULT
    ret

/* public/version.h. */
xen_version:
    xor %edi, %edi                      /* XENVER_version */
    HCALL HC_XEN_VERSION
    CHECK_EQ64 "xen-version-4.17", XEN_4_17
    mov $7, %edi                        /* XENVER_pagesize */
    HCALL HC_XEN_VERSION
    CHECK_EQ64 "xen-version-pagesize", 4096
    movl $0, ARG                        /* xen_feature_info (submap_idx 0) */
    movl $0, ARG + 4
    HCALL_ARG HC_XEN_VERSION, 6         /* XENVER_get_features */
    CHECK_EQ64 "xen-version-get-features", 0
    mov ARG + 4, %ecx
    and $0x104, %ecx                    /* auto_translated_physmap, hvm_callback_vector */
    CHECK_EQ "xen-features-auto-translated-and-callback-vector", 0x104
    HCALL_ARG HC_XEN_VERSION, 1         /* XENVER_extraversion: 16 bytes */
    CHECK_EQ64 "xen-version-extraversion", 0
    /* VMCALL/VMMCALL without the page. */
    mov $HC_XEN_VERSION, %eax
    xor %edi, %edi
    XEN_TRAP
    mov %rax, %rcx
    CHECK_EQ64 "hypercall64-vmcall-xen-version", XEN_4_17
    /* The 64-bit convention's number is all of RAX (hvm_hypercall). */
    movabs $(0x100000000 + HC_XEN_VERSION), %rax
    xor %edi, %edi
    XEN_TRAP
    mov %rax, %rcx
    CHECK_EQ64 "hypercall64-rax-upper-half-enosys", ENOSYS
    ret

/* public/hvm/hvm_op.h, params.h. */
hvm_params:
    HVM_PARAM DOMID_SELF, 0, 0x02000000000000F3     /* CALLBACK_IRQ: vector 0xF3 */
    HCALL_ARG HC_HVM_OP, 0
    CHECK_EQ64 "hvm-set-param-callback-vector", 0
    HVM_PARAM DOMID_SELF, 0, 0
    HCALL_ARG HC_HVM_OP, 1
    CHECK_EQ64 "hvm-get-param-callback-irq", 0
    mov ARG + 8, %rcx
    CHECK_EQ64 "hvm-callback-irq-reads-back", 0x02000000000000F3
    HVM_PARAM 1, 1, 0                   /* STORE_PFN, by domid 1 (itself) */
    HCALL_ARG HC_HVM_OP, 1
    CHECK_EQ64 "hvm-get-param-store-pfn", 0
    mov ARG + 8, %rcx
    CHECK_GE "hvm-store-pfn", 1
    HVM_PARAM DOMID_SELF, 17, 0         /* CONSOLE_PFN */
    HCALL_ARG HC_HVM_OP, 1
    CHECK_EQ64 "hvm-get-param-console-pfn", 0
    mov ARG + 8, %rcx
    CHECK_GE "hvm-console-pfn", 1
    HVM_PARAM DOMID_SELF, 39, 0         /* HVM_NR_PARAMS */
    HCALL_ARG HC_HVM_OP, 1
    CHECK_EQ64 "hvm-get-param-past-nr-params-einval", EINVAL
    HVM_PARAM DOMID_SELF, 12, 0         /* IDENT_PT: not the guest's to read */
    HCALL_ARG HC_HVM_OP, 1
    CHECK_EQ64 "hvm-get-param-ident-pt-eperm", EPERM
    HVM_PARAM DOMID_SELF, 1, 0x1000     /* STORE_PFN: not the guest's to set */
    HCALL_ARG HC_HVM_OP, 0
    CHECK_EQ64 "hvm-set-param-store-pfn-eperm", EPERM
    HVM_PARAM 5, 1, 0                   /* another domain */
    HCALL_ARG HC_HVM_OP, 1
    CHECK_EQ64 "hvm-get-param-other-domain-esrch", ESRCH
    HCALL_ARG HC_HVM_OP, 99
    CHECK_EQ64 "hvm-op-unknown-enosys", ENOSYS
    ret

/* add_to_physmap(XENMAPSPACE_shared_info) at a page of the guest's RAM:
   Xen's page hides the RAM there. */
shared_info:
    movl $RAM_MARK, SHINFO
    PHYSMAP 0, 0, (SHINFO >> 12)
    HCALL_ARG HC_MEMORY_OP, 7           /* XENMEM_add_to_physmap */
    CHECK_EQ64 "memory-op-add-to-physmap-shared-info", 0
    mov SHINFO + SHARED_INFO_EVTCHN_MASK, %rcx
    CHECK_EQ64 "shared-info-every-port-masked", -1
    mov SHINFO + SHARED_INFO_WC_SEC, %ecx
    CHECK_GE "shared-info-wallclock-set", 1
    ret

/* public/event_channel.h, 2-level ABI, delivered by the callback vector. */
event_channels:
    movl $0, UPCALLS
    movq $0, SEL_SEEN
    movq $0, PEND_SEEN
    EVTCHN_ARG 0                        /* bind_ipi (vcpu 0, OUT port) */
    HCALL_ARG HC_EVENT_CHANNEL_OP, 7
    CHECK_EQ64 "evtchn-bind-ipi", 0
    mov ARG + 4, %eax
    mov %eax, IPI_PORT
    mov %eax, %ecx
    CHECK_GE "evtchn-ipi-port", 1
    mov IPI_PORT, %eax
    EVTCHN_ARG DOMID_SELF               /* status (dom, port, OUT status) */
    mov %eax, ARG + 4
    HCALL_ARG HC_EVENT_CHANNEL_OP, 5
    CHECK_EQ64 "evtchn-status-ipi", 0
    mov ARG + 8, %ecx
    CHECK_EQ "evtchn-status-is-ipi", 5
    sti
    /* Masked: send marks it pending, no upcall. */
    mov IPI_PORT, %eax
    EVTCHN_ARG 0
    mov %eax, ARG
    HCALL_ARG HC_EVENT_CHANNEL_OP, 4
    CHECK_EQ64 "evtchn-send-masked", 0
    mov UPCALLS, %ecx
    CHECK_EQ "evtchn-masked-no-upcall", 0
    mov SHINFO + SHARED_INFO_EVTCHN_PENDING, %rax
    mov IPI_PORT, %ecx
    shr %cl, %rax
    and $1, %eax
    mov %eax, %ecx
    CHECK_EQ "evtchn-masked-port-pending", 1
    /* Unmask: the pending port upcalls through the callback vector. */
    mov IPI_PORT, %eax
    mov %eax, ARG
    HCALL_ARG HC_EVENT_CHANNEL_OP, 9
    CHECK_EQ64 "evtchn-unmask", 0
    call wait_upcall
    mov UPCALLS, %ecx
    CHECK_EQ "evtchn-unmask-delivers-callback-vector", 1
    mov SEL_SEEN, %rcx
    CHECK_EQ64 "evtchn-upcall-pending-sel-word-0", 1
    mov PEND_SEEN, %rax
    mov IPI_PORT, %ecx
    shr %cl, %rax
    and $1, %eax
    mov %eax, %ecx
    CHECK_EQ "evtchn-upcall-sees-ipi-port", 1
    /* Unmasked: send upcalls at once. */
    mov IPI_PORT, %eax
    mov %eax, ARG
    HCALL_ARG HC_EVENT_CHANNEL_OP, 4
    CHECK_EQ64 "evtchn-send-ipi", 0
    call wait_upcall
    mov UPCALLS, %ecx
    CHECK_EQ "evtchn-send-delivers-callback-vector", 2
    cli
    /* alloc_unbound (dom, remote_dom 0, OUT port), status, send, close. */
    EVTCHN_ARG (DOMID_SELF | (0 << 16))
    HCALL_ARG HC_EVENT_CHANNEL_OP, 6
    CHECK_EQ64 "evtchn-alloc-unbound", 0
    mov ARG + 4, %eax
    mov %eax, UNBOUND_PORT
    EVTCHN_ARG DOMID_SELF
    mov %eax, ARG + 4
    HCALL_ARG HC_EVENT_CHANNEL_OP, 5
    CHECK_EQ64 "evtchn-status-unbound", 0
    mov ARG + 8, %ecx
    CHECK_EQ "evtchn-status-is-unbound", 1
    mov ARG + 16, %ecx
    CHECK_EQ "evtchn-unbound-remote-dom-0", 0
    mov UNBOUND_PORT, %eax
    mov %eax, ARG
    HCALL_ARG HC_EVENT_CHANNEL_OP, 4
    CHECK_EQ64 "evtchn-send-unbound-goes-nowhere", 0
    mov UNBOUND_PORT, %eax
    mov %eax, ARG
    HCALL_ARG HC_EVENT_CHANNEL_OP, 3
    CHECK_EQ64 "evtchn-close", 0
    mov UNBOUND_PORT, %eax
    EVTCHN_ARG DOMID_SELF
    mov %eax, ARG + 4
    HCALL_ARG HC_EVENT_CHANNEL_OP, 5
    CHECK_EQ64 "evtchn-status-after-close", 0
    mov ARG + 8, %ecx
    CHECK_EQ "evtchn-closed-port-is-closed", 0
    mov UNBOUND_PORT, %eax
    mov %eax, ARG
    HCALL_ARG HC_EVENT_CHANNEL_OP, 3
    CHECK_EQ64 "evtchn-close-twice-einval", EINVAL
    /* Ports out of range (NR_EVENT_CHANNELS is 4096 for 2-level). */
    EVTCHN_ARG 4096
    HCALL_ARG HC_EVENT_CHANNEL_OP, 4
    CHECK_EQ64 "evtchn-send-port-4096-einval", EINVAL
    EVTCHN_ARG 0xFFFFFFFF
    HCALL_ARG HC_EVENT_CHANNEL_OP, 3
    CHECK_EQ64 "evtchn-close-port-ffffffff-einval", EINVAL
    EVTCHN_ARG 4096
    HCALL_ARG HC_EVENT_CHANNEL_OP, 9
    CHECK_EQ64 "evtchn-unmask-port-4096-einval", EINVAL
    EVTCHN_ARG DOMID_SELF, 4096
    HCALL_ARG HC_EVENT_CHANNEL_OP, 5
    CHECK_EQ64 "evtchn-status-port-4096-einval", EINVAL
    /* Port 0 is reserved: closed, and never sent on. */
    EVTCHN_ARG DOMID_SELF, 0
    HCALL_ARG HC_EVENT_CHANNEL_OP, 5
    CHECK_EQ64 "evtchn-status-port-0", 0
    mov ARG + 8, %ecx
    CHECK_EQ "evtchn-port-0-is-closed", 0
    EVTCHN_ARG 0
    HCALL_ARG HC_EVENT_CHANNEL_OP, 4
    CHECK_EQ64 "evtchn-send-port-0-einval", EINVAL
    EVTCHN_ARG 5                        /* bind_ipi on a vCPU that does not exist */
    HCALL_ARG HC_EVENT_CHANNEL_OP, 7
    CHECK_EQ64 "evtchn-bind-ipi-vcpu-5-enoent", ENOENT
    EVTCHN_ARG 5, 1                     /* status of another domain's port */
    HCALL_ARG HC_EVENT_CHANNEL_OP, 5
    CHECK_EQ64 "evtchn-status-other-domain-esrch", ESRCH
    HCALL_ARG HC_EVENT_CHANNEL_OP, 99
    CHECK_EQ64 "evtchn-op-unknown-enosys", ENOSYS
    ret

/* With IF set, a pending callback vector is taken at the next instruction
   boundary; the loop only bounds a Keel that never delivers. */
wait_upcall:
    mov UPCALLS, %edx
    mov $100000, %ecx
1:  cmp UPCALLS, %edx
    jne 2f
    pause
    dec %ecx
    jnz 1b
2:  ret

/* The callback vector: what Linux's evtchn upcall does, for word 0. */
upcall_handler:
    push %rax
    incl UPCALLS
    movb $0, SHINFO + SHARED_INFO_VCPU0_UPCALL_PENDING
    xor %eax, %eax
    xchg %rax, SHINFO + SHARED_INFO_VCPU0_PENDING_SEL
    or %rax, SEL_SEEN
    mov SHINFO + SHARED_INFO_EVTCHN_MASK, %rax
    not %rax
    and SHINFO + SHARED_INFO_EVTCHN_PENDING, %rax
    or %rax, PEND_SEEN
    not %rax
    lock and %rax, SHINFO + SHARED_INFO_EVTCHN_PENDING
    pop %rax
    iretq

/* public/grant_table.h, v1. */
grant_tables:
    movl $DOMID_SELF, ARG               /* query_size (dom, OUT nr, max, status) */
    movl $0xFFFFFFFF, ARG + 4
    movl $0xFFFFFFFF, ARG + 8
    movl $0xFFFFFFFF, ARG + 12
    mov $6, %edi
    mov $ARG, %esi
    mov $1, %edx
    HCALL HC_GRANT_TABLE_OP
    CHECK_EQ64 "gnttab-query-size", 0
    mov ARG + 4, %ecx
    CHECK_GE "gnttab-nr-frames", 1
    mov ARG + 8, %ecx
    CHECK_EQ "gnttab-max-nr-frames", 32
    movzwl ARG + 12, %ecx
    CHECK_EQ "gnttab-query-size-gntst-okay", 0
    movl $1, ARG                        /* set_version (version) */
    mov $8, %edi
    mov $ARG, %esi
    mov $1, %edx
    HCALL HC_GRANT_TABLE_OP
    CHECK_EQ64 "gnttab-set-version-1", 0
    movl $2, ARG
    mov $8, %edi
    mov $ARG, %esi
    mov $1, %edx
    HCALL HC_GRANT_TABLE_OP
    CHECK_EQ64 "gnttab-set-version-2-enosys", ENOSYS
    mov ARG, %ecx
    CHECK_EQ "gnttab-set-version-2-leaves-1", 1
    movl $3, ARG
    mov $8, %edi
    mov $ARG, %esi
    mov $1, %edx
    HCALL HC_GRANT_TABLE_OP
    CHECK_EQ64 "gnttab-set-version-3-einval", EINVAL
    movl $DOMID_SELF, ARG               /* get_version (dom, pad, OUT version) */
    movl $0, ARG + 4
    mov $10, %edi
    mov $ARG, %esi
    mov $1, %edx
    HCALL HC_GRANT_TABLE_OP
    CHECK_EQ64 "gnttab-get-version", 0
    mov ARG + 4, %ecx
    CHECK_EQ "gnttab-get-version-is-1", 1
    mov $99, %edi
    mov $ARG, %esi
    mov $1, %edx
    HCALL HC_GRANT_TABLE_OP
    CHECK_EQ64 "gnttab-op-unknown-enosys", ENOSYS
    /* Grant frame 0 in the PCI hole, where nothing answered before. */
    mov $GRANT_GPA, %eax
    mov (%rax), %rcx
    CHECK_EQ64 "grant-gpa-unclaimed-before", -1
    PHYSMAP 1, 0, (GRANT_GPA >> 12)
    HCALL_ARG HC_MEMORY_OP, 7
    CHECK_EQ64 "memory-op-add-to-physmap-grant-frame-in-pci-hole", 0
    mov $GRANT_GPA, %eax
    mov (%rax), %rcx
    CHECK_EQ64 "grant-frame-starts-zeroed", 0
    mov $GRANT_GPA, %eax
    movabs $0x0000000100000001, %rcx
    mov %rcx, (%rax)                    /* entry 0: flags GTF_permit_access, domid 0, frame 1 */
    mov (%rax), %rcx
    CHECK_EQ64 "grant-frame-keeps-an-entry", 0x0000000100000001
    PHYSMAP 1, 32, 0x100                /* frame index past the table */
    HCALL_ARG HC_MEMORY_OP, 7
    CHECK_EQ64 "add-to-physmap-grant-frame-32-einval", EINVAL
    PHYSMAP 1, 0x80000000, 0x100        /* a v2 status frame */
    HCALL_ARG HC_MEMORY_OP, 7
    CHECK_EQ64 "add-to-physmap-grant-status-frame-einval", EINVAL
    ret

/* Frames at addresses outside RAM. */
outside_ram:
    /* Shared info past the guest-physical address width (the p2m's
       check: -EINVAL, nothing mapped). */
    movl $DOMID_SELF, ARG
    movl $0, ARG + 4
    movq $0, ARG + 8
    mov MAXPHYADDR, %ecx
    sub $12, %ecx
    mov $1, %eax
    shl %cl, %rax
    mov %rax, ARG + 16
    HCALL_ARG HC_MEMORY_OP, 7
    CHECK_EQ64 "add-to-physmap-past-address-width-einval", EINVAL
    PHYSMAP 0, 0, 0x000FFFFFFFFFFFFF    /* the last gpfn there is */
    HCALL_ARG HC_MEMORY_OP, 7
    CHECK_EQ64 "add-to-physmap-last-gpfn-einval", EINVAL
    /* Shared info still where it was (the guest's RAM there holds 0). */
    mov SHINFO + SHARED_INFO_WC_SEC, %ecx
    CHECK_GE "shared-info-stays-placed", 1
    /* The hypercall page: #GP for a page that is not RAM or an index > 0. */
    mov $HC_MSR, %ecx
    xor %eax, %eax
    mov $1, %edx                        /* 4 GiB: no RAM there */
    EXPECT_FAULT 2
    wrmsr
    FAULT_RESULT
    CHECK_EQ "hypercall-msr-outside-ram-gp", GP0
    mov $HC_MSR, %ecx
    mov $(HC_PAGE | 1), %eax
    xor %edx, %edx
    EXPECT_FAULT 2
    wrmsr
    FAULT_RESULT
    CHECK_EQ "hypercall-msr-page-index-1-gp", GP0
    /* vcpu_op(register_vcpu_info) with a frame outside RAM. */
    movabs $0x100000, %rax              /* gfn of 4 GiB */
    mov %rax, ARG
    movq $0, ARG + 8
    mov $10, %edi
    xor %esi, %esi
    mov $ARG, %edx
    HCALL HC_VCPU_OP
    CHECK_EQ64 "vcpu-op-register-vcpu-info-outside-ram-einval", EINVAL
    ret

/* Hypercalls and sub-ops Xen has no handler for, and bad pointers. */
unknown_calls:
    mov $60, %edi
    HCALL 60
    CHECK_EQ64 "hypercall-60-enosys", ENOSYS
    mov $0x1000, %eax
    XEN_TRAP
    mov %rax, %rcx
    CHECK_EQ64 "hypercall-4096-enosys", ENOSYS
    mov $99, %edi
    HCALL HC_XEN_VERSION
    CHECK_EQ64 "xen-version-unknown-enosys", ENOSYS
    mov $63, %edi
    HCALL HC_MEMORY_OP
    CHECK_EQ64 "memory-op-unknown-enosys", ENOSYS
    mov $99, %edi
    HCALL HC_SCHED_OP
    CHECK_EQ64 "sched-op-unknown-enosys", ENOSYS
    mov $99, %edi
    xor %esi, %esi
    HCALL HC_VCPU_OP
    CHECK_EQ64 "vcpu-op-unknown-enosys", ENOSYS
    /* An argument where nothing is mapped (past the 4 GiB identity map). */
    mov $6, %edi
    movabs $0x100000000, %rsi
    HCALL HC_XEN_VERSION
    CHECK_EQ64 "xen-version-unmapped-argument-efault", EFAULT
    ret

/* Hypercalls from CPL 3: -EPERM, through the page and without it. */
from_ring3:
    IMAGE_PTR ring3_page, %ebx
    call run_ring3
    mov USER_RESULT, %rcx
    CHECK_EQ64 "cpl3-hypercall-page-eperm", EPERM
    IMAGE_PTR ring3_trap, %ebx
    call run_ring3
    mov USER_RESULT, %rcx
    CHECK_EQ64 "cpl3-vmcall-eperm", EPERM
    ret

ring3_page:
    xor %edi, %edi
    mov $(HC_PAGE + 32 * HC_XEN_VERSION), %r11d
    call *%r11
    mov %rax, USER_RESULT
    int $RING0_VECTOR
ring3_trap:
    mov $HC_XEN_VERSION, %eax
    xor %edi, %edi
    XEN_TRAP
    mov %rax, USER_RESULT
    int $RING0_VECTOR

/* Runs the code at %rbx at CPL 3 (interrupts off) until it raises
   RING0_VECTOR; returns to the caller at CPL 0. */
run_ring3:
    movq $0, USER_RESULT
    mov %rsp, SAVED_RSP
    pushq $(SEL_UDATA | 3)
    pushq $USER_STACK
    pushq $2
    pushq $(SEL_UCODE64 | 3)
    push %rbx
    iretq
ring0_return:
    mov $SEL_DATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov SAVED_RSP, %rsp
    ret

/* Ring 3 for this guest: a GDT in RAM with user segments and a 64-bit TSS
   (SDM Vol 3A 8.2.3, 8.7), an IDT with the library's exception gates, the
   callback vector and a DPL 3 gate back to ring 0, and the U/S bit on the
   page tables' path to the low 2 MiB (code, stacks, state). The 8259As
   leave reset unmasked with vector base 0; the only interrupt this guest
   wants is the callback vector, so they are masked (OCW1). */
setup_cpu:
    mov $0xFF, %al
    out %al, $0x21
    out %al, $0xA1
    mov $GDT_RAM, %edi
    movq $0, (%rdi)
    movabs $0x00CF9B000000FFFF, %rax    /* SEL_CODE32 */
    mov %rax, 8(%rdi)
    movabs $0x00CF93000000FFFF, %rax    /* SEL_DATA */
    mov %rax, 16(%rdi)
    movabs $0x00AF9B000000FFFF, %rax    /* SEL_CODE64 */
    mov %rax, 24(%rdi)
    movabs $0x00AFFB000000FFFF, %rax    /* SEL_UCODE64: DPL 3, L */
    mov %rax, 32(%rdi)
    movabs $0x00CFF3000000FFFF, %rax    /* SEL_UDATA: DPL 3 */
    mov %rax, 40(%rdi)
    /* SEL_TSS: base TSS, limit 103, type 9 (available 64-bit TSS), present. */
    movabs $(0x0000890000000067 | ((TSS & 0xFFFF) << 16) | (((TSS >> 16) & 0xFF) << 32)), %rax
    mov %rax, 48(%rdi)
    movq $0, 56(%rdi)
    lgdt gdt_ram_desc(%rip)
    mov $TSS, %edi
    xor %eax, %eax
    mov $(104 / 8), %ecx
    rep stosq
    movq $RING0_STACK, TSS + 4          /* RSP0 */
    movw $104, TSS + 102                /* no I/O permission bitmap */
    mov $SEL_TSS, %ax
    ltr %ax
    /* IDT: the library's 32 exception gates, then ours. */
    mov $IDT64, %esi
    mov $IDT_RAM, %edi
    mov $(32 * 16 / 8), %ecx
    rep movsq
    xor %eax, %eax
    mov $((256 - 32) * 16 / 8), %ecx
    rep stosq
    IMAGE_PTR upcall_handler, %eax
    mov $CB_VECTOR, %ecx
    mov $0x8E00, %edx
    call set_gate
    IMAGE_PTR ring0_return, %eax
    mov $RING0_VECTOR, %ecx
    mov $0xEE00, %edx                   /* DPL 3 */
    call set_gate
    lidt idt_ram_desc(%rip)
    orl $4, PML4
    orl $4, PDPT
    orl $4, PD
    mov %cr3, %rax
    mov %rax, %cr3
    ret

/* Gate %ecx -> handler %eax, attributes %dx (P, DPL, 64-bit interrupt gate). */
set_gate:
    shl $4, %ecx
    add $IDT_RAM, %ecx
    mov %ax, (%rcx)
    movw $SEL_CODE64, 2(%rcx)
    mov %dx, 4(%rcx)
    shr $16, %eax
    mov %ax, 6(%rcx)
    movq $0, 8(%rcx)
    ret

    .pushsection .rodata.xen_tables, "a"
    .balign 8
gdt_ram_desc:
    .word 8 * 8 - 1
    .quad GDT_RAM
    .balign 8
idt_ram_desc:
    .word 256 * 16 - 1
    .quad IDT_RAM
    .popsection
"#,
    options(att_syntax)
);
