//! Browser tests: a real headless Chromium, driven over WebDriver by
//! chromedriver, against a real Xene server on a real socket.

mod actions;
mod util;

mod admin;
mod api_docs;
mod artifact_panel;
mod artifacts;
mod caches;
mod code_editor;
mod editor;
mod editor_walk;
mod home;
mod phone;
mod run_form;
mod run_page;
pub mod signin;
mod spread;
mod ui;
