//! `--log` / `--log-format`: engines (conmon, containerd) read the runtime's
//! errors from this file, in runc's JSON shape when asked.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::LogFormat;

pub struct Logger {
    file: Option<PathBuf>,
    format: LogFormat,
    debug: bool,
}

impl Logger {
    pub fn new(file: Option<&Path>, format: LogFormat, debug: bool) -> Logger {
        Logger {
            file: file.map(Path::to_path_buf),
            format,
            debug,
        }
    }

    pub fn error(&self, msg: &str) {
        self.write("error", msg);
    }

    pub fn debug(&self, msg: &str) {
        if self.debug {
            self.write("debug", msg);
        }
    }

    fn write(&self, level: &str, msg: &str) {
        let Some(path) = &self.file else { return };
        let time = corral_runtime::state::now_rfc3339();
        let line = match self.format {
            LogFormat::Json => {
                serde_json::json!({ "level": level, "msg": msg, "time": time }).to_string()
            }
            LogFormat::Text => format!(
                "time=\"{time}\" level={level} msg=\"{}\"",
                msg.replace('"', "\\\"")
            ),
        };
        // Logging must never turn a result into a failure.
        if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{line}");
        }
    }
}
