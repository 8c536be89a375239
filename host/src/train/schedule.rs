//! Learning-rate schedules, per epoch.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Schedule {
    /// The paper's MatConvNet schedule: decays log-uniformly from `start` to `end` over the epochs.
    LogDecay {
        start: f64,
        end: f64,
    },
    /// The PyTorch port's: `start`, multiplied by `factor` every `every` epochs.
    Step {
        start: f64,
        factor: f64,
        every: usize,
    },
    Constant {
        rate: f64,
    },
}

impl Default for Schedule {
    fn default() -> Self {
        Self::LogDecay {
            start: 1e-2,
            end: 1e-5,
        }
    }
}

impl Schedule {
    /// The same schedule scaled to start at `start`: every epoch's rate times `start` over the
    /// old start.
    pub fn starting_at(self, start: f64) -> Self {
        match self {
            Self::LogDecay { start: old, end } => Self::LogDecay {
                start,
                end: end * start / old,
            },
            Self::Step { factor, every, .. } => Self::Step {
                start,
                factor,
                every,
            },
            Self::Constant { .. } => Self::Constant { rate: start },
        }
    }

    /// The learning rate of `epoch` (0-based) out of `epochs`.
    pub fn rate(&self, epoch: usize, epochs: usize) -> f64 {
        match *self {
            Self::LogDecay { start, end } => {
                if epochs <= 1 {
                    return start;
                }
                let progress = epoch.min(epochs - 1) as f64 / (epochs - 1) as f64;
                start * (end / start).powf(progress)
            }
            Self::Step {
                start,
                factor,
                every,
            } => start * factor.powi((epoch / every.max(1)) as i32),
            Self::Constant { rate } => rate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_decay_spans_its_range_log_uniformly() {
        let schedule = Schedule::default();
        assert!((schedule.rate(0, 100) - 1e-2).abs() < 1e-12);
        assert!((schedule.rate(99, 100) - 1e-5).abs() < 1e-12);
        // Halfway in log space: sqrt(1e-2 * 1e-5).
        let middle = schedule.rate(1, 3);
        assert!((middle - (1e-2f64 * 1e-5).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn step_schedule_drops_tenfold_every_thirty_epochs() {
        let schedule = Schedule::Step {
            start: 0.1,
            factor: 0.1,
            every: 30,
        };
        assert!((schedule.rate(29, 100) - 0.1).abs() < 1e-12);
        assert!((schedule.rate(30, 100) - 0.01).abs() < 1e-12);
        assert!((schedule.rate(95, 100) - 1e-4).abs() < 1e-12);
    }
}
