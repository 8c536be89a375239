//! The two-way link between board and ground.
//!
//! - [`transport`]: framed byte transports both sides open (`pipe:OUT,IN`, `tcp:`, `listen:`,
//!   `serial:`), reconnecting by themselves.
//! - [`channel`]: the seeded channel simulator (contact windows, latency, loss, corruption,
//!   duplication) each side applies to what it sends.
//! - [`delivery`]: acknowledged delivery of the board's files with CCSDS CFDP class 2 (cfdp-rs),
//!   what orbhash adds to the library, and the per-pass [`delivery::Account`].
//! - [`session`]: one side's link: transport, channel and contact plan together, with accounting
//!   per pass.
//! - [`args`] (feature `cli`): the command-line flags both sides share.
//!
//! Telecommands going up are the wire crate's (`orbhash_wire::command`); this crate carries them.

#[cfg(feature = "cli")]
pub mod args;
pub mod channel;
pub mod delivery;
pub mod session;
pub mod transport;

pub use channel::{Channel, ChannelStats, ContactPlan, Impairment, SplitMix64};
pub use delivery::{
    Account, Consignee, DeliveryConfig, DeliveryError, Inbox, Outbox, Outcome, Payload, Transfer,
};
pub use session::{LinkOptions, LinkSession, PassAccount, Round};
pub use transport::{Duplex, Endpoint};
