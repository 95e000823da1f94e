//! mimobox past one machine: where each session lives, as workers that
//! share sessions agree on it. [`Member`] is a session host's place in the
//! fleet (its leases, and the host's [`mimobox_host::Fleet`]); the
//! catalog below it is the record they share.
//!
//! The [`Catalog`] is the one place that says which worker holds a session
//! live, until when (its lease), under which fencing epoch, and where its
//! last paused state is. [`RedisCatalog`] keeps it in Redis, each change one
//! Lua script, so that two workers never both hold a session:
//!
//! - a **claim** succeeds only when nobody holds a lease on the session (or
//!   the claimant already does), and every claim that changes hands raises
//!   the session's **epoch**;
//! - a lease is judged by the Redis server's clock alone; a worker stops
//!   serving at its own deadline, counted from *before* it asked, so it has
//!   stopped before Redis lets anyone else claim;
//! - a paused state is **recorded** only by the holder of the current epoch
//!   and only if its turn is not older than the one recorded: a worker that
//!   lost its lease, or a delayed write, never replaces a newer state;
//! - a session belongs to the owner that opened it: a claim for another
//!   owner is refused the same way as an id nobody knows.
//!
//! What this rests on: one Redis primary whose clock does not jump by more
//! than 2% of a lease while one runs (no step of NTP, no failover that
//! loses a claim it acknowledged). A deployment that cannot promise that
//! must also check the epoch where paused states are written, which the
//! catalog's `record_paused` does for the pointer to the state.

mod catalog;
mod member;
mod redis_catalog;
mod s3;

pub use catalog::{Catalog, CatalogError, Claim, Lease, PausedRef, Record};
pub use member::{Located, Member};
pub use redis_catalog::RedisCatalog;
pub use s3::{S3Location, S3Store};
