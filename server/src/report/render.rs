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

/// A Markdown table of a change set, for pull-request comments. Every cell is text a fork
/// may control (its template names the resources).
pub fn change_table_markdown(changes: &[Change]) -> String {
    let mut out = String::from("| Action | Resource | Type | Replacement |\n|---|---|---|---|\n");
    for c in changes {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            md_cell(&md_text(&c.action)),
            md_cell(&md_code(&c.logical_id)),
            md_cell(&md_code(&c.resource_type)),
            md_cell(&md_text(&c.replacement))
        ));
    }
    out
}

/// Longest text a comment shows of one name or message.
const MD_MAX: usize = 500;

/// `s` as an inline code span that nothing inside can end: no link, image, mention, HTML or
/// emphasis is rendered in a code span, and the fence is longer than any backtick run in it.
pub fn md_code(s: &str) -> String {
    let s = one_line(s);
    let run = s.split(|c: char| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(run + 1);
    // A space on each side keeps a leading or trailing backtick inside the span.
    if s.starts_with('`') || s.ends_with('`') || s.starts_with(' ') {
        format!("{fence} {s} {fence}")
    } else {
        format!("{fence}{s}{fence}")
    }
}

/// `s` as plain Markdown text: every ASCII punctuation character escaped (no links, images,
/// HTML, emphasis, tables or code spans), and a word joiner after `@`, `#`, `://` and `www`
/// so GitHub links no mention, issue, or bare URL.
pub fn md_text(s: &str) -> String {
    let chars: Vec<char> = one_line(s).chars().collect();
    let mut out = String::with_capacity(chars.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        let www =
            c == '.' && i >= 3 && chars[i - 3..i].iter().all(|w| w.eq_ignore_ascii_case(&'w'));
        if www {
            out.push('\u{2060}');
        }
        if c.is_ascii_punctuation() {
            out.push('\\');
        }
        out.push(c);
        let scheme = c == ':' && chars.get(i + 1) == Some(&'/');
        if matches!(c, '@' | '#') || scheme {
            out.push('\u{2060}');
        }
    }
    out
}

/// `s` as it is when it can render as nothing but itself (letters, digits, spaces and
/// `. , : / - ( )`, no URL), else as [`md_text`]: `tcp/22 from 0.0.0.0/0` stays readable
/// and searchable in the Markdown too, a name a fork wrote cannot become a link, a mention
/// or HTML.
pub fn md_literal(s: &str) -> String {
    let plain = !s.is_empty()
        && s.len() <= MD_MAX
        && !s.starts_with([' ', '-'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || " .,:/-()".contains(c))
        && !s.contains("://")
        && !s.to_ascii_lowercase().contains("www.");
    if plain { s.to_string() } else { md_text(s) }
}

/// A table cell: a pipe would end it, even inside a code span (GFM reads `\|` as `|`).
pub fn md_cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn one_line(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    crate::policy::truncate(&flat, MD_MAX)
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

    /// What a fork can put in a name or a message, and what GitHub would make of it raw.
    const HOSTILE: &str = "x](https://evil.example/a) ![i](https://evil.example/i.png) <img src=x onerror=alert(1)> @octocat #1 **b** www.evil.example | `code` ``two`` \n# heading";

    #[test]
    fn markdown_text_renders_nothing_active() {
        let t = md_text(HOSTILE);
        // Every punctuation character is escaped: no link, image, HTML, emphasis or cell.
        let mut chars = t.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                assert!(
                    chars.next().is_some_and(|n| n.is_ascii_punctuation()),
                    "{t}"
                );
            } else {
                assert!(!c.is_ascii_punctuation(), "unescaped {c:?} in {t}");
                assert!(!c.is_control(), "{t}");
            }
        }
        // And GitHub's autolinks (mentions, issues, bare URLs) are broken up.
        let plain = t.replace('\\', "");
        for raw in ["@octocat", "#1", "www.", "://"] {
            assert!(!plain.contains(raw), "{raw:?} survives in {t}");
        }
        assert!(plain.contains("octocat") && plain.contains("evil"), "{t}");
    }

    #[test]
    fn markdown_literals_are_plain_only_when_nothing_can_render() {
        assert_eq!(md_literal("tcp/22 from 0.0.0.0/0"), "tcp/22 from 0.0.0.0/0");
        assert_eq!(md_literal("AlbSecurityGroup"), "AlbSecurityGroup");
        assert_eq!(md_literal("s3:Get*"), "s3\\:Get\\*");
        for hostile in [
            HOSTILE,
            "https://evil.example",
            "www.evil.example",
            "@octocat",
            "a_b_",
        ] {
            assert_eq!(md_literal(hostile), md_text(hostile));
        }
    }

    #[test]
    fn markdown_code_spans_cannot_be_closed() {
        let c = md_code("a``b`c");
        assert_eq!(c, "```a``b`c```");
        assert_eq!(md_code("`x"), "`` `x ``");
        assert!(!md_code("a\nb").contains('\n'));
        let cell = md_cell(&md_code(HOSTILE));
        assert!(!cell.contains(" | "), "{cell}");
    }

    #[test]
    fn change_tables_escape_what_the_template_names() {
        let t = change_table_markdown(&[Change {
            action: "Add".into(),
            logical_id: "Evil|<b>x</b>".into(),
            resource_type: "AWS::SSM::Parameter".into(),
            replacement: "-".into(),
            scope: Vec::new(),
        }]);
        let row = t.lines().nth(2).unwrap();
        assert_eq!(row.matches(" | ").count(), 3, "{row}");
        assert!(row.contains("`Evil\\|<b>x</b>`"), "{row}");
    }

    #[test]
    fn table_aligns_columns() {
        let t = change_table(&[Change {
            action: "Add".into(),
            logical_id: "Vpc".into(),
            resource_type: "AWS::EC2::VPC".into(),
            replacement: "-".into(),
            scope: Vec::new(),
        }]);
        let lines: Vec<_> = t.lines().collect();
        assert_eq!(lines[0], "ACTION  LOGICAL ID  TYPE           REPLACEMENT");
        assert_eq!(lines[1], "Add     Vpc         AWS::EC2::VPC  -");
    }
}
