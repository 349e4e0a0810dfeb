//! Local emulators of the systems the bridge talks to, for tests and the demo.
//!
//! This is another world: an emulator speaks to the bridge only over HTTP and shares
//! no wire types with `kaizala/` or `crm/`. It is written from the services'
//! reference documentation, not from our client, so a misspelt field in the client
//! fails here as it would have against the real service. Production paths never
//! import it; only the `sim` subcommand, the demo and tests do.

pub mod clock;
pub mod dataverse;
pub mod faults;
pub mod kaizala;
pub mod people;
pub mod server;
