//! Text for people: change tables, event lines, outputs.

use crate::cloud::cfn::{Change, Event};

/// A fixed-width table of a change set: action, logical id, type, replacement.
pub fn change_table(changes: &[Change]) -> String {
    let rows: Vec<[&str; 4]> = changes
        .iter()
        .map(|c| {
            [
                c.action.as_str(),
                c.logical_id.as_str(),
                c.resource_type.as_str(),
                c.replacement.as_str(),
            ]
        })
        .collect();
    let header = ["ACTION", "LOGICAL ID", "TYPE", "REPLACEMENT"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; 4]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i == 3 {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header);
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

/// A Markdown table of a change set, for pull-request comments.
pub fn change_table_markdown(changes: &[Change]) -> String {
    let mut out = String::from("| Action | Resource | Type | Replacement |\n|---|---|---|---|\n");
    for c in changes {
        out.push_str(&format!(
            "| {} | `{}` | `{}` | {} |\n",
            c.action, c.logical_id, c.resource_type, c.replacement
        ));
    }
    out
}

/// `[ 3/31] 12:00:01 CREATE_COMPLETE  AWS::EC2::VPC  Vpc  (reason)`
pub fn event_line(e: &Event, done: usize, total: usize) -> String {
    let width = total.to_string().len();
    let time = e.timestamp.get(11..19).unwrap_or(&e.timestamp);
    let mut s = format!(
        "[{done:>width$}/{total}] {time} {:<28} {:<44} {}",
        e.status, e.resource_type, e.logical_id
    );
    if let Some(r) = &e.reason {
        s.push_str(&format!("  ({r})"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = change_table(&[Change {
            action: "Add".into(),
            logical_id: "Vpc".into(),
            resource_type: "AWS::EC2::VPC".into(),
            replacement: "-".into(),
        }]);
        let lines: Vec<_> = t.lines().collect();
        assert_eq!(lines[0], "ACTION  LOGICAL ID  TYPE           REPLACEMENT");
        assert_eq!(lines[1], "Add     Vpc         AWS::EC2::VPC  -");
    }
}
