//! config.json mount `options` -> mount(2) flags, propagation changes,
//! mount_setattr(2) recursive attributes and filesystem data.

use nix::mount::MsFlags;

/// Not in nix's `MsFlags` (Linux 5.10+).
pub const MS_NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW);

/// The flags a `MS_REMOUNT|MS_BIND` can change: they belong to the mount, not the superblock.
pub const PER_MOUNT: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NOATIME)
    .union(MsFlags::MS_NODIRATIME)
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME)
    .union(MS_NOSYMFOLLOW);

pub const ATIME: MsFlags = MsFlags::MS_NOATIME
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME);

/// Every option keyword `parse_options` understands (for `corral-runtime features`).
/// "idmap"/"ridmap" are recognized only to be refused, so they are not listed.
pub const MOUNT_OPTIONS: &[&str] = &[
    "acl",
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "iversion",
    "lazytime",
    "loud",
    "mand",
    "noacl",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "noiversion",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "notmpcopyup",
    "private",
    "ratime",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    "tmpcopyup",
    "unbindable",
];

/// mount_setattr(2) attribute bits (linux/mount.h); libc does not export them.
pub mod attr {
    pub const RDONLY: u64 = 0x1;
    pub const NOSUID: u64 = 0x2;
    pub const NODEV: u64 = 0x4;
    pub const NOEXEC: u64 = 0x8;
    pub const ATIME_MASK: u64 = 0x70;
    pub const RELATIME: u64 = 0x0;
    pub const NOATIME: u64 = 0x10;
    pub const STRICTATIME: u64 = 0x20;
    pub const NODIRATIME: u64 = 0x80;
    pub const NOSYMFOLLOW: u64 = 0x20_0000;
}

/// One mount's options, sorted by what consumes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags to set in mount(2).
    pub flags: MsFlags,
    /// Flags the config explicitly turned off ("rw", "suid", "exec", ...).
    pub cleared: MsFlags,
    /// Propagation changes, applied in order after the mount.
    pub propagation: Vec<MsFlags>,
    /// mount_setattr(2) with AT_RECURSIVE ("rro", "rnosuid", ...).
    pub rec_set: u64,
    pub rec_clr: u64,
    /// Filesystem-specific options, passed as mount(2) data.
    pub data: Vec<String>,
    /// Data words without '=' that are not mount flags (checked per type by `validate`).
    pub unknown: Vec<String>,
    /// "tmpcopyup": fill a new tmpfs with what the destination held.
    pub copyup: bool,
    /// "idmap"/"ridmap" were asked for (unsupported).
    pub idmap: Option<String>,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: Vec::new(),
            rec_set: 0,
            rec_clr: 0,
            data: Vec::new(),
            unknown: Vec::new(),
            copyup: false,
            idmap: None,
        }
    }
}

impl MountOptions {
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    pub fn is_recursive_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND.union(MsFlags::MS_REC))
    }

    /// mount(2) data: fs-specific options joined by ','.
    pub fn data_string(&self) -> Option<String> {
        (!self.data.is_empty()).then(|| self.data.join(","))
    }

    /// Whether `key=` appears in data (e.g. "mode" for tmpfs).
    pub fn has_data_key(&self, key: &str) -> bool {
        self.data
            .iter()
            .any(|d| d.split_once('=').is_some_and(|(k, _)| k == key))
    }

    fn set(&mut self, f: MsFlags) {
        self.flags |= f;
        self.cleared &= !f;
    }

    fn clear(&mut self, f: MsFlags) {
        self.flags &= !f;
        self.cleared |= f;
    }

    fn rec(&mut self, set: u64, clr: u64) {
        self.rec_set = (self.rec_set & !clr) | set;
        self.rec_clr = (self.rec_clr & !set) | clr;
    }
}

enum Opt {
    NoOp,
    Set(MsFlags),
    Clear(MsFlags),
    Propagation(MsFlags),
    /// mount_setattr: (set, clear)
    Rec(u64, u64),
    CopyUp(bool),
    IdMap,
}

