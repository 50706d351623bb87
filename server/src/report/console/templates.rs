//! The console's templates, embedded in the binary (`server/templates`), in one
//! environment built once. Names ending in `.html` are auto-escaped as HTML, the inline
//! SVG included: no text reaches a page unescaped.

use std::sync::OnceLock;

use minijinja::{AutoEscape, Environment, Output, State, Value, escape_formatter};
use serde::Serialize;

/// Every template, by name.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../../templates/base.html")),
    (
        "macros.html",
        include_str!("../../../templates/macros.html"),
    ),
    (
        "overview.html",
        include_str!("../../../templates/overview.html"),
    ),
    ("stack.html", include_str!("../../../templates/stack.html")),
    ("run.html", include_str!("../../../templates/run.html")),
    ("pull.html", include_str!("../../../templates/pull.html")),
    (
        "timeline.html",
        include_str!("../../../templates/timeline.html"),
    ),
];

/// A page that could not be rendered: a bug in a template, never the data's fault.
#[derive(Debug, thiserror::Error)]
#[error("cannot render the page {page}: {source}")]
pub struct RenderError {
    page: &'static str,
    source: minijinja::Error,
}

fn env() -> &'static Result<Environment<'static>, minijinja::Error> {
    static ENV: OnceLock<Result<Environment<'static>, minijinja::Error>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_formatter(html_formatter);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        Ok(env)
    })
}

/// `text` safe inside HTML text and quoted attributes: `&`, `<`, `>`, `"` and `'` become
/// references. (minijinja's own escaping also turns every `/` into `&#x2f;`, which makes
/// every URL and path on a page unreadable in its source and in tests, for no safety in a
/// quoted attribute or in text.)
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// Writes a value into a page: escaped in `.html` templates unless marked safe (what
/// macros return), as minijinja's formatter does, with [`html_escape`].
fn html_formatter(out: &mut Output, state: &State, value: &Value) -> Result<(), minijinja::Error> {
    if state.auto_escape() != AutoEscape::Html || value.is_safe() {
        return escape_formatter(out, state, value);
    }
    let text = match value.as_str() {
        Some(s) => html_escape(s),
        None => html_escape(&value.to_string()),
    };
    out.write_str(&text).map_err(minijinja::Error::from)
}

/// Renders `page` with `view` as its context.
pub fn render(page: &'static str, view: &impl Serialize) -> Result<String, RenderError> {
    let env = env().as_ref().map_err(|e| RenderError {
        page,
        source: minijinja::Error::new(e.kind(), e.to_string()),
    })?;
    env.get_template(page)
        .and_then(|t| t.render(view))
        .map_err(|source| RenderError { page, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles_and_escapes_html() {
        let env = env().as_ref().expect("templates");
        for (name, _) in TEMPLATES {
            assert!(env.get_template(name).is_ok(), "{name}");
        }
        assert_eq!(
            html_escape("<a href='/x?a=1&b=\"2\"'>"),
            "&lt;a href=&#x27;/x?a=1&amp;b=&quot;2&quot;&#x27;&gt;"
        );
        let mut env = Environment::new();
        env.set_formatter(html_formatter);
        env.add_template("t.html", "<p title=\"{{ x }}\">{{ x }}</p>{{ n }}")
            .unwrap();
        let out = env
            .get_template("t.html")
            .unwrap()
            .render(minijinja::context! { x => "\"><script>/", n => 3 })
            .unwrap();
        assert_eq!(
            out,
            "<p title=\"&quot;&gt;&lt;script&gt;/\">&quot;&gt;&lt;script&gt;/</p>3"
        );
    }
}
