//! The operator console: one view model per page (overview, stack, run, pull request),
//! the pieces they share, and the templates that render them (`server/templates`,
//! embedded). The JSON API serves the same view models.

pub mod overview;
pub mod pulls;
pub mod run;
pub mod stack;
pub mod state;
pub mod templates;
pub mod timeline;
pub mod view;
