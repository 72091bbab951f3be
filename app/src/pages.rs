//! One module per page.

pub mod admin;
pub mod editor;
pub mod home;
pub mod logs;
mod not_found;
pub mod runs;
pub mod secrets;
mod signin;
pub mod workflows;

pub use home::Home;
pub use not_found::NotFound;
pub use signin::SignIn;
