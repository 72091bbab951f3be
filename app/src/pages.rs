//! One module per page.

pub mod home;
mod not_found;
mod signin;

pub use home::Home;
pub use not_found::NotFound;
pub use signin::SignIn;
