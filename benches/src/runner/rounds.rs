//! Repeated rounds of a run: on a shared or noisy machine one phase can swing by half between
//! runs, so a run may be repeated (`--rounds N`, every engine once per round, rounds one after
//! another so that a slow spell falls on all engines alike) and each phase reported from its
//! median round, with every round's throughput kept beside it.

use crate::runner::workload::Figures;

/// Merges the figures of several rounds of one run (each round's phases in the same order) into
/// one list in that order: each phase's figures are those of the round whose throughput is the
/// median (the lower of the middle two for an even count), with `round_ops_per_sec` holding
/// every round's throughput in round order.
pub fn median_of(rounds: &[Vec<Figures>]) -> Vec<Figures> {
    let Some(first) = rounds.first() else { return Vec::new() };
    (0..first.len())
        .map(|phase| {
            let mut runs: Vec<&Figures> = rounds.iter().map(|round| &round[phase]).collect();
            let all: Vec<f64> = runs.iter().map(|f| f.ops_per_sec).collect();
            debug_assert!(runs
                .iter()
                .all(|f| (&f.engine, f.cores, &f.workload)
                    == (&runs[0].engine, runs[0].cores, &runs[0].workload)));
            runs.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
            let mut median = runs[(runs.len() - 1) / 2].clone();
            median.round_ops_per_sec = all;
            median
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(workload: &str, ops_per_sec: f64) -> Figures {
        Figures { engine: "e".into(), cores: 1, workload: workload.into(), ops_per_sec, ..Figures::default() }
    }

    #[test]
    fn each_phase_comes_from_its_median_round_in_the_order_of_the_run() {
        let round = |fill: f64, read: f64, seconds: f64| {
            let mut f = figures("fillrandom", fill);
            f.seconds = seconds;
            vec![f, figures("readrandom", read)]
        };
        let merged = median_of(&[round(3.0, 10.0, 1.0), round(1.0, 30.0, 2.0), round(2.0, 20.0, 3.0)]);
        assert_eq!(merged.len(), 2);
        assert_eq!((merged[0].workload.as_str(), merged[0].ops_per_sec), ("fillrandom", 2.0));
        assert_eq!(merged[0].seconds, 3.0, "the other figures come from the same round");
        assert_eq!(merged[0].round_ops_per_sec, vec![3.0, 1.0, 2.0]);
        assert_eq!((merged[1].workload.as_str(), merged[1].ops_per_sec), ("readrandom", 20.0));
        let even = median_of(&[round(4.0, 1.0, 1.0), round(2.0, 1.0, 2.0)]);
        assert_eq!(even[0].ops_per_sec, 2.0, "the lower middle of an even count");
    }
}
