//! Support for the soak (tests/soak.rs): mongoplex as a child process, the per-second
//! sampler, the load, the fault schedule and the exactly-once check.

pub mod child;
pub mod faults;
pub mod load;
pub mod sampler;
pub mod writes;
