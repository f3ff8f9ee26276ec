//! A busybox root filesystem built from Debian's busybox-static, with no network.

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
user:x:1000:1000:Test User:/home/user:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";

const GROUP: &str = "root:x:0:\n\
daemon:x:1:\n\
tty:x:5:\n\
users:x:100:user\n\
user:x:1000:\n\
nogroup:x:65534:\n";

/// Path of a statically linked busybox on the host.
pub fn find_busybox() -> Result<PathBuf, String> {
    let candidates = ["/bin/busybox", "/usr/bin/busybox"];
    let bin = candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or(
        "busybox not found at /bin/busybox or /usr/bin/busybox (apt-get install busybox-static)",
    )?;
    if has_interp(&bin).map_err(|e| format!("read {}: {e}", bin.display()))? {
        return Err(format!(
            "{} is dynamically linked; install busybox-static",
            bin.display()
        ));
    }
    Ok(bin)
}

/// True if the ELF file has a PT_INTERP program header (i.e. needs a dynamic loader).
fn has_interp(path: &Path) -> io::Result<bool> {
    let data = fs::read(path)?;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "not a 64-bit little-endian ELF");
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        return Err(bad());
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(data[0x20..0x28].try_into().map_err(|_| bad())?) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        let t = data.get(o..o + 4).ok_or_else(bad)?;
        if u32::from_le_bytes(t.try_into().map_err(|_| bad())?) == 3 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Build a busybox rootfs in `dir` (which may exist). The first call in a test
/// process builds a pristine copy; later calls copy it (the binary is hardlinked).
pub fn busybox_rootfs(dir: &Path) -> Result<(), String> {
    let pristine = pristine()?;
    copy_tree(pristine, dir).map_err(|e| format!("copy rootfs to {}: {e}", dir.display()))
}

fn pristine() -> Result<&'static Path, String> {
    static PRISTINE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PRISTINE
        .get_or_init(|| {
            let dir =
                std::env::temp_dir().join(format!("corral-test-rootfs-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            build(&dir)?;
            register_removal(&dir);
            Ok(dir)
        })
        .as_ref()
        .map(|p| p.as_path())
        .map_err(Clone::clone)
}

fn register_removal(dir: &Path) {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let _ = DIR.set(dir.to_path_buf());
    extern "C" fn remove_pristine() {
        if let Some(d) = DIR.get() {
            let _ = fs::remove_dir_all(d);
        }
        crate::runtime::remove_cgroup_parents();
    }
    // SAFETY: remove_pristine is a plain extern "C" fn with no arguments that
    // touches only statics initialised before registration.
    unsafe { libc::atexit(remove_pristine) };
}

fn build(dir: &Path) -> Result<(), String> {
    let busybox = find_busybox()?;
    let err = |what: &str, p: &Path, e: io::Error| format!("{what} {}: {e}", p.display());
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "root",
        "home/user",
        "run",
        "var",
        "mnt",
    ] {
        let p = dir.join(d);
        fs::create_dir_all(&p).map_err(|e| err("mkdir", &p, e))?;
    }
    let tmp = dir.join("tmp");
    fs::create_dir_all(&tmp).map_err(|e| err("mkdir", &tmp, e))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777))
        .map_err(|e| err("chmod", &tmp, e))?;
    let bin = dir.join("bin/busybox");
    fs::copy(&busybox, &bin).map_err(|e| err("copy busybox to", &bin, e))?;
    let list = Command::new(&busybox)
        .arg("--list-full")
        .output()
        .map_err(|e| format!("run {} --list-full: {e}", busybox.display()))?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim().trim_start_matches('/');
        if applet.is_empty() || applet == "bin/busybox" {
            continue;
        }
        let link = dir.join(applet);
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).map_err(|e| err("mkdir", parent, e))?;
        }
        if link.symlink_metadata().is_err() {
            symlink("/bin/busybox", &link).map_err(|e| err("symlink", &link, e))?;
        }
    }
    for (name, text) in [
        ("etc/passwd", PASSWD),
        ("etc/group", GROUP),
        ("etc/hostname", "corral\n"),
    ] {
        let p = dir.join(name);
        fs::write(&p, text).map_err(|e| err("write", &p, e))?;
    }
    let user_home = dir.join("home/user");
    std::os::unix::fs::chown(&user_home, Some(1000), Some(1000))
        .map_err(|e| err("chown", &user_home, e))?;
    Ok(())
}

/// Copy a tree preserving modes, owners and symlinks; large regular files are
/// hardlinked (they are never written by tests), small ones copied.
fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::symlink_metadata(src)?;
    fs::create_dir_all(dst)?;
    fs::set_permissions(dst, meta.permissions())?;
    std::os::unix::fs::chown(dst, Some(meta.uid()), Some(meta.gid()))?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let ft = entry.file_type()?;
        if ft.is_dir() {
            copy_tree(&from, &to)?;
        } else if ft.is_symlink() {
            symlink(fs::read_link(&from)?, &to)?;
        } else {
            let m = entry.metadata()?;
            if m.len() > 64 * 1024 && fs::hard_link(&from, &to).is_ok() {
                continue;
            }
            fs::copy(&from, &to)?;
            std::os::unix::fs::chown(&to, Some(m.uid()), Some(m.gid()))?;
        }
    }
    Ok(())
}
