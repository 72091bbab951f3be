use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use xene_api::access::SignInMethods;

use crate::api;

/// What each refusal code the server sends here means, in words, with the
/// name of a command shown as code. Codes the page does not know get a
/// generic line: nothing from the URL is shown.
fn explain(code: &str) -> AnyView {
    let plain = |text: &'static str| view! { {text} }.into_any();
    match code {
        "unverified_email" => plain(
            "Your email address is not verified with your identity provider, so it cannot be trusted yet.",
        ),
        "domain_not_allowed" => plain(
            "Your email address is not in a domain this Xene admits. Sign in with your organisation's account, or ask an admin to allow your address.",
        ),
        "hd_missing" => plain(
            "Your account is not managed by an allowed Google Workspace organisation (a personal Google account, even with a company address, is not enough).",
        ),
        "hd_not_allowed" => plain(
            "Your account belongs to a Google Workspace organisation this Xene does not admit.",
        ),
        "no_email" => plain("Your identity provider did not tell Xene your email address."),
        "disabled" => plain("Your account is disabled. Ask an admin of this Xene to enable it."),
        "not_configured" => view! {
            "Sign-in with an identity provider is not set up on this server. The first admin signs in with the one-time link that "
            <code>"xene"</code> " prints when it starts."
        }
        .into_any(),
        "link_invalid" => view! {
            "That sign-in link is unknown, used or expired. Restart " <code>"xene"</code> " to print a fresh one."
        }
        .into_any(),
        _ => plain("Signing in did not work. Please try again."),
    }
}

/// Local paths only, like the server's check: never another site.
fn local(next: Option<String>) -> String {
    next.filter(|p| {
        p.starts_with('/')
            && !p.starts_with("//")
            && !p
                .chars()
                .any(|c| c == '\\' || c.is_control() || c.is_whitespace())
    })
    .unwrap_or_else(|| "/".into())
}

#[component]
pub fn SignIn() -> impl IntoView {
    let query = use_query_map();
    let error = move || query.with(|q| q.get("error"));
    let login_href = move || {
        let next = local(query.with(|q| q.get("next")));
        let mut encoded = String::new();
        for b in next.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
                encoded.push(b as char);
            } else {
                encoded.push_str(&format!("%{b:02X}"));
            }
        }
        format!("/auth/login?next={encoded}")
    };
    let methods = Resource::new(
        || (),
        |_| api::get::<SignInMethods>(xene_api::paths::sign_in_methods()),
    );
    view! {
        <Title text="Sign in" />
        <section class="card signin">
            <h1>"Sign in to Xene"</h1>
            {move || {
                error()
                    .map(|code| {
                        view! {
                            <p class="refusal" role="alert" data-code=code.clone()>
                                <strong>"You were not signed in. "</strong>
                                {explain(&code)}
                            </p>
                        }
                    })
            }}
            // Only what this server has set up: a provider's button when
            // there is one.
            <Suspense fallback=|| view! { <p class="loading">"Loading the ways to sign in…"</p> }>
                {move || methods.get().map(|m| match m.ok().and_then(|m| m.provider) {
                    Some(provider) => view! {
                        <p>
                            // Not a page of this app: the client-side router must let it through.
                            <a class="button primary" id="sign-in-oidc" rel="external" href=login_href>
                                {format!("Sign in with {provider}")}
                            </a>
                        </p>
                    }.into_any(),
                    None => view! {
                        <p id="no-provider">"No identity provider is set up on this server."</p>
                    }.into_any(),
                })}
            </Suspense>
            <p class="hint">
                "Running Xene yourself? The first admin signs in with the one-time link "
                "that " <code>"xene"</code> " prints when it starts."
            </p>
        </section>
    }
}
