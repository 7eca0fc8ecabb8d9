//! The benchmark tools' shared parts and the newer measurements, used by bench/src/bin/bench.rs.

pub mod bare;
pub mod chart;
pub mod common;
pub mod count_proxy;
pub mod txcount;
