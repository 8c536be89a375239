//! orbhash on board: the board program. It cuts tiles, hashes them with `orbhash-infer` and
//! downlinks their records through a store-and-forward queue.
//!
//! - [`source`]: tiles from a directory or cut from a whole scene;
//! - [`queue`]: the durable store-and-forward queue of downlink frames;
//! - [`link`]: file, TCP, serial or stdout, optionally through a simulated intermittent channel;
//! - [`run`]: the tokio pipeline tying them together; [`bench`]: the speed and profile tables;
//! - [`screen`]: on-board screening, tiles of given labels kept off the link;
//! - [`store`]: the bounded store of hashed scenes that tile requests are served from;
//! - [`reports`]: the board's telemetry reports (evictions, commands carried out) until confirmed;
//! - [`cli`]: the `orbhash-edge` command line.

pub mod bench;
pub mod cli;
pub mod contact;
pub mod link;
pub mod queue;
pub mod reports;
pub mod run;
pub mod screen;
pub mod source;
pub mod store;
pub mod tasking;
