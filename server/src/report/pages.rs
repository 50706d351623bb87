//! The run pages that commit statuses link to, and a list of recent jobs, as HTML.

use crate::queue::Job;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}pre{background:#f6f6f6;padding:1em;overflow:auto}.succeeded{color:#1a7f37}.failed,.error{color:#cf222e}.running,.queued{color:#9a6700}</style>";

/// The list of recent jobs.
pub fn index(jobs: &[Job]) -> String {
    let mut rows = String::new();
    for j in jobs {
        rows.push_str(&format!(
            "<tr><td><a href=\"/runs/{id}\">{id}</a></td><td>{kind:?}</td><td>{repo}</td><td>{stack}</td><td><code>{sha}</code></td><td>{trigger}</td><td class=\"{state}\">{state}</td></tr>",
            id = j.id,
            kind = j.kind,
            repo = esc(&j.repo),
            stack = esc(j.stack.as_deref().unwrap_or("")),
            sha = esc(crate::domain::short(&j.sha)),
            trigger = esc(j.trigger.as_str()),
            state = esc(j.state.as_str()),
        ));
    }
    format!(
        "<!doctype html><title>stackgate</title>{STYLE}<h1>stackgate</h1><p>Recent jobs. JSON: <code>/api/v1/jobs/&lt;id&gt;</code>, metrics: <a href=\"/metrics\">/metrics</a>.</p>\
         <table><tr><th>job</th><th>kind</th><th>repo</th><th>stack</th><th>sha</th><th>trigger</th><th>state</th></tr>{rows}</table>"
    )
}

/// One job's page: its findings, its events and its whole detail.
pub fn run_page(job: &Job) -> String {
    let mut findings = String::new();
    let mut collect = |report: &serde_json::Value, stack: &str| {
        for o in report["outcomes"].as_array().into_iter().flatten() {
            if let Some(err) = o["error"].as_str() {
                findings.push_str(&format!("<tr><td>{}</td><td>{}</td><td class=\"error\">error</td><td></td><td>{}</td></tr>", esc(stack), esc(o["policy"].as_str().unwrap_or("")), esc(err)));
            }
            for f in o["findings"].as_array().into_iter().flatten() {
                findings.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(stack),
                    esc(f["rule"].as_str().unwrap_or("")),
                    esc(f["severity"].as_str().unwrap_or("")),
                    esc(f["resource"].as_str().unwrap_or("")),
                    esc(f["message"].as_str().unwrap_or(""))
                ));
            }
        }
    };
    collect(&job.detail["policy"], job.stack.as_deref().unwrap_or(""));
    if let Some(stacks) = job.detail["stacks"].as_object() {
        for (name, s) in stacks {
            collect(&s["policy"], name);
        }
    }
    let mut events = String::new();
    for e in job.detail["events"].as_array().into_iter().flatten() {
        if let Some(n) = e["note"].as_str() {
            events.push_str(&format!("{}\n", esc(n)));
        } else if e["event"].is_object() {
            let ev = &e["event"];
            events.push_str(&format!(
                "{} {} {} {}\n",
                esc(ev["status"].as_str().unwrap_or("")),
                esc(ev["resource_type"].as_str().unwrap_or("")),
                esc(ev["logical_id"].as_str().unwrap_or("")),
                esc(ev["reason"].as_str().unwrap_or(""))
            ));
        }
    }
    let comment = job.detail["comment_error"]
        .as_str()
        .map(|e| format!("<p class=\"error\">PR comment {}</p>", esc(e)))
        .unwrap_or_default();
    let detail = serde_json::to_string_pretty(&job.detail).unwrap_or_default();
    format!(
        "<!doctype html><title>stackgate run {id}</title>{STYLE}<p><a href=\"/\">all runs</a></p>\
         <h1>Run {id}: <span class=\"{state}\">{state}</span></h1>\
         <table><tr><th>kind</th><td>{kind:?}</td></tr><tr><th>repository</th><td>{repo}</td></tr><tr><th>stack</th><td>{stack}</td></tr>\
         <tr><th>commit</th><td><code>{sha}</code></td></tr><tr><th>trigger</th><td>{trigger}</td></tr><tr><th>phase</th><td>{phase}</td></tr></table>{comment}\
         <h2>Policy findings</h2><table><tr><th>stack</th><th>rule / policy</th><th>severity</th><th>resource</th><th>message</th></tr>{findings}</table>\
         <h2>Events</h2><pre>{events}</pre><h2>Detail</h2><pre>{detail}</pre>",
        id = job.id,
        state = esc(job.state.as_str()),
        kind = job.kind,
        repo = esc(&job.repo),
        stack = esc(job.stack.as_deref().unwrap_or("")),
        sha = esc(&job.sha),
        trigger = esc(job.trigger.as_str()),
        phase = esc(job.phase.map_or("", |p| p.as_str())),
        detail = esc(&detail),
    )
}