fn flag_option(o: &str) -> Option<Opt> {
    use MsFlags as F;
    use Opt::{Clear, Set};
    Some(match o {
        "defaults" => Opt::NoOp,
        "ro" => Set(F::MS_RDONLY),
        "rw" => Clear(F::MS_RDONLY),
        "nosuid" => Set(F::MS_NOSUID),
        "suid" => Clear(F::MS_NOSUID),
        "nodev" => Set(F::MS_NODEV),
        "dev" => Clear(F::MS_NODEV),
        "noexec" => Set(F::MS_NOEXEC),
        "exec" => Clear(F::MS_NOEXEC),
        "sync" => Set(F::MS_SYNCHRONOUS),
        "async" => Clear(F::MS_SYNCHRONOUS),
        "dirsync" => Set(F::MS_DIRSYNC),
        "remount" => Set(F::MS_REMOUNT),
        "mand" => Set(F::MS_MANDLOCK),
        "nomand" => Clear(F::MS_MANDLOCK),
        "noatime" => Set(F::MS_NOATIME),
        "atime" => Clear(F::MS_NOATIME),
        "nodiratime" => Set(F::MS_NODIRATIME),
        "diratime" => Clear(F::MS_NODIRATIME),
        "relatime" => Set(F::MS_RELATIME),
        "norelatime" => Clear(F::MS_RELATIME),
        "strictatime" => Set(F::MS_STRICTATIME),
        "nostrictatime" => Clear(F::MS_STRICTATIME),
        "bind" => Set(F::MS_BIND),
        "rbind" => Set(F::MS_BIND | F::MS_REC),
        "silent" => Set(F::MS_SILENT),
        "loud" => Clear(F::MS_SILENT),
        "iversion" => Set(F::MS_I_VERSION),
        "noiversion" => Clear(F::MS_I_VERSION),
        "lazytime" => Set(F::MS_LAZYTIME),
        "nolazytime" => Clear(F::MS_LAZYTIME),
        "acl" => Set(F::MS_POSIXACL),
        "noacl" => Clear(F::MS_POSIXACL),
        "nosymfollow" => Set(MS_NOSYMFOLLOW),
        "symfollow" => Clear(MS_NOSYMFOLLOW),
        _ => return propagation_option(o).map(Opt::Propagation),
    })
}

/// Propagation keywords, shared with `linux.rootfsPropagation`.
pub fn propagation_option(o: &str) -> Option<MsFlags> {
    use MsFlags as F;
    Some(match o {
        "private" => F::MS_PRIVATE,
        "rprivate" => F::MS_PRIVATE | F::MS_REC,
        "shared" => F::MS_SHARED,
        "rshared" => F::MS_SHARED | F::MS_REC,
        "slave" => F::MS_SLAVE,
        "rslave" => F::MS_SLAVE | F::MS_REC,
        "unbindable" => F::MS_UNBINDABLE,
        "runbindable" => F::MS_UNBINDABLE | F::MS_REC,
        _ => return None,
    })
}

fn other_option(o: &str) -> Option<Opt> {
    use attr::*;
    // The access-time attributes are one field, not bits: setting one must clear the field.
    Some(match o {
        "rro" => Opt::Rec(RDONLY, 0),
        "rrw" => Opt::Rec(0, RDONLY),
        "rnosuid" => Opt::Rec(NOSUID, 0),
        "rsuid" => Opt::Rec(0, NOSUID),
        "rnodev" => Opt::Rec(NODEV, 0),
        "rdev" => Opt::Rec(0, NODEV),
        "rnoexec" => Opt::Rec(NOEXEC, 0),
        "rexec" => Opt::Rec(0, NOEXEC),
        "rnodiratime" => Opt::Rec(NODIRATIME, 0),
        "rdiratime" => Opt::Rec(0, NODIRATIME),
        "rnoatime" => Opt::Rec(NOATIME, ATIME_MASK),
        "rstrictatime" => Opt::Rec(STRICTATIME, ATIME_MASK),
        "rrelatime" | "ratime" | "rnorelatime" | "rnostrictatime" => Opt::Rec(RELATIME, ATIME_MASK),
        "rnosymfollow" => Opt::Rec(NOSYMFOLLOW, 0),
        "rsymfollow" => Opt::Rec(0, NOSYMFOLLOW),
        "tmpcopyup" => Opt::CopyUp(true),
        "notmpcopyup" => Opt::CopyUp(false),
        "idmap" | "ridmap" => Opt::IdMap,
        _ => return None,
    })
}

/// Sort a mount's options into flags, propagation, recursive attributes and data,
/// the way runc does (later options win). Never fails: `validate` judges the result.
pub fn parse_options<S: AsRef<str>>(options: &[S]) -> MountOptions {
    let mut out = MountOptions::default();
    for o in options.iter().map(AsRef::as_ref) {
        match flag_option(o).or_else(|| other_option(o)) {
            Some(Opt::NoOp) => {}
            Some(Opt::Set(f)) => out.set(f),
            Some(Opt::Clear(f)) => out.clear(f),
            Some(Opt::Propagation(p)) => out.propagation.push(p),
            Some(Opt::Rec(set, clr)) => out.rec(set, clr),
            Some(Opt::CopyUp(on)) => out.copyup = on,
            Some(Opt::IdMap) => out.idmap = Some(o.to_string()),
            None => {
                if !o.contains('=') {
                    out.unknown.push(o.to_string());
                }
                out.data.push(o.to_string());
            }
        }
    }
    // "rrelatime" sets the value 0: make sure a set of nothing still clears the field.
    if out.rec_clr & attr::ATIME_MASK == 0 && out.rec_set & attr::ATIME_MASK != 0 {
        out.rec_clr |= attr::ATIME_MASK;
    }
    out
}

