//! Each connector's line of turns in this process: when the last survey waiting for
//! the connector's quota was told to go. A survey whose permit is further off than a
//! worker waits is given the next turn, a call's spacing after the one before, and
//! queued for it, so a backlog comes back spread over the quota's slots instead of
//! all at once, and holds no worker while it waits.
//!
//! The line is consulted twice: by the intake, which queues a survey straight for its
//! turn when the line is already longer than a worker would wait (a burst past the
//! quota is never fetched only to be put off), and by the send handler, which puts
//! off a survey the gate says is too far. The gate stays the authority: a survey back
//! on its turn still takes its permits from the gate, and a line that is too short
//! (another replica's surveys took the slots) only puts a survey off again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::model::ConnectorRef;
use crate::queue::now_ms;

/// How long a worker waits for its connector's quota before it gives the job back
/// to the queue for its turn: the queue's grain (a job comes back on a whole second,
/// up to a second before its turn) plus two calls' spacing, so a job back for its
/// turn finds its permit within the wait, and two or three wait ready for each
/// connector's next slots (with one spacing, a job back late left its slot unused).
pub fn patience(pacing: Duration) -> Duration {
    Duration::from_secs(1) + pacing.saturating_mul(2)
}

/// The lines of every connector of this process (see the module doc).
#[derive(Default)]
pub struct Turns {
    last_ms: Mutex<HashMap<ConnectorRef, i64>>,
}

impl Turns {
    /// The next turn of `connector`'s line for a survey whose permit is `wait` away:
    /// no sooner than that, and a `pacing` after the turn before it.
    pub fn next(&self, connector: &ConnectorRef, wait: Duration, pacing: Duration) -> i64 {
        let earliest = now_ms().saturating_add(wait.as_millis().min(i64::MAX as u128) as i64);
        self.take(connector, pacing, |spaced| Some(earliest.max(spaced)))
            .unwrap_or(earliest)
    }

    /// The turn for a new survey of `connector` when its line already reaches past
    /// what a worker waits ([`patience`]): it would only be fetched to be put off.
    /// `None` when the line is short or empty; the survey is then queued due now and
    /// meets the gate.
    pub fn behind_the_line(&self, connector: &ConnectorRef, pacing: Duration) -> Option<i64> {
        let horizon = now_ms().saturating_add(patience(pacing).as_millis() as i64);
        self.take(connector, pacing, |spaced| {
            (spaced > horizon).then_some(spaced)
        })
    }

    /// Takes the turn `choose` picks from the line's next spaced turn, if it picks one.
    fn take(
        &self,
        connector: &ConnectorRef,
        pacing: Duration,
        choose: impl FnOnce(i64) -> Option<i64>,
    ) -> Option<i64> {
        let mut lines = self.last_ms.lock().unwrap_or_else(|e| e.into_inner());
        let previous = lines.get(connector).copied().unwrap_or(i64::MIN);
        let spaced = previous.saturating_add(pacing.as_millis().max(1) as i64);
        let turn = choose(spaced)?;
        lines.insert(connector.clone(), turn);
        Some(turn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surveys_put_off_are_spaced_a_call_apart_and_the_intake_queues_behind_a_long_line() {
        let turns = Turns::default();
        let connector = ConnectorRef::new("t", "c");
        let other = ConnectorRef::new("t", "d");
        let pacing = Duration::from_millis(600);
        // An empty line: a new survey meets the gate.
        assert_eq!(turns.behind_the_line(&connector, pacing), None);
        let first = turns.next(&connector, Duration::from_secs(5), pacing);
        assert!(first >= now_ms() + 4_900);
        let second = turns.next(&connector, Duration::from_secs(1), pacing);
        assert_eq!(second, first + 600, "a call's spacing after the one before");
        // The line reaches past a worker's patience: queued straight for its turn.
        let queued = turns.behind_the_line(&connector, pacing);
        assert_eq!(queued, Some(second + 600));
        // Another connector's line is its own.
        assert_eq!(turns.behind_the_line(&other, pacing), None);
    }

    #[test]
    fn a_line_that_ran_out_lets_a_new_survey_meet_the_gate() {
        let turns = Turns::default();
        let connector = ConnectorRef::new("t", "c");
        let pacing = Duration::from_millis(10);
        turns.next(&connector, Duration::from_millis(20), pacing);
        // Within a worker's patience (a second and two spacings): not put off.
        assert_eq!(turns.behind_the_line(&connector, pacing), None);
    }
}
