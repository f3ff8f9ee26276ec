//! `corral config view [--raw]`, `use-context NAME`, `current-context`.

use super::args::{ClusterGlobal, ConfigVerb};
use super::output::io;
use super::Error;
use corral_client::kubeconfig::{locate, Kubeconfig};

pub fn run(g: &ClusterGlobal, v: &ConfigVerb) -> Result<(), Error> {
    let path = locate(g.kubeconfig.as_deref())?;
    let mut kc = Kubeconfig::load(&path)?;
    match v {
        ConfigVerb::View { raw } => {
            let doc = if *raw { kc.doc.clone() } else { kc.redacted() };
            let text = yaml_serde::to_string(&doc).map_err(|e| Error::msg(format!("YAML: {e}")))?;
            use std::io::Write;
            std::io::stdout().write_all(text.as_bytes()).map_err(io)
        }
        ConfigVerb::UseContext { name } => {
            kc.use_context(name)?;
            println!("Switched to context {name:?}.");
            Ok(())
        }
        ConfigVerb::CurrentContext => {
            let cur = kc.current_context();
            if cur.is_empty() {
                return Err(Error::msg("current-context is not set"));
            }
            println!("{cur}");
            Ok(())
        }
    }
}
