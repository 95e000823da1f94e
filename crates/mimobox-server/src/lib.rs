//! mimobox's front doors: the answer objects every protocol writes
//! ([`wire`]), the MCP server over the session host ([`mcp`]), and the HTTP
//! API of `mimobox serve` ([`http`]).

pub mod config;
pub mod http;
pub mod mcp;
pub mod openapi;
pub mod peers;
mod stall;
pub mod wire;
