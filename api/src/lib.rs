//! Kubernetes-shaped API objects: see ARCHITECTURE.md.