/// Data words (no '=') the kernel accepts for the filesystems `validate` polices.
/// `None` for other types: their words go to the kernel unchecked.
pub fn known_data_word(fstype: &str, word: &str) -> Option<bool> {
    let words: &[&str] = match fstype {
        "bind" | "proc" | "sysfs" | "mqueue" => &[],
        "tmpfs" => &[
            "noswap", "inode32", "inode64", "quota", "usrquota", "grpquota",
        ],
        "devpts" => &["newinstance"],
        "cgroup" | "cgroup2" => &[
            "nsdelegate",
            "memory_localevents",
            "memory_recursiveprot",
            "memory_hugetlb_accounting",
            "favordynmods",
        ],
        _ => return None,
    };
    Some(words.contains(&word))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(opts: &[&str]) -> MountOptions {
        parse_options(opts)
    }

    #[test]
    fn flags_and_later_options_win() {
        let o = p(&["ro", "nosuid", "nodev", "noexec", "rw"]);
        assert_eq!(
            o.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC
        );
        assert_eq!(o.cleared, MsFlags::MS_RDONLY);
        let o = p(&["suid", "nosuid"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID);
        assert!(o.cleared.is_empty());
    }

    #[test]
    fn bind_variants() {
        assert!(p(&["bind"]).is_bind());
        assert!(!p(&["bind"]).is_recursive_bind());
        assert!(p(&["rbind", "ro"]).is_recursive_bind());
        assert!(!p(&["ro"]).is_bind());
    }

    #[test]
    fn propagation_kept_in_order() {
        let o = p(&["rprivate", "shared", "runbindable"]);
        assert_eq!(
            o.propagation,
            vec![
                MsFlags::MS_PRIVATE | MsFlags::MS_REC,
                MsFlags::MS_SHARED,
                MsFlags::MS_UNBINDABLE | MsFlags::MS_REC
            ]
        );
        assert!(o.flags.is_empty());
        assert_eq!(
            propagation_option("rslave"),
            Some(MsFlags::MS_SLAVE | MsFlags::MS_REC)
        );
        assert_eq!(propagation_option("bogus"), None);
    }

    #[test]
    fn data_and_unknown_words() {
        let o = p(&[
            "nosuid",
            "newinstance",
            "ptmxmode=0666",
            "mode=620",
            "gid=5",
        ]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID);
        assert_eq!(
            o.data_string().as_deref(),
            Some("newinstance,ptmxmode=0666,mode=620,gid=5")
        );
        assert_eq!(o.unknown, vec!["newinstance".to_string()]);
        assert!(o.has_data_key("mode"));
        assert!(!o.has_data_key("size"));
        assert_eq!(p(&["ro"]).data_string(), None);
    }

    #[test]
    fn atime_family() {
        let o = p(&["noatime", "nodiratime", "strictatime", "norelatime"]);
        assert!(o
            .flags
            .contains(MsFlags::MS_NOATIME | MsFlags::MS_NODIRATIME));
        assert!(o.flags.contains(MsFlags::MS_STRICTATIME));
        assert!(o.cleared.contains(MsFlags::MS_RELATIME));
        assert_eq!(p(&["nosymfollow"]).flags, MS_NOSYMFOLLOW);
    }

    #[test]
    fn recursive_attributes() {
        let o = p(&["rro", "rnosuid", "rnoatime"]);
        assert_eq!(o.rec_set, attr::RDONLY | attr::NOSUID | attr::NOATIME);
        assert_eq!(o.rec_clr, attr::ATIME_MASK);
        let o = p(&["rro", "rrw"]);
        assert_eq!((o.rec_set, o.rec_clr), (0, attr::RDONLY));
        let o = p(&["rrelatime"]);
        assert_eq!((o.rec_set, o.rec_clr), (0, attr::ATIME_MASK));
        assert!(o.flags.is_empty() && o.data.is_empty());
    }

    #[test]
    fn extensions() {
        let o = p(&["tmpcopyup", "size=64k"]);
        assert!(o.copyup);
        assert_eq!(o.data, vec!["size=64k".to_string()]);
        assert!(!p(&["tmpcopyup", "notmpcopyup"]).copyup);
        assert_eq!(p(&["ridmap"]).idmap.as_deref(), Some("ridmap"));
        assert!(p(&["defaults"]).flags.is_empty() && p(&["defaults"]).data.is_empty());
    }

    #[test]
    fn every_listed_option_is_understood() {
        for o in MOUNT_OPTIONS {
            let parsed = p(&[o]);
            assert!(
                parsed.data.is_empty() && parsed.idmap.is_none(),
                "{o} went to data"
            );
        }
        let mut sorted = MOUNT_OPTIONS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, MOUNT_OPTIONS, "keep the list sorted and unique");
    }

    #[test]
    fn data_words_per_type() {
        assert_eq!(known_data_word("devpts", "newinstance"), Some(true));
        assert_eq!(known_data_word("bind", "rbindd"), Some(false));
        assert_eq!(known_data_word("tmpfs", "noswap"), Some(true));
        assert_eq!(known_data_word("overlay", "userxattr"), None);
    }
}
