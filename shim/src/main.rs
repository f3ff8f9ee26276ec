//! `corral-shim`: see the library documentation and `corral-shim --help`.

use std::process::ExitCode;

use corral_shim::{args::USAGE, Parsed, ShimArgs};

/// The shim's own failure (bad flags, create/start failed): like podman's 125.
const SHIM_FAILED: u8 = 125;

fn main() -> ExitCode {
    let (args, finish) = match ShimArgs::parse(std::env::args_os().skip(1)) {
        Ok(Parsed::Run(a)) => (a, None),
        Ok(Parsed::Finish(a, f)) => (a, Some(f)),
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("corral-shim {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("corral-shim: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match &finish {
        None => corral_shim::run(&args),
        Some(f) => corral_shim::finish(&args, f),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        // The caller has the message already (and prints it its own way).
        Err(corral_shim::Error::Reported(_)) => ExitCode::from(SHIM_FAILED),
        Err(e) => {
            eprintln!("corral-shim: container {}: {e}", args.id);
            ExitCode::from(SHIM_FAILED)
        }
    }
}
