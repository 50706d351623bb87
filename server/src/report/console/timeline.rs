//! The run page's timeline: one bar per resource, from its first `*_IN_PROGRESS` event to
//! its last, coloured by how it ended, on a time axis with ticks. Geometry is computed
//! here, typed; the template draws it (every text escaped there).

use serde::Serialize;

/// One stack event, as a job's detail records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EventView {
    /// ms since the epoch; `None` when the time does not parse.
    pub at: Option<i64>,
    pub time: String,
    pub logical_id: String,
    pub resource_type: String,
    pub status: String,
    pub reason: Option<String>,
    pub physical_id: Option<String>,
}

impl EventView {
    pub fn from_json(v: &serde_json::Value) -> Option<EventView> {
        let s = |k: &str| v[k].as_str().map(str::to_string);
        let timestamp = s("timestamp").unwrap_or_default();
        Some(EventView {
            at: parse_time(&timestamp),
            time: timestamp.get(11..19).unwrap_or(&timestamp).to_string(),
            logical_id: s("logical_id")?,
            resource_type: s("resource_type").unwrap_or_default(),
            status: s("status").unwrap_or_default(),
            reason: s("reason"),
            physical_id: s("physical_id").filter(|p| !p.is_empty()),
        })
    }
}

/// An RFC 3339 time (`2026-01-01T00:00:01.250Z`) in ms since the epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// How a resource's bar ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Complete,
    Failed,
    RolledBack,
    Deleted,
    InProgress,
}

