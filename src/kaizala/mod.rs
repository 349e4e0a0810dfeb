//! The Kaizala side of the bridge: the API client with its token lifecycle.
//!
//! Never imports `crm/`: the two sides meet in `rules/` and `jobs/`.

pub mod api;
pub mod auth;
pub mod client;
pub mod credentials;
pub mod error;

pub use auth::{Clock, ConnectorCredentials, SystemClock};
pub use client::{ClientOptions, Clients, KaizalaClient, Reservation};
pub use credentials::{Credentials, Learned};
pub use error::KaizalaError;
pub mod events;
pub mod onboarding;
pub mod poll;
pub mod subscriptions;
pub mod token;
pub mod webhook;

pub use events::{EventData, KaizalaEvent};
pub use webhook::{EventSink, ReceiveError, Received, Receiver, SinkError};
