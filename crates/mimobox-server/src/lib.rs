//! mimobox's front doors: the answer objects every protocol writes
//! ([`wire`]).

pub mod wire;
