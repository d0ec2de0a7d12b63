//! The `rosetta` binary end to end, one module per group of commands, linked into one test
//! binary (see `Cargo.toml`): `cargo nextest run -p rosetta-cli -E 'test(/^train::/)'` runs one
//! module. Each module opens with what it checks; `common` runs the binary.

mod common;

mod cli;
mod ecosystem;
mod lab;
mod methods;
mod multinode;
mod train;
