//! /proc/self/mountinfo, the parts the rootfs setup needs.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Path of the mount's root inside its filesystem.
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// Optional fields: "shared:N", "master:N", ...
    pub optional: Vec<String>,
    pub fstype: String,
}

impl MountInfo {
    pub fn is_shared(&self) -> bool {
        self.optional.iter().any(|o| o.starts_with("shared:"))
    }
}

/// The kernel escapes space, tab, newline and backslash as \ooo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_line(line: &str) -> Option<MountInfo> {
    let (left, right) = line.split_once(" - ")?;
    let mut fields = left.split(' ');
    let root = fields.nth(3)?;
    let mount_point = fields.next()?;
    let optional = fields.skip(1).map(str::to_string).collect();
    Some(MountInfo {
        root: PathBuf::from(unescape(root)),
        mount_point: PathBuf::from(unescape(mount_point)),
        optional,
        fstype: right.split(' ').next()?.to_string(),
    })
}

pub fn parse(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_line).collect()
}

pub fn read() -> crate::Result<Vec<MountInfo>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| crate::Error::io("read /proc/self/mountinfo", e))?;
    Ok(parse(&text))
}

/// The mount `path` lives on: the deepest mount point above it, the topmost one when
/// several are stacked on the same point (later lines are mounted later).
pub fn mount_of<'a>(mounts: &'a [MountInfo], path: &Path) -> Option<&'a MountInfo> {
    mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| path.starts_with(&m.mount_point))
        .max_by_key(|(i, m)| (m.mount_point.components().count(), *i))
        .map(|(_, m)| m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
30 24 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct
36 30 0:32 / /sys/fs/cgroup/unified rw,nosuid shared:5 - cgroup2 cgroup2 rw
40 22 0:40 /data /mnt/with\\040space rw master:3 - ext4 /dev/sdb rw
41 22 0:41 / /run rw,nosuid - tmpfs tmpfs rw
42 41 0:42 / /run rw,nosuid - tmpfs tmpfs rw
";

    #[test]
    fn parses_fields() {
        let m = parse(SAMPLE);
        assert_eq!(m.len(), 9);
        assert_eq!(m[0].mount_point, Path::new("/"));
        assert!(m[0].is_shared());
        assert_eq!(m[4].fstype, "cgroup");
        assert_eq!(m[6].mount_point, Path::new("/mnt/with space"));
        assert_eq!(m[6].root, Path::new("/data"));
        assert_eq!(m[6].optional, vec!["master:3".to_string()]);
        assert!(!m[6].is_shared());
        assert!(m[7].optional.is_empty());
    }

    #[test]
    fn ignores_garbage() {
        assert!(parse("nonsense\n\n1 2 3\n").is_empty());
    }

    #[test]
    fn unescapes_octal_only() {
        assert_eq!(unescape("a\\040b\\134c\\011"), "a b\\c\t");
        assert_eq!(unescape("a\\x40\\"), "a\\x40\\");
    }

    #[test]
    fn finds_the_mount_of_a_path() {
        let m = parse(SAMPLE);
        let of = |p: &str| mount_of(&m, Path::new(p)).map(|m| m.mount_point.clone());
        assert_eq!(of("/home/x"), Some(PathBuf::from("/")));
        assert_eq!(
            of("/sys/fs/cgroup/cpu,cpuacct/a/b"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
        );
        // "/sys/fs/cgroup/cpu" is not under "/sys/fs/cgroup/cpu,cpuacct".
        assert_eq!(
            of("/sys/fs/cgroup/cpu"),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let run = mount_of(&m, Path::new("/run/x")).unwrap();
        assert!(std::ptr::eq(run, &m[8]));
    }
}
