//! Integration and end-to-end tests, one crate so that two cores link one binary.

mod admin;
mod cli;
mod crm_polling;
mod dataverse_poller;
mod dataverse_sink;
mod dataverse_webhook;
mod deploy;
mod early_answers;
mod end_to_end;
mod faults;
mod hostile_input;
mod ingest_faults;
mod kaizala_client;
mod kaizala_poll;
mod kaizala_subscriptions;
mod kaizala_webhook;
mod queue;
mod rate_gate;
mod readiness;
mod replicas;
mod service;
mod shutdown;
mod sim_dataverse;
mod sim_kaizala;
mod store;
mod support;
