//! The test harness: configurations, the app in-process, a private redis-server.

pub mod app;
pub mod config;
pub mod dataverse;
pub mod kaizala;
pub mod redis;
