//! Harness for whole-binary tests of `corral-runtime` (or any runc-compatible runtime).
//!
//! The binary under test is chosen by `CORRAL_TEST_RUNTIME` (a path or a name on
//! `PATH`); by default it is the workspace's `target/<profile>/corral-runtime`, found
//! next to the test executable. Every test runs the runtime with its own `--root` and
//! `--log` in a temporary directory, uses unique container ids and cgroup paths under
//! `/corral-test/<id>`, and cleans up (kill, `delete --force`, cgroups, mounts) on drop,
//! also when the test panics.
//!
//! Tests skip with a printed reason (see [`skip!`]) when the host lacks something
//! they need; they never pass without checking anything.

pub mod agent;
pub mod agent_backend;
pub mod bench;
pub mod bundle;
pub mod cluster;
pub mod console;
pub mod corral;
pub mod etcd;
pub mod host;
pub mod layer_fixtures;
pub mod master;
pub mod net;
pub mod registry;
pub mod rootfs;
pub mod runtime;

pub use bundle::Bundle;
pub use console::ConsoleReceiver;
pub use rootfs::busybox_rootfs;
pub use runtime::{Kind, Out, Runtime};

/// Skip the current test with a reason printed on stderr (visible with `--nocapture`
/// and in the summary of failing neighbours). Returns from the enclosing function.
#[macro_export]
macro_rules! skip {
    ($($arg:tt)*) => {{
        eprintln!("SKIPPED [{}]: {}", module_path!(), format!($($arg)*));
        return;
    }};
}

/// Return from the test with a printed reason unless the condition holds.
#[macro_export]
macro_rules! require {
    ($cond:expr, $($arg:tt)*) => {{
        if !$cond {
            $crate::skip!($($arg)*);
        }
    }};
}

/// The runtime for one test, or None (after printing why) when the test cannot
/// run here: not root.
pub fn runtime_for(test: &str) -> Option<Runtime> {
    if !host::is_root() {
        eprintln!("SKIPPED [{test}]: runtime tests need root");
        return None;
    }
    Some(Runtime::new(test))
}
