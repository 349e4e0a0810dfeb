//! kaizala-bridge: keeps a CRM and Microsoft Kaizala in step.
//!
//! A new CRM record becomes a Kaizala survey in the right group; every answer comes
//! back as an activity on that record. The project's `DESIGN.md` has the whole picture;
//! each module's doc comment says what it holds.

#![warn(missing_docs)]

pub mod app;
pub mod backend;
pub mod cli;
pub mod commands;
pub mod config;
pub mod crm;
#[cfg(feature = "sim")]
pub mod demo;
pub mod http;
pub mod idempotency;
pub mod jobs;
pub mod kaizala;
pub mod model;
pub mod queue;
pub mod ratelimit;
pub mod readiness;
pub mod retry_after;
pub mod rules;
pub mod shutdown;
#[cfg(feature = "sim")]
pub mod sim;
pub mod store;
pub mod systemd;
pub mod tasks;
pub mod telemetry;
