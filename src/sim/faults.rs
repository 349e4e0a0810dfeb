//! Faults an emulator can be told to inject, deterministically under a seed:
//! errors, latency and hanging requests on API calls; duplicated and reordered
//! webhook deliveries. Shared by every emulator.

use std::time::Duration;

use axum::http::StatusCode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// The faults in force. All rates are shares between 0 and 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Share of API calls answered with one of `error_statuses` instead.
    pub error_rate: f64,
    /// The statuses injected errors use, chosen at random among them.
    pub error_statuses: Vec<u16>,
    /// Added to every API call.
    pub latency_ms: u64,
    /// Share of API calls that are never answered (until the emulator stops).
    pub hang_rate: f64,
    /// Share of API calls that are carried out and then answered with an injected
    /// 500, as when the answer is lost on its way back: the caller cannot tell
    /// whether its call took effect.
    pub lost_rate: f64,
    /// Share of webhook events delivered twice.
    pub duplicate_rate: f64,
    /// Share of webhook events held back and delivered after the next one.
    pub reorder_rate: f64,
    /// Seed of the random choices, so a run can be repeated exactly.
    pub seed: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            error_rate: 0.0,
            error_statuses: vec![500, 503],
            latency_ms: 0,
            hang_rate: 0.0,
            lost_rate: 0.0,
            duplicate_rate: 0.0,
            reorder_rate: 0.0,
            seed: 0,
        }
    }
}

impl Faults {
    /// Every problem with these settings, naming the field.
    pub fn check(&self) -> Result<(), String> {
        for (name, rate) in [
            ("error_rate", self.error_rate),
            ("hang_rate", self.hang_rate),
            ("lost_rate", self.lost_rate),
            ("duplicate_rate", self.duplicate_rate),
            ("reorder_rate", self.reorder_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name}: must be between 0 and 1, not {rate}"));
            }
        }
        if self.error_rate > 0.0 && self.error_statuses.is_empty() {
            return Err("error_statuses: at least one status is needed when error_rate > 0".into());
        }
        if let Some(status) = self
            .error_statuses
            .iter()
            .find(|s| !(500..=599).contains(*s))
        {
            return Err(format!("error_statuses: {status} is not a 5xx status"));
        }
        Ok(())
    }
}

/// What to do to one API call.
#[derive(Debug, Default)]
pub struct CallFault {
    /// Wait this long first.
    pub latency: Duration,
    /// Never answer.
    pub hang: bool,
    /// Answer with this error instead.
    pub error: Option<StatusCode>,
    /// Carry the call out, then answer 500 anyway.
    pub lost: bool,
}

/// The faults in force and the random sources that apply them: one for API calls
/// and one for deliveries, so that each stays repeatable when both are in use.
pub struct FaultState {
    faults: Faults,
    rng: StdRng,
    delivery_rng: StdRng,
}

impl Default for FaultState {
    fn default() -> Self {
        Self::new(Faults::default())
    }
}

impl FaultState {
    /// Puts `faults` in force, reseeding the random source.
    pub fn new(faults: Faults) -> Self {
        let rng = StdRng::seed_from_u64(faults.seed);
        let delivery_rng = StdRng::seed_from_u64(faults.seed ^ 0x9e37_79b9_7f4a_7c15);
        Self {
            faults,
            rng,
            delivery_rng,
        }
    }

    /// The faults in force.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Decides the fate of one API call.
    pub fn for_call(&mut self) -> CallFault {
        let latency = Duration::from_millis(self.faults.latency_ms);
        if self.faults.hang_rate > 0.0 && self.rng.random_bool(self.faults.hang_rate) {
            return CallFault {
                latency,
                hang: true,
                ..CallFault::default()
            };
        }
        if self.faults.lost_rate > 0.0 && self.rng.random_bool(self.faults.lost_rate) {
            return CallFault {
                latency,
                lost: true,
                ..CallFault::default()
            };
        }
        let error = (self.faults.error_rate > 0.0 && self.rng.random_bool(self.faults.error_rate))
            .then(|| {
                let i = self.rng.random_range(0..self.faults.error_statuses.len());
                StatusCode::from_u16(self.faults.error_statuses[i])
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            });
        CallFault {
            latency,
            error,
            ..CallFault::default()
        }
    }

    /// Whether to deliver an event twice.
    pub fn duplicate(&mut self) -> bool {
        self.faults.duplicate_rate > 0.0
            && self.delivery_rng.random_bool(self.faults.duplicate_rate)
    }

    /// Whether to hold an event back behind the next one.
    pub fn reorder(&mut self) -> bool {
        self.faults.reorder_rate > 0.0 && self.delivery_rng.random_bool(self.faults.reorder_rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_faults() {
        let faults = Faults {
            error_rate: 0.5,
            seed: 7,
            ..Faults::default()
        };
        let run = || {
            let mut state = FaultState::new(faults.clone());
            (0..32)
                .map(|_| state.for_call().error.map(|s| s.as_u16()))
                .collect::<Vec<_>>()
        };
        let first = run();
        assert_eq!(first, run());
        assert!(first.iter().any(Option::is_some) && first.iter().any(Option::is_none));
        assert!(first.iter().flatten().all(|s| *s == 500 || *s == 503));
    }

    #[test]
    fn bad_settings_name_the_field() {
        let faults = Faults {
            reorder_rate: 1.5,
            ..Faults::default()
        };
        assert_eq!(
            faults.check().unwrap_err(),
            "reorder_rate: must be between 0 and 1, not 1.5"
        );
        let faults = Faults {
            error_rate: 0.1,
            error_statuses: vec![404],
            ..Faults::default()
        };
        assert_eq!(
            faults.check().unwrap_err(),
            "error_statuses: 404 is not a 5xx status"
        );
    }
}
