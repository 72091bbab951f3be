//! One module per page, and the routes that load each page's code.

pub mod agents;
pub mod audit;
pub mod editor;
pub mod home;
pub mod run;
pub mod runs;
pub mod secrets;
mod signin;
pub mod tokens;
pub mod users;
pub mod workflow;
pub mod workflows;

pub use crate::not_found::NotFound;
pub use signin::SignIn;

/// Pages are fetched in five groups, each a piece of the browser bundle of
/// its own, loaded when one of its pages is first opened: the lists, a
/// workflow's page, a run's page, the admin pages, and the editor. No page
/// loads the editor's code, the heaviest. Groups, not single pages: the
/// splitter puts code that several pieces share in pieces of their own,
/// and ten groups made about ninety of them per page, five make fifteen.
/// On the server a page simply renders. In the browser, the page's group is
/// loaded before hydration starts (`preload`): hydrating while a piece
/// loads lets other parts of the page move the hydration walk under it.
macro_rules! lazy_groups {
    ($(
        $(#[$doc:meta])* $group:ident($which:ident) {
            $($route:ident => $page:path,)*
        }
    )*) => {$(
        #[derive(Clone, Copy)]
        #[allow(clippy::enum_variant_names)]
        enum $which {
            $($route,)*
        }

        $(#[$doc])*
        #[leptos::lazy]
        fn $group(page: $which) -> leptos::prelude::AnyView {
            use leptos::prelude::IntoAny;
            match page {
                $($which::$route => $page().into_any(),)*
            }
        }

        $(
            #[doc = concat!("The route of `", stringify!($page), "`, loaded with its group.")]
            pub struct $route;

            impl leptos_router::LazyRoute for $route {
                fn data() -> Self {
                    $route
                }

                async fn view(this: Self) -> leptos::prelude::AnyView {
                    let $route = this;
                    $group($which::$route).await
                }
            }
        )*
    )*};
}

lazy_groups! {
    /// The dashboard, and the lists of workflows and of runs.
    lists(List) {
        HomeRoute => home::HomePage,
        WorkflowsRoute => workflows::WorkflowsPage,
        RunsRoute => runs::RunsPage,
    }
    /// A workflow's page: its DAGs, versions, webhook and run form.
    workflow_page(WorkflowPages) {
        WorkflowRoute => workflow::WorkflowPage,
    }
    /// A run's page: its DAG and logs, live.
    run_page(RunPages) {
        RunRoute => run::RunPage,
    }
    /// Agents, tokens, secrets, users, the audit log.
    admin_pages(AdminPage) {
        AgentsRoute => agents::AgentsPage,
        TokensRoute => tokens::TokensPage,
        SecretsRoute => secrets::SecretsPage,
        UsersRoute => users::UsersPage,
        AuditRoute => audit::AuditPage,
    }
    /// The visual editor.
    editor(EditorPages) {
        EditorRoute => editor::EditorPage,
    }
}

/// Loads the group of pieces the page at `path` needs, so that it can be
/// hydrated in one go. Mirrors the routes in `App`: a path left out here
/// fails loudly, on the first hydration of its page.
#[cfg(feature = "hydrate")]
pub async fn preload(path: &str) {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [] | ["workflows"] | ["runs"] => __preload_lists().await,
        ["workflows", _] => __preload_workflow_page().await,
        ["workflows", _, "edit"] | ["editor"] => __preload_editor().await,
        ["runs", _] => __preload_run_page().await,
        ["agents" | "tokens" | "secrets" | "users" | "audit"] => __preload_admin_pages().await,
        _ => {}
    }
}
