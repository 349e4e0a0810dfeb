//! The Dataverse emulator, walked with raw HTTP.

mod change_tracking;
mod records;
mod token;
mod webhooks;
