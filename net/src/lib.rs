//! Container networking on one host: see ARCHITECTURE.md.