impl Outcome {
    fn of(status: &str) -> Outcome {
        if status.ends_with("_FAILED") {
            Outcome::Failed
        } else if status.contains("ROLLBACK") {
            Outcome::RolledBack
        } else if status == "DELETE_COMPLETE" || status == "DELETE_SKIPPED" {
            Outcome::Deleted
        } else if status.ends_with("_COMPLETE") {
            Outcome::Complete
        } else {
            Outcome::InProgress
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled back",
            Outcome::Deleted => "deleted",
            Outcome::InProgress => "in progress",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Bar {
    pub logical_id: String,
    /// The logical id as the row's label shows it: at most [`LABEL_CHARS`] characters.
    pub label: String,
    pub resource_type: String,
    pub status: String,
    pub outcome: Outcome,
    pub x: f64,
    pub y: f64,
    pub width: f64,
    /// Where the row's label sits.
    pub text_y: f64,
    /// What a pointer over the bar says.
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Tick {
    pub x: f64,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Timeline {
    pub width: f64,
    pub height: f64,
    /// Where the plot starts (the labels are left of it) and ends.
    pub plot_x: f64,
    pub plot_end: f64,
    pub axis_y: f64,
    pub bars: Vec<Bar>,
    pub ticks: Vec<Tick>,
    /// What the whole picture says, for a screen reader.
    pub summary: String,
}

pub const LABEL_WIDTH: f64 = 240.0;
pub const PLOT_WIDTH: f64 = 640.0;
pub const ROW: f64 = 20.0;
pub const BAR: f64 = 12.0;
pub const TOP: f64 = 24.0;
/// A resource that started and ended at once is still seen.
pub const MIN_BAR: f64 = 2.0;
/// The most bars drawn; a stack of more shows the first ones (the log has all).
pub const MAX_BARS: usize = 500;

/// Tick steps, in seconds: the first that gives at most 8 ticks.
const STEPS: [i64; 14] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
];

/// The timeline of `events` (in the order CloudFormation sent them); `None` when no
/// resource has a time.
pub fn build(events: &[EventView]) -> Option<Timeline> {
    // Per resource, in order of first appearance: (start, end, last status, type).
    let mut rows: Vec<(String, i64, i64, String, String)> = Vec::new();
    for e in events {
        let Some(at) = e.at else { continue };
        match rows.iter_mut().find(|r| r.0 == e.logical_id) {
            Some(r) => {
                r.2 = r.2.max(at);
                r.3 = e.status.clone();
            }
            // A resource's bar starts at its first in-progress event; one seen only as
            // done (a delete skipped) is a mark at that time.
            None => rows.push((
                e.logical_id.clone(),
                at,
                at,
                e.status.clone(),
                e.resource_type.clone(),
            )),
        }
    }
    if rows.is_empty() {
        return None;
    }
    rows.truncate(MAX_BARS);
    let t0 = rows.iter().map(|r| r.1).min()?;
    let t1 = rows.iter().map(|r| r.2).max()?;
    let span = (t1 - t0).max(1000);
    let step = STEPS
        .iter()
        .copied()
        .find(|s| span / (s * 1000) <= 8)
        .unwrap_or(7200);
    let scale = PLOT_WIDTH / span as f64;
    let x = |t: i64| LABEL_WIDTH + (t - t0) as f64 * scale;
    let ticks = (0..=span / (step * 1000))
        .map(|i| Tick {
            x: round(x(t0 + i * step * 1000)),
            label: tick_label(i * step),
        })
        .collect();
    let bars: Vec<Bar> = rows
        .into_iter()
        .enumerate()
        .map(|(i, (logical_id, start, end, status, resource_type))| {
            let outcome = Outcome::of(&status);
            let y = TOP + i as f64 * ROW;
            Bar {
                title: format!(
                    "{logical_id} ({resource_type}): {status} after {}",
                    super::view::duration(end - start)
                ),
                x: round(x(start)),
                y: round(y + (ROW - BAR) / 2.0),
                width: round(((end - start) as f64 * scale).max(MIN_BAR)),
                text_y: round(y + ROW / 2.0 + 4.0),
                label: label(&logical_id),
                logical_id,
                resource_type,
                status,
                outcome,
            }
        })
        .collect();
    let failed = bars.iter().filter(|b| b.outcome == Outcome::Failed).count();
    Some(Timeline {
        width: LABEL_WIDTH + PLOT_WIDTH + 40.0,
        height: TOP + bars.len() as f64 * ROW + 8.0,
        plot_x: LABEL_WIDTH,
        plot_end: LABEL_WIDTH + PLOT_WIDTH,
        axis_y: TOP - 6.0,
        summary: format!(
            "{} resources over {}, {failed} failed",
            bars.len(),
            super::view::duration(t1 - t0)
        ),
        bars,
        ticks,
    })
}

/// The longest label left of a bar.
pub const LABEL_CHARS: usize = 34;

fn label(id: &str) -> String {
    if id.chars().count() <= LABEL_CHARS {
        return id.to_string();
    }
    let head: String = id.chars().take(LABEL_CHARS - 1).collect();
    format!("{head}…")
}

fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn tick_label(s: i64) -> String {
    match s {
        0..60 => format!("{s}s"),
        _ if s % 60 == 0 => format!("{}m", s / 60),
        _ => format!("{}m{}s", s / 60, s % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(secs: u32, id: &str, status: &str) -> EventView {
        EventView::from_json(&serde_json::json!({
            "timestamp": format!("2026-01-01T00:{:02}:{:02}.000Z", secs / 60, secs % 60),
            "logical_id": id, "resource_type": "AWS::X::Y", "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn each_resource_is_a_bar_from_its_start_to_its_end_coloured_by_outcome() {
        let t = build(&[
            ev(0, "stack", "UPDATE_IN_PROGRESS"),
            ev(0, "Vpc", "CREATE_IN_PROGRESS"),
            ev(30, "Vpc", "CREATE_COMPLETE"),
            ev(30, "Db", "CREATE_IN_PROGRESS"),
            ev(60, "Db", "CREATE_FAILED"),
            ev(61, "Vpc", "DELETE_COMPLETE"),
            ev(80, "stack", "UPDATE_ROLLBACK_COMPLETE"),
            ev(70, "Cache", "CREATE_IN_PROGRESS"),
        ])
        .unwrap();
        let got: Vec<_> = t
            .bars
            .iter()
            .map(|b| (b.logical_id.as_str(), b.outcome, b.x, b.width))
            .collect();
        // 80 s over 640 px: 8 px a second, from x = 240.
        assert_eq!(
            got,
            [
                ("stack", Outcome::RolledBack, 240.0, 640.0),
                ("Vpc", Outcome::Deleted, 240.0, 488.0),
                ("Db", Outcome::Failed, 480.0, 240.0),
                ("Cache", Outcome::InProgress, 800.0, MIN_BAR),
            ]
        );
        assert_eq!(t.bars[2].y, TOP + 2.0 * ROW + 4.0);
        assert_eq!(t.bars[2].title, "Db (AWS::X::Y): CREATE_FAILED after 30 s");
        // 80 s: ticks every 10 s (15 would be fine too, but 10 is the first with <= 8).
        let ticks: Vec<_> = t.ticks.iter().map(|k| (k.x, k.label.as_str())).collect();
        assert_eq!(ticks.len(), 9, "{ticks:?}");
        assert_eq!(ticks[0], (240.0, "0s"));
        assert_eq!(ticks[1], (320.0, "10s"));
        assert_eq!(ticks[6], (720.0, "1m"));
        assert_eq!(ticks[7], (800.0, "1m10s"));
        assert_eq!(t.summary, "4 resources over 1 min 20 s, 1 failed");
        assert_eq!(t.height, TOP + 4.0 * ROW + 8.0);
    }

    #[test]
    fn no_timed_event_no_timeline() {
        assert_eq!(build(&[]), None);
        let mut e = ev(0, "Vpc", "CREATE_COMPLETE");
        e.at = None;
        assert_eq!(build(&[e]), None);
        assert_eq!(
            parse_time("2026-01-01T00:00:01.250Z"),
            Some(1_767_225_601_250)
        );
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn long_runs_get_coarser_ticks() {
        let t = build(&[
            ev(0, "A", "CREATE_IN_PROGRESS"),
            ev(3599, "A", "CREATE_COMPLETE"),
        ])
        .unwrap();
        let labels: Vec<_> = t.ticks.iter().map(|k| k.label.as_str()).collect();
        assert_eq!(labels, ["0s", "10m", "20m", "30m", "40m", "50m"]);
    }
}
