//! The node agent: see ARCHITECTURE.md.
