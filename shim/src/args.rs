//! The shim's command line, parsed by hand (no clap: the shim starts on
//! every `corral run` and should stay small). Callers build a [`ShimArgs`]
//! and turn it into argv with [`ShimArgs::to_args`], so the two directions
//! cannot drift apart.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::error::{Error, Result};

pub const USAGE: &str = "\
usage: corral-shim --id ID --bundle DIR --runtime-root DIR --log FILE --exit-file FILE [options]

Creates and starts container ID from the bundle through the corral runtime
library, writes its stdout/stderr to FILE in CRI format, reaps it, writes the
exit record, deletes the runtime's state and exits. Without --foreground it
detaches first (new session, the caller's child exits at once) and keeps
running after its caller is gone.

  --id ID                 container id (runtime state: RUNTIME-ROOT/ID)
  --bundle DIR            bundle with config.json and the rootfs
  --runtime-root DIR      the runtime's state root
  --log FILE              CRI log (\"<RFC3339Nano> stdout|stderr F|P <text>\")
  --log-max-size BYTES    rotate the log at this size (k/m/g suffixes; 0 = never)
  --log-max-files N       files kept with rotation, the live one included (default 1)
  --exit-file FILE        exit record (JSON: exitCode, signal, oomKilled,
                          startedAt, finishedAt), written atomically
  --sync-fd FD            report {\"status\":\"started\",...} or
                          {\"status\":\"failed\",\"error\":...} on FD, then close it
  --tty                   the container has a terminal (process.terminal);
                          the shim receives the pty master on a console socket
  --stdin                 keep the container's stdin open: the shim's own stdin
                          in the foreground, a pipe held open when detached
  --foreground            stay attached: copy output to our stdout/stderr, proxy
                          the terminal with --tty, exit with the container's code
  --keep                  leave the runtime's container (stopped) after the exit
  --exit-command PATH     run PATH after the exit is recorded (e.g. cleanup)
  --exit-command-arg ARG  an argument for it (repeatable)

Internal: `corral-shim --finish STATUS --started-at TIME --cgroup-path PATH
[flags above]` is how the tiny supervisor (the detached shim's steady state,
exec'd in the same process) hands back the container's raw wait status: it
writes the exit record, deletes the runtime's state and runs the exit command.
";

/// Everything the shim needs to supervise one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShimArgs {
    pub id: String,
    pub bundle: PathBuf,
    pub runtime_root: PathBuf,
    pub log: PathBuf,
    /// Rotate the log when it would grow past this many bytes (0: never).
    pub log_max_size: u64,
    /// Log files kept when rotating, the live one included (at least 1).
    pub log_max_files: u32,
    pub exit_file: PathBuf,
    pub sync_fd: Option<i32>,
    pub tty: bool,
    pub stdin: bool,
    pub foreground: bool,
    pub keep: bool,
    pub exit_command: Option<PathBuf>,
    pub exit_command_args: Vec<OsString>,
}

/// What the command line asked for: supervise, finish after the tiny
/// supervisor, or print help/version.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Run(Box<ShimArgs>),
    Finish(Box<ShimArgs>, Finish),
    Help,
    Version,
}

/// `--finish`: what the supervision learned and the exit record needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Finish {
    /// init's raw wait status (as wait4 stores it).
    pub status: i32,
    pub started_at: String,
    /// The container's cgroup (relative), for OOM detection.
    pub cgroup_path: String,
}

impl Finish {
    pub const FLAG: &'static str = "--finish";

    /// The argv after `--finish STATUS`: the tiny supervisor puts those
    /// two in front once init is reaped.
    pub fn tail(started_at: &str, cgroup_path: &str, args: &ShimArgs) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec![
            "--started-at".into(),
            started_at.into(),
            "--cgroup-path".into(),
            cgroup_path.into(),
        ];
        v.extend(args.to_args());
        v
    }

    /// The whole argv (without program name) that parses back into
    /// `Parsed::Finish(args, self)`.
    pub fn to_args(&self, args: &ShimArgs) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec![Self::FLAG.into(), self.status.to_string().into()];
        v.extend(Self::tail(&self.started_at, &self.cgroup_path, args));
        v
    }

    /// Parse what follows `--finish`, then the shim's own flags.
    fn parse(mut it: impl Iterator<Item = OsString>) -> Result<Parsed> {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| usage(format!("{name} needs a value")))
        };
        let status = number(Self::FLAG, value(Self::FLAG)?)?;
        let mut fin = Finish {
            status,
            ..Finish::default()
        };
        for (flag, slot) in [
            ("--started-at", &mut fin.started_at),
            ("--cgroup-path", &mut fin.cgroup_path),
        ] {
            let got = value(flag)?;
            if got != flag {
                return Err(usage(format!(
                    "{} STATUS must be followed by {flag}",
                    Self::FLAG
                )));
            }
            *slot = utf8(flag, value(flag)?)?;
        }
        match ShimArgs::parse_flags(it)? {
            Parsed::Run(a) => Ok(Parsed::Finish(a, fin)),
            other => Ok(other),
        }
    }
}

