//! Prometheus text metrics: deliveries by result, job durations, policy verdicts, queue
//! depth.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Each stack's latest drift check, as gauges (read from the state database, so every
/// replica says the same).
fn drift_gauges(drifts: &[crate::queue::DriftRow]) -> String {
    let mut out = String::from(
        "# HELP stackgate_stack_drifted 1 when the stack's latest drift check found it changed outside stackgate.\n\
         # TYPE stackgate_stack_drifted gauge\n",
    );
    let labels = |d: &crate::queue::DriftRow| {
        format!("repo=\"{}\",stack=\"{}\"", label(&d.repo), label(&d.stack))
    };
    for d in drifts {
        let v = u8::from(d.state == crate::domain::DriftState::Drifted);
        out.push_str(&format!("stackgate_stack_drifted{{{}}} {v}\n", labels(d)));
    }
    out.push_str(
        "# HELP stackgate_stack_drifted_resources Resources changed or deleted outside stackgate, at the latest check.\n\
         # TYPE stackgate_stack_drifted_resources gauge\n",
    );
    for d in drifts {
        out.push_str(&format!(
            "stackgate_stack_drifted_resources{{{}}} {}\n",
            labels(d),
            d.drifted
        ));
    }
    out.push_str(
        "# HELP stackgate_stack_drift_checked_seconds When the stack was last checked for drift (Unix time).\n\
         # TYPE stackgate_stack_drift_checked_seconds gauge\n",
    );
    for d in drifts {
        out.push_str(&format!(
            "stackgate_stack_drift_checked_seconds{{{}}} {}\n",
            labels(d),
            d.checked_at / 1000
        ));
    }
    out
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[derive(Default)]
pub struct Metrics {
    deliveries: Mutex<BTreeMap<&'static str, u64>>,
    verdicts: Mutex<BTreeMap<String, u64>>,
    /// (kind, outcome) → (count, sum of seconds)
    durations: Mutex<BTreeMap<(String, String), (u64, f64)>>,
}

impl Metrics {
    pub fn delivery(&self, result: &'static str) {
        *self
            .deliveries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(result)
            .or_default() += 1;
    }

    pub fn verdict(&self, verdict: &str) {
        *self
            .verdicts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(verdict.into())
            .or_default() += 1;
    }

    pub fn job(&self, kind: &str, outcome: &str, seconds: f64) {
        let mut d = self.durations.lock().unwrap_or_else(|p| p.into_inner());
        let e = d.entry((kind.into(), outcome.into())).or_default();
        e.0 += 1;
        e.1 += seconds;
    }

    pub fn render(&self, queued: i64, running: i64, drifts: &[crate::queue::DriftRow]) -> String {
        let mut out = String::new();
        out.push_str("# HELP stackgate_deliveries_total Webhook deliveries by result.\n# TYPE stackgate_deliveries_total counter\n");
        for (k, v) in self
            .deliveries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            out.push_str(&format!(
                "stackgate_deliveries_total{{result=\"{k}\"}} {v}\n"
            ));
        }
        out.push_str("# HELP stackgate_policy_verdicts_total Policy gate verdicts.\n# TYPE stackgate_policy_verdicts_total counter\n");
        for (k, v) in self
            .verdicts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            out.push_str(&format!(
                "stackgate_policy_verdicts_total{{verdict=\"{k}\"}} {v}\n"
            ));
        }
        out.push_str("# HELP stackgate_job_duration_seconds Job run time.\n# TYPE stackgate_job_duration_seconds summary\n");
        for ((kind, outcome), (n, sum)) in self
            .durations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            out.push_str(&format!(
                "stackgate_job_duration_seconds_count{{kind=\"{kind}\",outcome=\"{outcome}\"}} {n}\n\
                 stackgate_job_duration_seconds_sum{{kind=\"{kind}\",outcome=\"{outcome}\"}} {sum:.3}\n"
            ));
        }
        out.push_str(&format!(
            "# HELP stackgate_queue_depth Jobs by state.\n# TYPE stackgate_queue_depth gauge\n\
             stackgate_queue_depth{{state=\"queued\"}} {queued}\nstackgate_queue_depth{{state=\"running\"}} {running}\n"
        ));
        out.push_str(&drift_gauges(drifts));
        out
    }
}
