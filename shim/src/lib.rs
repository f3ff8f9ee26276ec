//! The per-container supervisor: see ARCHITECTURE.md.
