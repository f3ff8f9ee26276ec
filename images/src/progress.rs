//! One progress bar per blob on a terminal; nothing at all otherwise.

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub(crate) struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    pub(crate) fn new(enabled: bool) -> Progress {
        Progress {
            multi: enabled.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    /// A bar for a blob of `total` bytes, labelled like `docker pull` does
    /// (short digest).
    pub(crate) fn bar(&self, label: &str, total: u64) -> Bar {
        let Some(multi) = &self.multi else {
            return Bar(None);
        };
        let bar = multi.add(ProgressBar::new(total));
        let style = ProgressStyle::with_template(
            "{prefix:.bold} {msg:12} [{bar:30}] {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(label.to_string());
        bar.set_message("waiting");
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar(Some(bar))
    }

    /// A line for a blob that needs no download.
    pub(crate) fn done_line(&self, label: &str, msg: &str) {
        if let Some(multi) = &self.multi {
            let bar = multi.add(ProgressBar::new(0));
            let style = ProgressStyle::with_template("{prefix:.bold} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.set_prefix(label.to_string());
            bar.finish_with_message(msg.to_string());
        }
    }
}

pub(crate) struct Bar(Option<ProgressBar>);

impl Bar {
    pub(crate) fn start(&self) {
        if let Some(b) = &self.0 {
            b.set_message("downloading");
        }
    }

    pub(crate) fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }

    pub(crate) fn finish(&self, msg: &str) {
        if let Some(b) = &self.0 {
            b.disable_steady_tick();
            b.finish_with_message(msg.to_string());
        }
    }

    pub(crate) fn abandon(&self, msg: &str) {
        if let Some(b) = &self.0 {
            b.disable_steady_tick();
            b.abandon_with_message(msg.to_string());
        }
    }
}
