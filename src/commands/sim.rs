//! `sim kaizala` and `sim dataverse`: an emulator alone, until SIGTERM or SIGINT.

use std::process::ExitCode;

use super::until_signal;
use crate::cli::{DataverseSimArgs, KaizalaSimArgs, EXIT_OK, EXIT_USAGE};
use crate::sim::kaizala::{KaizalaSim, Seed, SimOptions};

/// `sim dataverse`: the Dataverse emulator alone, until SIGTERM or SIGINT.
pub fn dataverse(args: &DataverseSimArgs) -> ExitCode {
    use crate::sim::dataverse::{
        DataverseSim, Seed as DataverseSeed, SimOptions as DataverseOptions,
    };
    let seed = match DataverseSeed::load(&args.seed) {
        Ok(seed) => seed,
        Err(error) => {
            eprintln!("kaizala-bridge: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let options = DataverseOptions {
        public_url: args.public_url.clone(),
        requests_per_window: args.requests_per_window,
        change_tracking_retention: args.change_tracking_retention,
        ..DataverseOptions::default()
    };
    let served = until_signal("info", |stop| async move {
        let sim = DataverseSim::start(&seed, options, args.listen)
            .await
            .map_err(|e| e.to_string())?;
        println!("dataverse emulator listening on {}", sim.base_url());
        sim.run_until(stop).await;
        Ok(())
    });
    served.map_or_else(|code| code, |()| ExitCode::from(EXIT_OK))
}

/// `sim kaizala`: the emulator alone, until SIGTERM or SIGINT. It needs no bridge
/// configuration, so a broken one does not stop it.
pub fn kaizala(args: &KaizalaSimArgs) -> ExitCode {
    let (listen, seed) = (args.listen, &args.seed);
    let options = SimOptions {
        public_url: args.public_url.clone(),
        access_token_lifetime: args.access_token_lifetime,
        delivery_retry_initial: args.delivery_retry_initial,
        delivery_retries: args.delivery_retries,
        ..SimOptions::default()
    };
    let seed = match Seed::load(seed) {
        Ok(seed) => seed,
        Err(error) => {
            eprintln!("kaizala-bridge: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let served = until_signal("info", |stop| async move {
        let sim = KaizalaSim::start(&seed, options, listen)
            .await
            .map_err(|e| e.to_string())?;
        println!("kaizala emulator listening on {}", sim.base_url());
        sim.run_until(stop).await;
        Ok(())
    });
    served.map_or_else(|code| code, |()| ExitCode::from(EXIT_OK))
}