impl ShimArgs {
    /// Parse argv without the program name.
    pub fn parse<I: IntoIterator<Item = OsString>>(argv: I) -> Result<Parsed> {
        let mut it = argv.into_iter().peekable();
        if it.peek().is_some_and(|a| a == Finish::FLAG) {
            it.next();
            return Finish::parse(it);
        }
        Self::parse_flags(it)
    }

    fn parse_flags(argv: impl Iterator<Item = OsString>) -> Result<Parsed> {
        let mut a = ShimArgs {
            log_max_files: 1,
            ..ShimArgs::default()
        };
        let mut it = argv;
        while let Some(flag) = it.next() {
            let flag = flag
                .to_str()
                .ok_or_else(|| usage(format!("unexpected argument {flag:?}")))?
                .to_string();
            // `--flag=value` and `--flag value` both work.
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(OsString::from(v))),
                None => (flag.clone(), None),
            };
            let mut value = |name: &str| -> Result<OsString> {
                inline
                    .clone()
                    .or_else(|| it.next())
                    .ok_or_else(|| usage(format!("{name} needs a value")))
            };
            match name.as_str() {
                "-h" | "--help" => return Ok(Parsed::Help),
                "-V" | "--version" => return Ok(Parsed::Version),
                "--id" => a.id = utf8(&name, value(&name)?)?,
                "--bundle" => a.bundle = value(&name)?.into(),
                "--runtime-root" => a.runtime_root = value(&name)?.into(),
                "--log" => a.log = value(&name)?.into(),
                "--log-max-size" => a.log_max_size = parse_size(&utf8(&name, value(&name)?)?)?,
                "--log-max-files" => a.log_max_files = number(&name, value(&name)?)?,
                "--exit-file" => a.exit_file = value(&name)?.into(),
                "--sync-fd" => a.sync_fd = Some(number(&name, value(&name)?)?),
                "--exit-command" => a.exit_command = Some(value(&name)?.into()),
                "--exit-command-arg" => a.exit_command_args.push(value(&name)?),
                "--tty" | "--stdin" | "--foreground" | "--keep" if inline.is_some() => {
                    return Err(usage(format!("{name} takes no value")))
                }
                "--tty" => a.tty = true,
                "--stdin" => a.stdin = true,
                "--foreground" => a.foreground = true,
                "--keep" => a.keep = true,
                _ => return Err(usage(format!("unknown flag {flag:?}"))),
            }
        }
        a.check()?;
        Ok(Parsed::Run(Box::new(a)))
    }

    fn check(&self) -> Result<()> {
        let missing = [
            ("--id", self.id.is_empty()),
            ("--bundle", self.bundle.as_os_str().is_empty()),
            ("--runtime-root", self.runtime_root.as_os_str().is_empty()),
            ("--log", self.log.as_os_str().is_empty()),
            ("--exit-file", self.exit_file.as_os_str().is_empty()),
        ];
        if let Some((name, _)) = missing.iter().find(|(_, m)| *m) {
            return Err(usage(format!("{name} is required")));
        }
        if self.log_max_files == 0 {
            return Err(usage("--log-max-files must be at least 1".into()));
        }
        if matches!(self.sync_fd, Some(fd) if fd < 3) {
            return Err(usage("--sync-fd must be 3 or above (0-2 are stdio)".into()));
        }
        Ok(())
    }

    /// The argv (without program name) that parses back into `self`.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = Vec::new();
        let mut pair = |k: &str, val: &OsStr| {
            v.push(k.into());
            v.push(val.to_os_string());
        };
        pair("--id", OsStr::new(&self.id));
        pair("--bundle", self.bundle.as_os_str());
        pair("--runtime-root", self.runtime_root.as_os_str());
        pair("--log", self.log.as_os_str());
        pair("--log-max-size", OsStr::new(&self.log_max_size.to_string()));
        pair(
            "--log-max-files",
            OsStr::new(&self.log_max_files.to_string()),
        );
        pair("--exit-file", self.exit_file.as_os_str());
        if let Some(fd) = self.sync_fd {
            pair("--sync-fd", OsStr::new(&fd.to_string()));
        }
        if let Some(cmd) = &self.exit_command {
            pair("--exit-command", cmd.as_os_str());
        }
        for arg in &self.exit_command_args {
            pair("--exit-command-arg", arg);
        }
        for (on, flag) in [
            (self.tty, "--tty"),
            (self.stdin, "--stdin"),
            (self.foreground, "--foreground"),
            (self.keep, "--keep"),
        ] {
            if on {
                v.push(flag.into());
            }
        }
        v
    }
}

fn usage(msg: String) -> Error {
    Error::Usage(msg)
}

