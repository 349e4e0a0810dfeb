//! Dynamics 365 / Microsoft Dataverse: Entra tokens, the Web API client, and the
//! activity sink.

pub mod auth;
pub mod client;
pub mod error;
pub mod poller;
pub mod sink;
pub mod source;
pub mod webhook;

pub use auth::EntraCredentials;
pub use client::WebApi;
pub use error::DataverseError;
pub use sink::DataverseSink;
