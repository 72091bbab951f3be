//! What a step may do that Landlock cannot say: a seccomp filter against
//! Unix sockets, and no capabilities to pass on.

use std::io;

// <linux/audit.h>: the architectures the filter knows.
#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: u32 = 0xC000_00B7;

/// x32 system calls come in as x86_64 ones with this bit set in the number.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// Offsets in `struct seccomp_data`: nr, arch, then args[0] (whose low 32
// bits come first on these little-endian architectures).
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG0_LOW: u32 = 16;

/// The filter a step runs under, built before the fork (the child of a
/// fork may not allocate).
pub struct Filter(Vec<libc::sock_filter>);

/// A step cannot open a Unix socket: Landlock (up to ABI 7) does not check
/// connect() to a socket file, and the sockets of the server's user (the
/// systemd user manager, D-Bus, ssh-agent, tmux, docker) run code outside
/// the sandbox. `socketpair` stays (a pipe between its own processes).
/// io_uring is refused too: its socket operation bypasses this filter.
/// Any other architecture than the native one (x32 on x86_64 included)
/// is refused, or a system call could be reached by another number.
pub fn filter() -> Filter {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    let load = |offset| stmt(BPF_LD | BPF_W | BPF_ABS, offset);
    let ret = |action| stmt(BPF_RET | BPF_K, action);
    // Jumps over the next instruction unless equal.
    let if_eq = |value| jump(BPF_JMP | BPF_JEQ | BPF_K, value, 0, 1);
    let deny = libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32 & libc::SECCOMP_RET_DATA);
    let mut program = vec![
        load(ARCH),
        jump(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 1, 0),
        ret(libc::SECCOMP_RET_KILL_PROCESS),
        load(NR),
    ];
    #[cfg(target_arch = "x86_64")]
    program.extend([
        jump(libc::BPF_JMP | libc::BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1),
        ret(deny),
    ]);
    program.extend([
        if_eq(libc::SYS_io_uring_setup as u32),
        ret(deny),
        jump(BPF_JMP | BPF_JEQ | BPF_K, libc::SYS_socket as u32, 1, 0),
        ret(libc::SECCOMP_RET_ALLOW),
        // socket(): the family is an int, so its low 32 bits are all the
        // kernel reads.
        load(ARG0_LOW),
        if_eq(libc::AF_UNIX as u32),
        ret(deny),
        ret(libc::SECCOMP_RET_ALLOW),
    ]);
    Filter(program)
}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

impl Filter {
    /// Installs the filter on the calling thread and its future children,
    /// for good (with no_new_privs, which it needs). Only system calls:
    /// safe between fork and exec.
    pub fn install(&self) -> io::Result<()> {
        let program = libc::sock_fprog {
            len: self.0.len() as u16,
            filter: self.0.as_ptr().cast_mut(),
        };
        // SAFETY: plain prctl calls; the program outlives the call, and
        // the kernel copies it.
        #[allow(unsafe_code)]
        let failed = unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &program as *const libc::sock_fprog,
                ) != 0
        };
        if failed {
            let e = io::Error::last_os_error();
            return Err(io::Error::other(format!(
                "cannot install the seccomp filter that keeps steps from Unix sockets: {e}"
            )));
        }
        Ok(())
    }
}

/// Leaves `sh` no capability to inherit: the ambient set cleared, the
/// inheritable set emptied, and the bounding set dropped where this process
/// may (root, or a service given CAP_SETPCAP). A non-root service given
/// ambient capabilities would otherwise pass them to every step.
pub fn drop_capabilities() -> io::Result<()> {
    // SAFETY: plain prctl calls.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::other(format!(
            "cannot clear the ambient capabilities: {}",
            io::Error::last_os_error()
        )));
    }
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(63)
        .min(63);
    for cap in 0..=last {
        // SAFETY: a plain prctl call.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        if rc != 0 {
            // EPERM: no CAP_SETPCAP, so no capability to lose either.
            break;
        }
    }
    clear_inheritable()
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: two `CapData`, for 64 capabilities.
const CAP_VERSION_3: u32 = 0x2008_0522;

fn clear_inheritable() -> io::Result<()> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and data are as the kernel expects for version 3.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if data.iter().all(|d| d.inheritable == 0) {
        return Ok(());
    }
    for d in &mut data {
        d.inheritable = 0;
    }
    // SAFETY: as above; lowering the inheritable set is always allowed.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::other(format!(
            "cannot clear the inheritable capabilities: {}",
            io::Error::last_os_error()
        )));
    }
    Ok(())
}
