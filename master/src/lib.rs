//! The master: see ARCHITECTURE.md.
