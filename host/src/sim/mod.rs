//! `tsohost sim`: a deterministic simulation of a cluster of driver
//! components in one process (docs/architecture.md §10).

pub mod disk;
