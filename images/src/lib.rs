//! OCI images: see ARCHITECTURE.md.
