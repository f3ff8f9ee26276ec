//! The tiny supervisor's only unsafe code: raw x86_64 Linux system calls
//! (no libc), the process entry point and the few memory functions the
//! compiler may call. Everything above this module is safe Rust over the
//! typed wrappers here.
//!
//! Also compiled into corral-shim's unit tests (`#[cfg(test)]`), where the
//! system calls run in an ordinary std process; the entry point, panic
//! handler and memory functions are then left out (std has its own).

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!("the tiny supervisor speaks x86_64 Linux system calls only");

use core::arch::asm;

/// A failed system call's error number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

pub const ENOENT: Errno = Errno(2);
pub const EINTR: Errno = Errno(4);
pub const EAGAIN: Errno = Errno(11);
pub const ECHILD: Errno = Errno(10);
pub const EIO: Errno = Errno(5);
const E2BIG: Errno = Errno(7);

impl Errno {
    /// The symbolic name of the errors a supervisor meets in practice.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            4 => "EINTR",
            5 => "EIO",
            7 => "E2BIG",
            8 => "ENOEXEC",
            9 => "EBADF",
            10 => "ECHILD",
            11 => "EAGAIN",
            12 => "ENOMEM",
            13 => "EACCES",
            14 => "EFAULT",
            20 => "ENOTDIR",
            21 => "EISDIR",
            22 => "EINVAL",
            24 => "EMFILE",
            27 => "EFBIG",
            28 => "ENOSPC",
            30 => "EROFS",
            36 => "ENAMETOOLONG",
            122 => "EDQUOT",
            _ => return None,
        })
    }
}

pub type SysResult = Result<usize, Errno>;

fn check(ret: isize) -> SysResult {
    if (-4095..0).contains(&ret) {
        Err(Errno(-ret as i32))
    } else {
        Ok(ret as usize)
    }
}

const SYS_READ: usize = 0;
const SYS_WRITE: usize = 1;
const SYS_CLOSE: usize = 3;
const SYS_POLL: usize = 7;
const SYS_LSEEK: usize = 8;
const SYS_RT_SIGACTION: usize = 13;
const SYS_RT_SIGPROCMASK: usize = 14;
const SYS_WAIT4: usize = 61;
const SYS_KILL: usize = 62;
const SYS_FCNTL: usize = 72;
const SYS_FTRUNCATE: usize = 77;
const SYS_RENAME: usize = 82;
const SYS_PRCTL: usize = 157;
const SYS_CLOCK_GETTIME: usize = 228;
const SYS_EXIT_GROUP: usize = 231;
const SYS_OPENAT: usize = 257;
const SYS_SIGNALFD4: usize = 289;
const SYS_EXECVEAT: usize = 322;

