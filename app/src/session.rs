//! Who is signed in: `App` looks it up once and provides it; pages read it
//! here rather than from the module that routes to them.

use leptos::prelude::*;

use xene_api::access::Me;

/// Who is signed in, for every page (`None` on the sign-in page).
#[derive(Clone, Copy)]
pub struct CurrentUser(pub Resource<Result<Me, String>>);

impl CurrentUser {
    /// The signed-in user once known.
    pub fn get(&self) -> Option<Me> {
        self.0.get().and_then(Result::ok)
    }
}

/// Who is signed in, looked up now (when the component is made) and read
/// whenever called, so closures that run later still reach it.
pub fn current_user() -> impl Fn() -> Option<Me> + Copy + Send + Sync + 'static {
    let user = use_context::<CurrentUser>();
    move || user.and_then(|u| u.get())
}
