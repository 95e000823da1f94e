//! mimobox's front doors: the answer objects every protocol writes
//! ([`wire`]), and the MCP server over the session host ([`mcp`]).

pub mod mcp;
pub mod wire;