/// # Safety
/// The arguments must be valid for system call `n` (pointers to live
/// memory of the size and mutability the kernel expects).
unsafe fn syscall(n: usize, a: [usize; 5]) -> isize {
    let ret: isize;
    // SAFETY: the x86_64 Linux syscall ABI: number in rax, arguments in
    // rdi, rsi, rdx, r10, r8; the kernel clobbers rcx and r11 only. The
    // caller vouches for the arguments.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// A NUL-terminated string: the bytes end with their only NUL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CStr<'a>(&'a [u8]);

impl<'a> CStr<'a> {
    pub const EMPTY: CStr<'static> = CStr(b"\0");

    /// `bytes` must end with a NUL and hold no other.
    pub const fn new(bytes: &'a [u8]) -> Option<CStr<'a>> {
        let n = bytes.len();
        if n == 0 || bytes[n - 1] != 0 {
            return None;
        }
        let mut i = 0;
        while i + 1 < n {
            if bytes[i] == 0 {
                return None;
            }
            i += 1;
        }
        Some(CStr(bytes))
    }

    /// The text without its NUL.
    pub fn bytes(self) -> &'a [u8] {
        &self.0[..self.0.len() - 1]
    }

    fn ptr(self) -> usize {
        self.0.as_ptr() as usize
    }
}

pub fn read(fd: i32, buf: &mut [u8]) -> SysResult {
    // SAFETY: the kernel writes at most buf.len() bytes into buf, which we
    // borrow exclusively for the call.
    check(unsafe {
        syscall(
            SYS_READ,
            [fd as usize, buf.as_mut_ptr() as usize, buf.len(), 0, 0],
        )
    })
}

pub fn write(fd: i32, buf: &[u8]) -> SysResult {
    // SAFETY: the kernel reads buf.len() bytes from buf, borrowed for the call.
    check(unsafe {
        syscall(
            SYS_WRITE,
            [fd as usize, buf.as_ptr() as usize, buf.len(), 0, 0],
        )
    })
}

pub fn close(fd: i32) {
    // SAFETY: no memory is passed; closing an fd we do not use is harmless
    // to memory safety (our fds are plain integers, not owned objects).
    let _ = unsafe { syscall(SYS_CLOSE, [fd as usize, 0, 0, 0, 0]) };
}

const AT_FDCWD: isize = -100;
pub const O_WRONLY: usize = 0o1;
pub const O_CREAT: usize = 0o100;
pub const O_APPEND: usize = 0o2000;
pub const O_CLOEXEC: usize = 0o2000000;

pub fn open(path: CStr, flags: usize, mode: usize) -> SysResult {
    // SAFETY: path is NUL-terminated (CStr's invariant) and borrowed for the call.
    check(unsafe { syscall(SYS_OPENAT, [AT_FDCWD as usize, path.ptr(), flags, mode, 0]) })
}

/// The file's size, read by seeking to its end.
pub fn seek_end(fd: i32) -> SysResult {
    // SAFETY: no memory is passed.
    check(unsafe { syscall(SYS_LSEEK, [fd as usize, 0, 2, 0, 0]) })
}

pub fn ftruncate(fd: i32, len: usize) -> SysResult {
    // SAFETY: no memory is passed.
    check(unsafe { syscall(SYS_FTRUNCATE, [fd as usize, len, 0, 0, 0]) })
}

pub fn rename(from: CStr, to: CStr) -> SysResult {
    // SAFETY: both paths are NUL-terminated and borrowed for the call.
    check(unsafe { syscall(SYS_RENAME, [from.ptr(), to.ptr(), 0, 0, 0]) })
}

/// Mark fd close-on-exec.
pub fn set_cloexec(fd: i32) -> SysResult {
    const F_SETFD: usize = 2;
    const FD_CLOEXEC: usize = 1;
    // SAFETY: no memory is passed.
    check(unsafe { syscall(SYS_FCNTL, [fd as usize, F_SETFD, FD_CLOEXEC, 0, 0]) })
}

/// Set the thread's name (comm, as `ps -e` and `top` show it).
pub fn set_name(name: CStr) -> SysResult {
    const PR_SET_NAME: usize = 15;
    // SAFETY: name is NUL-terminated; the kernel copies at most 16 bytes.
    check(unsafe { syscall(SYS_PRCTL, [PR_SET_NAME, name.ptr(), 0, 0, 0]) })
}

pub fn set_child_subreaper() -> SysResult {
    const PR_SET_CHILD_SUBREAPER: usize = 36;
    // SAFETY: no memory is passed.
    check(unsafe { syscall(SYS_PRCTL, [PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0]) })
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PollFd {
    pub fd: i32,
    pub events: i16,
    pub revents: i16,
}

pub const POLLIN: i16 = 1;

pub fn poll(fds: &mut [PollFd], timeout_ms: i32) -> SysResult {
    // SAFETY: PollFd is laid out as struct pollfd; the kernel updates
    // revents within fds.len() entries we borrow exclusively.
    check(unsafe {
        syscall(
            SYS_POLL,
            [
                fds.as_mut_ptr() as usize,
                fds.len(),
                timeout_ms as isize as usize,
                0,
                0,
            ],
        )
    })
}

pub fn kill(pid: i32, sig: i32) -> SysResult {
    // SAFETY: no memory is passed.
    check(unsafe { syscall(SYS_KILL, [pid as isize as usize, sig as usize, 0, 0, 0]) })
}

pub const WNOHANG: usize = 1;

/// wait4: (pid, raw wait status); pid 0 with WNOHANG when none has ended.
pub fn wait4(pid: i32, flags: usize) -> Result<(i32, i32), Errno> {
    let mut status: i32 = 0;
    // SAFETY: the kernel stores one int into `status`, borrowed for the
    // call; the rusage pointer is null.
    let ret = check(unsafe {
        syscall(
            SYS_WAIT4,
            [
                pid as isize as usize,
                &mut status as *mut i32 as usize,
                flags,
                0,
                0,
            ],
        )
    })?;
    Ok((ret as i32, status))
}

/// A set of signals as the kernel's 64-bit mask (bit sig-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigSet(pub u64);

impl SigSet {
    pub fn of(sigs: &[i32]) -> SigSet {
        SigSet(sigs.iter().fold(0, |m, &s| m | 1 << (s - 1)))
    }
}

pub fn block(set: SigSet) -> SysResult {
    const SIG_BLOCK: usize = 0;
    // SAFETY: the kernel reads 8 bytes (the size passed) from `set`; the
    // old-mask pointer is null.
    check(unsafe {
        syscall(
            SYS_RT_SIGPROCMASK,
            [SIG_BLOCK, &set.0 as *const u64 as usize, 0, 8, 0],
        )
    })
}

pub const SFD_NONBLOCK: usize = 0o4000;
pub const SFD_CLOEXEC: usize = 0o2000000;

pub fn signalfd(set: SigSet, flags: usize) -> SysResult {
    // SAFETY: the kernel reads the 8-byte mask from `set`; -1 asks for a new fd.
    check(unsafe {
        syscall(
            SYS_SIGNALFD4,
            [usize::MAX, &set.0 as *const u64 as usize, 8, flags, 0],
        )
    })
}

/// Set `sig`'s disposition to ignore.
pub fn ignore(sig: i32) -> SysResult {
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    const SIG_IGN: usize = 1;
    let act = KernelSigaction {
        handler: SIG_IGN,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: `act` is the kernel's struct sigaction layout for x86_64 and
    // installs no code (SIG_IGN, so no restorer is needed); the old-action
    // pointer is null; 8 is the mask size.
    check(unsafe {
        syscall(
            SYS_RT_SIGACTION,
            [
                sig as usize,
                &act as *const KernelSigaction as usize,
                0,
                8,
                0,
            ],
        )
    })
}

pub const CLOCK_REALTIME: usize = 0;
pub const CLOCK_MONOTONIC: usize = 1;

/// (seconds, nanoseconds) of `clock`.
pub fn clock(clock: usize) -> (i64, u32) {
    let mut ts = [0i64; 2];
    // SAFETY: the kernel stores a struct timespec (two i64 on x86_64) into
    // `ts`, borrowed for the call.
    let ret = unsafe {
        syscall(
            SYS_CLOCK_GETTIME,
            [clock, ts.as_mut_ptr() as usize, 0, 0, 0],
        )
    };
    // Both clocks always exist; a failure would leave the epoch.
    let _ = check(ret);
    (ts[0], ts[1] as u32)
}

pub fn exit(code: i32) -> ! {
    // SAFETY: exit_group takes no memory and does not return (noreturn).
    unsafe {
        asm!(
            "syscall",
            in("rax") SYS_EXIT_GROUP,
            in("rdi") code as isize,
            options(noreturn, nostack),
        )
    }
}

/// Arguments exec takes at most (the caller's argv is copied into a
/// null-terminated pointer array of this size on the stack).
pub const MAX_ARGS: usize = 256;

/// What the kernel handed the process at start: argv and the environment.
pub struct Startup {
    argc: usize,
    argv: *const *const u8,
    envp: *const *const u8,
}

impl Startup {
    pub fn argc(&self) -> usize {
        self.argc
    }

    /// Argument `i` (with its NUL), None past the end.
    pub fn arg(&self, i: usize) -> Option<CStr<'static>> {
        if i >= self.argc {
            return None;
        }
        // SAFETY: the kernel put argc valid pointers to NUL-terminated
        // strings on the initial stack, which lives (unmodified: nothing
        // writes to it) until the process execs or exits.
        unsafe {
            let p = *self.argv.add(i);
            let mut len = 0;
            // Volatile: a plain loop would be turned into a strlen call,
            // which this libc-less binary does not have.
            while core::ptr::read_volatile(p.add(len)) != 0 {
                len += 1;
            }
            Some(CStr(core::slice::from_raw_parts(p, len + 1)))
        }
    }

    /// execveat(fd, "", argv, our environment, AT_EMPTY_PATH): run the
    /// file open at `fd`. Returns only on failure.
    pub fn exec_fd(&self, fd: i32, argv: &[CStr]) -> Errno {
        const AT_EMPTY_PATH: usize = 0x1000;
        if argv.len() > MAX_ARGS {
            return E2BIG;
        }
        let mut ptrs = [core::ptr::null::<u8>(); MAX_ARGS + 1];
        for (p, a) in ptrs.iter_mut().zip(argv) {
            *p = a.0.as_ptr();
        }
        // SAFETY: ptrs is a null-terminated array of NUL-terminated strings
        // that outlive the call (argv's borrows, and ptrs itself on our
        // stack); envp is the kernel's own null-terminated environment.
        let ret = unsafe {
            syscall(
                SYS_EXECVEAT,
                [
                    fd as usize,
                    CStr::EMPTY.ptr(),
                    ptrs.as_ptr() as usize,
                    self.envp as usize,
                    AT_EMPTY_PATH,
                ],
            )
        };
        match check(ret) {
            Err(e) => e,
            Ok(_) => Errno(0),
        }
    }
}

/// Entry point, panic handler and memory functions of the no_std binary.
#[cfg(not(test))]
mod entry {
    use super::Startup;

    core::arch::global_asm!(
        ".globl _start",
        "_start:",
        "xor ebp, ebp",
        "mov rdi, rsp",
        "and rsp, -16",
        "call {start}",
        "ud2",
        start = sym start,
    );

    /// # Safety
    /// Called once by `_start` with the initial stack pointer: argc, then
    /// argv's pointers and a null, then envp's pointers and a null.
    unsafe extern "C" fn start(sp: *const usize) -> ! {
        // SAFETY: the System V x86_64 process start layout described above.
        let startup = unsafe {
            let argc = *sp;
            let argv = sp.add(1) as *const *const u8;
            Startup {
                argc,
                argv,
                envp: argv.add(argc + 1),
            }
        };
        crate::supervise::run(&startup)
    }

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo) -> ! {
        let _ = super::write(2, b"corral-shim: tiny supervisor panicked\n");
        super::exit(125)
    }

    /// # Safety
    /// C memcpy: the ranges are valid and do not overlap.
    #[no_mangle]
    unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        // SAFETY: rep movsb copies rcx bytes from rsi to rdi, forward
        // (the ABI guarantees the direction flag is clear); the caller
        // vouches for the ranges.
        unsafe {
            core::arch::asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _,
                inout("rsi") src => _, options(nostack, preserves_flags));
        }
        dst
    }

    /// # Safety
    /// C memmove: the ranges are valid and may overlap.
    #[no_mangle]
    unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize) + n {
            // SAFETY: a forward copy is correct when dst does not start
            // inside the source range.
            return unsafe { memcpy(dst, src, n) };
        }
        // SAFETY: copy backwards from the last byte (direction flag set
        // for the copy, cleared after as the ABI requires).
        unsafe {
            core::arch::asm!("std", "rep movsb", "cld", inout("rcx") n => _,
                inout("rdi") dst.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
                options(nostack));
        }
        dst
    }

    /// # Safety
    /// C memset: the range is valid.
    #[no_mangle]
    unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
        // SAFETY: rep stosb stores al into rcx bytes from rdi; the caller
        // vouches for the range.
        unsafe {
            core::arch::asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _,
                in("al") c as u8, options(nostack, preserves_flags));
        }
        dst
    }

    /// # Safety
    /// C memcmp: both ranges are valid for n bytes.
    #[no_mangle]
    unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        let mut i = 0;
        while i < n {
            // SAFETY: i < n and both ranges hold n bytes. Volatile reads keep
            // the compiler from turning this loop back into a memcmp call.
            let (x, y) = unsafe {
                (
                    core::ptr::read_volatile(a.add(i)),
                    core::ptr::read_volatile(b.add(i)),
                )
            };
            if x != y {
                return x as i32 - y as i32;
            }
            i += 1;
        }
        0
    }

    /// # Safety
    /// As memcmp.
    #[no_mangle]
    unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        // SAFETY: same contract as memcmp.
        unsafe { memcmp(a, b, n) }
    }
}
