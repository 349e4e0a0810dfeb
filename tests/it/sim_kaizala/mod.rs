//! The Kaizala emulator, walked endpoint by endpoint with raw HTTP.

mod actions;
mod auth;
mod groups;
pub mod swagger;
mod throttling;
mod webhooks;