fn utf8(name: &str, v: OsString) -> Result<String> {
    v.into_string()
        .map_err(|v| usage(format!("{name} {v:?}: not valid UTF-8")))
}

fn number<T: std::str::FromStr>(name: &str, v: OsString) -> Result<T> {
    let s = utf8(name, v)?;
    s.parse()
        .map_err(|_| usage(format!("{name} {s:?}: not a valid number")))
}

/// A byte size: a number with an optional b/k/m/g suffix (powers of 1024),
/// as podman's `--memory` and `--log-opt max-size` take it.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (digits, mult) = match t.as_bytes().last() {
        Some(b'k') => (&t[..t.len() - 1], 1u64 << 10),
        Some(b'm') => (&t[..t.len() - 1], 1 << 20),
        Some(b'g') => (&t[..t.len() - 1], 1 << 30),
        Some(b't') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let bad = || {
        usage(format!(
            "size {s:?}: expected a number with an optional k, m, g or t suffix"
        ))
    };
    if digits.is_empty() || !digits.as_bytes().iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(bad)
}

/// Render bytes of a path or argument for messages.
pub fn show(p: &OsStr) -> String {
    String::from_utf8_lossy(p.as_bytes()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> ShimArgs {
        ShimArgs {
            id: "c1".into(),
            bundle: "/b".into(),
            runtime_root: "/r".into(),
            log: "/l/ctr.log".into(),
            log_max_size: 1 << 20,
            log_max_files: 3,
            exit_file: "/l/exit.json".into(),
            sync_fd: Some(5),
            tty: true,
            stdin: true,
            foreground: true,
            keep: true,
            exit_command: Some("/bin/corral".into()),
            exit_command_args: vec!["rm".into(), "-f".into(), "--weird value".into()],
        }
    }

    #[test]
    fn round_trip() {
        let a = full();
        assert_eq!(
            ShimArgs::parse(a.to_args()).unwrap(),
            Parsed::Run(Box::new(a))
        );
        let minimal = ShimArgs {
            sync_fd: None,
            tty: false,
            stdin: false,
            foreground: false,
            keep: false,
            exit_command: None,
            exit_command_args: vec![],
            ..full()
        };
        assert_eq!(
            ShimArgs::parse(minimal.to_args()).unwrap(),
            Parsed::Run(Box::new(minimal))
        );
    }

    #[test]
    fn errors_name_the_flag() {
        let parse = |v: &[&str]| ShimArgs::parse(v.iter().map(OsString::from)).unwrap_err();
        assert!(parse(&["--id"]).to_string().contains("--id needs a value"));
        assert!(parse(&["--bogus"]).to_string().contains("--bogus"));
        assert!(parse(&["--id", "x"])
            .to_string()
            .contains("--bundle is required"));
        let mut argv: Vec<String> = full()
            .to_args()
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        argv.push("--sync-fd=1".into());
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        assert!(parse(&argv).to_string().contains("--sync-fd must be 3"));
        assert!(parse(&["--tty=1"]).to_string().contains("takes no value"));
    }

    #[test]
    fn finish_round_trip() {
        let args = ShimArgs {
            sync_fd: None,
            ..full()
        };
        let fin = Finish {
            status: 137 << 8,
            started_at: "2026-11-26T07:00:00.000000000Z".into(),
            cgroup_path: "/corral/c1".into(),
        };
        assert_eq!(
            ShimArgs::parse(fin.to_args(&args)).unwrap(),
            Parsed::Finish(Box::new(args.clone()), fin.clone())
        );
        let empty_cgroup = Finish {
            cgroup_path: String::new(),
            ..fin.clone()
        };
        assert_eq!(
            ShimArgs::parse(empty_cgroup.to_args(&args)).unwrap(),
            Parsed::Finish(Box::new(args.clone()), empty_cgroup)
        );
        let parse = |v: &[&str]| ShimArgs::parse(v.iter().map(OsString::from)).unwrap_err();
        assert!(parse(&["--finish"])
            .to_string()
            .contains("--finish needs a value"));
        assert!(parse(&["--finish", "x"])
            .to_string()
            .contains("not a valid number"));
        assert!(parse(&["--finish", "0", "--cgroup-path", "p"])
            .to_string()
            .contains("must be followed by --started-at"));
        assert!(
            parse(&["--finish", "0", "--started-at", "t", "--cgroup-path", "p"])
                .to_string()
                .contains("--id is required")
        );
    }

    #[test]
    fn help_and_version() {
        let p = |s: &str| ShimArgs::parse([OsString::from(s)]).unwrap();
        assert_eq!(p("--help"), Parsed::Help);
        assert_eq!(p("-V"), Parsed::Version);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("64MB").unwrap(), 64 << 20);
        assert_eq!(parse_size("2g").unwrap(), 2 << 30);
        assert_eq!(parse_size("10k").unwrap(), 10 << 10);
        for bad in ["", "m", "-1", "1.5m", "12x", "99999999999999999999t"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
